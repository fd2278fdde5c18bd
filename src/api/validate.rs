//! `POST /api/v1/remediations`: the request as the tutorial sends it, checked step by step
//! (pure functions; the handler does the I/O between the steps).
//!
//! 1. [`parse`]: JSON shape and types (400), names and parameters (422);
//! 2. [`check_policy`]: the namespace policy's bounds — beyond
//!    `reconcile.minReplicas..maxReplicas` or `limits.min..max` (422, naming the bound), an
//!    excluded container (409);
//! 3. [`resolve`]: against the workload as stored — out of the reconciler's scope (409: excluded,
//!    controlled, reconciler disabled; [`crate::verdict::scope`]), which container (422),
//!    already there (409).

use serde::Deserialize;

use super::error::ApiError;
use crate::policy::PolicySpec;
use crate::quantity;
use crate::reconcile::plan::ScalableKind;
use crate::reconcile::record::Target;
use crate::reconcile::remediator::RequestedAction;
use crate::verdict::scope;
use crate::workload::ContainerRole;

use super::cluster::ReadWorkload;

/// Longest `reason` and `incident_id` kept (they end up in annotations and logs).
pub const MAX_TEXT: usize = 1024;
pub const MAX_INCIDENT_ID: usize = 253;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionName {
    ScaleDeployment,
    RaiseLimit,
}

/// The request body (the tutorial's `remediation_request`, plus `kind` and raise_limit's
/// parameters).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemediationRequest {
    #[serde(default)]
    pub incident_id: Option<String>,
    pub action: ActionName,
    /// The workload's name.
    pub target: String,
    pub namespace: String,
    /// Deployment (default) or StatefulSet.
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub parameters: Parameters,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    /// scale_deployment: the replica count wanted.
    #[serde(default)]
    pub replicas: Option<u32>,
    #[serde(default)]
    pub reason: Option<String>,
    /// The caller's predicted memory usage, percent.
    #[serde(default)]
    pub predicted_usage: Option<f64>,
    /// raise_limit: which container (optional when the pod has one).
    #[serde(default)]
    pub container: Option<String>,
    /// raise_limit: the new memory limit, a Kubernetes quantity ("512Mi"); without it, what
    /// oomguard's decision recommends for the container.
    #[serde(default)]
    pub memory_limit: Option<String>,
}

/// What the request asks for, before the workload was read.
#[derive(Debug, Clone, PartialEq)]
pub enum Intent {
    Scale {
        replicas: u32,
    },
    RaiseLimit {
        container: Option<String>,
        /// The limit asked for (bytes, and as written); None: the decision's recommendation.
        limit: Option<(u64, String)>,
    },
}

/// A request that parsed and whose values make sense on their own.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub target: Target,
    pub intent: Intent,
    pub incident_id: Option<String>,
    pub reason: Option<String>,
    pub predicted_usage: Option<f64>,
}

/// `deployments`, `deployment`, `Deployment` (and the same for StatefulSets).
pub fn parse_kind(s: &str) -> Option<ScalableKind> {
    match s {
        "deployments" | "deployment" | "Deployment" => Some(ScalableKind::Deployment),
        "statefulsets" | "statefulset" | "StatefulSet" => Some(ScalableKind::StatefulSet),
        _ => None,
    }
}

/// The resource name of a kind, for RBAC.
pub fn resource(kind: ScalableKind) -> &'static str {
    match kind {
        ScalableKind::Deployment => "deployments",
        ScalableKind::StatefulSet => "statefulsets",
    }
}

/// Lowercase letters, digits and '-', alphanumeric at both ends.
fn is_label_shaped(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS-1123 label (namespaces): at most 63 of a-z, 0-9 and '-', alphanumeric at both ends.
pub fn is_dns_label(s: &str) -> bool {
    s.len() <= 63 && is_label_shaped(s)
}

/// A DNS-1123 subdomain (workload names) as Kubernetes checks it: at most 253 characters,
/// dot-separated parts of a-z, 0-9 and '-', each alphanumeric at both ends.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_label_shaped)
}

pub fn check_namespace(ns: &str) -> Result<(), ApiError> {
    if is_dns_label(ns) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "namespace {ns:?} is not a valid namespace name (lowercase letters, digits and '-', at most 63)"
        )))
    }
}

