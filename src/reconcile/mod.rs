//! The reconciler: at runtime it watches the same forecasts as admission and acts before the OOM.
//!
//! [`plan`] is the pure decision (what to do about one workload now); [`record`] is what was
//! done, kept in the workload's annotations. Watching, applying and verifying live at the edges.

pub mod apply;
pub mod controller;
pub mod metrics;
pub mod plan;
pub mod record;
pub mod records;
pub mod remediation;
pub mod remediator;
pub mod target;
