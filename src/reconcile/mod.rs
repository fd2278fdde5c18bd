//! The reconciler: at runtime it watches the same forecasts as admission and acts before the OOM.
//!
//! [`plan`] is the pure decision (what to do about one workload now); watching, applying and
//! verifying live at the edges and come later.

pub mod plan;
