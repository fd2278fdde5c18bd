//! oomguard: keeps Kubernetes workloads from being OOM-killed.
//!
//! Data flows one way: AdmissionReview → [`workload`] → [`history`] → [`forecast`] →
//! [`verdict`] → AdmissionResponse. The middle is pure; I/O lives in `server`, `history`'s
//! sources and the CLI.
#![forbid(unsafe_code)]

pub mod admission;
pub mod api;
pub mod certs;
pub mod check;
pub mod cli;
pub mod duration;
pub mod forecast;
pub mod history;
pub mod manifest;
pub mod memory_settings;
pub mod policy;
pub mod quantity;
pub mod recommend;
pub mod reconcile;
#[cfg(any(test, feature = "replay"))]
pub mod replay;
pub mod serving;
pub mod verdict;
pub mod webhook;
pub mod workload;
