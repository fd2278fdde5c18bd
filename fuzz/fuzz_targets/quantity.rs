//! The quantity parser never panics; its fast path reads what the general grammar reads, to the
//! same bytes; and what oomguard writes back (`to_quantity`) reads as the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = oomguard::quantity::fuzz_plain_agrees(text);
    }
});