pub fn check_name(name: &str) -> Result<(), ApiError> {
    if is_dns_subdomain(name) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{name:?} is not a valid workload name (lowercase letters, digits, '-' and '.', at most 253)"
        )))
    }
}

/// Step 1: the body.
pub fn parse(body: &[u8]) -> Result<Checked, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    let req: RemediationRequest = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            ApiError::bad_request(format!("the body is not a remediation request: {inner}"))
        } else {
            ApiError::bad_request(format!("{path}: {inner}"))
        }
    })?;
    let kind = match req.kind.as_deref() {
        None => ScalableKind::Deployment,
        Some(k) => parse_kind(k).ok_or_else(|| {
            ApiError::invalid(format!("kind: {k:?} is not Deployment or StatefulSet"))
        })?,
    };
    if !is_dns_label(&req.namespace) {
        return Err(ApiError::invalid(format!(
            "namespace: {:?} is not a valid namespace name",
            req.namespace
        )));
    }
    if !is_dns_subdomain(&req.target) {
        return Err(ApiError::invalid(format!(
            "target: {:?} is not a valid workload name",
            req.target
        )));
    }
    let p = req.parameters;
    let text = |field: &str, v: Option<String>, max: usize| -> Result<Option<String>, ApiError> {
        match v {
            Some(s) if s.trim().is_empty() => {
                Err(ApiError::invalid(format!("{field}: must not be empty")))
            }
            Some(s) if s.chars().count() > max => Err(ApiError::invalid(format!(
                "{field}: at most {max} characters"
            ))),
            Some(s) if s.chars().any(char::is_control) => Err(ApiError::invalid(format!(
                "{field}: must not contain control characters"
            ))),
            other => Ok(other),
        }
    };
    let incident_id = text("incident_id", req.incident_id, MAX_INCIDENT_ID)?;
    let reason = text("parameters.reason", p.reason, MAX_TEXT)?;
    if let Some(u) = p.predicted_usage {
        if !u.is_finite() || u < 0.0 {
            return Err(ApiError::invalid(format!(
                "parameters.predicted_usage: {u} is not a percentage (a number from 0)"
            )));
        }
    }
    let intent = match req.action {
        ActionName::ScaleDeployment => {
            if p.container.is_some() || p.memory_limit.is_some() {
                return Err(ApiError::invalid(
                    "parameters.container and parameters.memory_limit belong to raise_limit, not scale_deployment",
                ));
            }
            let replicas = p.replicas.ok_or_else(|| {
                ApiError::invalid("parameters.replicas is required for scale_deployment")
            })?;
            if replicas == 0 {
                return Err(ApiError::invalid(
                    "parameters.replicas: 0 would stop the workload; a remediation scales out",
                ));
            }
            Intent::Scale { replicas }
        }
        ActionName::RaiseLimit => {
            if p.replicas.is_some() {
                return Err(ApiError::invalid(
                    "parameters.replicas belongs to scale_deployment, not raise_limit",
                ));
            }
            let limit = match p.memory_limit {
                None => None,
                Some(raw) => {
                    let bytes = quantity::parse_bytes(&raw)
                        .map_err(|e| ApiError::invalid(format!("parameters.memory_limit: {e}")))?;
                    if bytes == 0 {
                        return Err(ApiError::invalid(
                            "parameters.memory_limit: must be above 0",
                        ));
                    }
                    Some((bytes, raw))
                }
            };
            let container = text("parameters.container", p.container, 253)?;
            Intent::RaiseLimit { container, limit }
        }
    };
    Ok(Checked {
        target: Target {
            kind,
            namespace: req.namespace,
            name: req.target,
        },
        intent,
        incident_id,
        reason,
        predicted_usage: p.predicted_usage,
    })
}

