//! Shared helpers of the integration tests (and the benchmark, which includes this module).
#![allow(dead_code)]

pub mod controlplane;
pub mod fake;
pub mod node;
pub mod prom;
pub mod scenario;
