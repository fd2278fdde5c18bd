//! The API's request validation (`POST /api/v1/remediations`) never panics, and a request it
//! accepts goes through the policy step without panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oomguard::api::validate;
use oomguard::policy::PolicySpec;

fuzz_target!(|data: &[u8]| {
    let Ok(checked) = validate::parse(data) else {
        return;
    };
    let _ = validate::check_policy(&PolicySpec::default(), &checked);
});
