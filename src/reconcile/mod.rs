//! The reconciler: at runtime it watches the same forecasts as admission and acts before the OOM.
//!
//! One round per workload reads [`observe`] → decide ([`plan`], pure, on the same
//! [`crate::verdict::decide`] as admission) → [`act`] (writes and Events); [`controller`] runs the
//! rounds. [`record`] is what was done, kept in the workload's annotations; [`record_lookup`]
//! reads the records back for the API, whose seam is [`remediator`] ([`kube_remediator`] on a
//! real cluster).

pub mod act;
pub mod controller;
pub mod kills;
pub mod kube_remediator;
pub mod leader;
pub mod metrics;
pub mod observe;
pub mod plan;
pub mod record;
pub mod record_lookup;
pub mod remediator;
