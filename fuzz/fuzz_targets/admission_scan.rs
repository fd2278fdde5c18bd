//! The AdmissionReview reader: the one-pass scanner and serde_json read every input the same
//! way, or the scanner gives up and defers to serde; and the whole reader never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        oomguard::admission::fuzzing::scanner_agrees_with_serde(text);
    }
    let _ = oomguard::admission::review::parse(data);
});
