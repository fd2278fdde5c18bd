//! The policy parser never panics, and a policy it accepts round-trips: written back as YAML it
//! parses to the same policy.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oomguard::policy::MemoryPolicy;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = MemoryPolicy::parse("fuzz.yaml", text) else {
        return;
    };
    let yaml = serde_norway::to_string(&policy).expect("an accepted policy serialises");
    match MemoryPolicy::parse("round-trip.yaml", &yaml) {
        Ok(again) => assert_eq!(again, policy, "changed by a round trip through:\n{yaml}"),
        Err(e) => panic!("an accepted policy does not parse back: {e}\n{yaml}\nfrom:\n{text}"),
    }
});