/// Step 2: the namespace policy's bounds (before the workload is read).
pub fn check_policy(policy: &PolicySpec, c: &Checked) -> Result<(), ApiError> {
    let t = &c.target;
    match &c.intent {
        Intent::Scale { replicas } => {
            let r = &policy.reconcile;
            if *replicas > r.max_replicas {
                return Err(ApiError::out_of_bounds(
                    "reconcile.maxReplicas",
                    format!(
                        "replicas {replicas} is above the policy's reconcile.maxReplicas {} in namespace {:?}",
                        r.max_replicas, t.namespace
                    ),
                ));
            }
            if *replicas < r.min_replicas {
                return Err(ApiError::out_of_bounds(
                    "reconcile.minReplicas",
                    format!(
                        "replicas {replicas} is below the policy's reconcile.minReplicas {} in namespace {:?}",
                        r.min_replicas, t.namespace
                    ),
                ));
            }
        }
        Intent::RaiseLimit { container, limit } => {
            if let Some(name) = container {
                if scope::container_excluded(policy, name) {
                    return Err(ApiError::refused(format!(
                        "container {name:?} is excluded by the policy of namespace {:?} (exclude.containers)",
                        t.namespace
                    )));
                }
            }
            let l = &policy.limits;
            if let Some((bytes, raw)) = limit {
                if *bytes > l.max.0 {
                    return Err(ApiError::out_of_bounds(
                        "limits.max",
                        format!(
                            "memory_limit {raw} is above the policy's limits.max {} in namespace {:?}",
                            quantity::to_quantity(l.max.0),
                            t.namespace
                        ),
                    ));
                }
                if *bytes < l.min.0 {
                    return Err(ApiError::out_of_bounds(
                        "limits.min",
                        format!(
                            "memory_limit {raw} is below the policy's limits.min {} in namespace {:?}",
                            quantity::to_quantity(l.min.0),
                            t.namespace
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Step 3: against the stored workload; the action for the remediator.
pub fn resolve(
    policy: &PolicySpec,
    c: &Checked,
    w: &ReadWorkload,
) -> Result<RequestedAction, ApiError> {
    let t = &c.target;
    if let Err(why) = scope::reconciled(&w.workload, policy) {
        return Err(ApiError::refused(format!(
            "{} {}/{}: {why}",
            t.kind.as_str(),
            t.namespace,
            t.name
        )));
    }
    match &c.intent {
        Intent::Scale { replicas } => {
            if *replicas <= w.replicas {
                return Err(ApiError::no_change(format!(
                    "{} {}/{} already has {} replicas; a remediation only scales out (asked: {replicas})",
                    t.kind.as_str(),
                    t.namespace,
                    t.name,
                    w.replicas
                )));
            }
            Ok(RequestedAction::Scale {
                replicas: *replicas,
                current: w.replicas,
            })
        }
        Intent::RaiseLimit { container, limit } => {
            let running: Vec<_> = w
                .workload
                .containers
                .iter()
                .filter(|c| c.role != ContainerRole::Init)
                .collect();
            let names = || {
                running
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let spec = match container {
                Some(name) => running.iter().find(|c| &c.name == name).ok_or_else(|| {
                    ApiError::invalid(format!(
                        "parameters.container: {} {}/{} has no container {name:?} (it has: {})",
                        t.kind.as_str(),
                        t.namespace,
                        t.name,
                        names()
                    ))
                })?,
                None => match running.as_slice() {
                    [one] => one,
                    _ => {
                        return Err(ApiError::invalid(format!(
                            "parameters.container is required: {} {}/{} has containers {}",
                            t.kind.as_str(),
                            t.namespace,
                            t.name,
                            names()
                        )))
                    }
                },
            };
            if scope::container_excluded(policy, &spec.name) {
                return Err(ApiError::refused(format!(
                    "container {:?} is excluded by the policy of namespace {:?} (exclude.containers)",
                    spec.name, t.namespace
                )));
            }
            let current = spec.limit.bytes();
            if let (Some(cur), Some((bytes, raw))) = (current, limit) {
                if *bytes <= cur {
                    return Err(ApiError::no_change(format!(
                        "container {:?} already has a memory limit of {}; a remediation only raises it (asked: {raw})",
                        spec.name,
                        quantity::to_quantity(cur)
                    )));
                }
            }
            Ok(RequestedAction::RaiseLimit {
                container: spec.name.clone(),
                to: limit.as_ref().map(|(b, _)| *b),
                current,
            })
        }
    }
}
