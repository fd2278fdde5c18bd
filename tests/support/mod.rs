//! Shared helpers of the integration tests (and the benchmark, which includes this module).
#![allow(dead_code)]

pub mod controlplane;
pub mod fake;
pub mod node;
pub mod prom;
pub mod scenario;
pub mod serve;

/// A path in the repository, as text.
pub fn repo_path(p: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(p)
        .to_string_lossy()
        .into_owned()
}
