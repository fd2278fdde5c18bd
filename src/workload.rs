//! Pod-template workloads: which containers run, with which memory limits, and where in the
//! object each container lives (so that a patch can address it exactly).

use std::collections::BTreeMap;

use jsonptr::PointerBuf;
use serde::Serialize;
use serde_json::Value;

use crate::history::WorkloadKey;
use crate::quantity::{self, QuantityError};

/// Annotations oomguard reads and writes start with this.
pub const OWN_ANNOTATION_PREFIX: &str = "oomguard.io/";

/// The kinds oomguard acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
    Job,
    CronJob,
    Pod,
}

impl WorkloadKind {
    /// The kind for an API group and kind, or None for kinds oomguard does not act on.
    pub fn from_group_kind(group: &str, kind: &str) -> Option<WorkloadKind> {
        Some(match (group, kind) {
            ("apps", "Deployment") => WorkloadKind::Deployment,
            ("apps", "StatefulSet") => WorkloadKind::StatefulSet,
            ("apps", "DaemonSet") => WorkloadKind::DaemonSet,
            ("apps", "ReplicaSet") => WorkloadKind::ReplicaSet,
            ("batch", "Job") => WorkloadKind::Job,
            ("batch", "CronJob") => WorkloadKind::CronJob,
            ("", "Pod") => WorkloadKind::Pod,
            _ => return None,
        })
    }

    /// From a manifest's `apiVersion` (e.g. `apps/v1`) and `kind`.
    pub fn from_api_version(api_version: &str, kind: &str) -> Option<WorkloadKind> {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        Self::from_group_kind(group, kind)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::DaemonSet => "DaemonSet",
            WorkloadKind::ReplicaSet => "ReplicaSet",
            WorkloadKind::Job => "Job",
            WorkloadKind::CronJob => "CronJob",
            WorkloadKind::Pod => "Pod",
        }
    }

    /// Where the pod spec sits in an object of this kind.
    fn pod_spec_path(self) -> &'static [&'static str] {
        match self {
            WorkloadKind::Pod => &["spec"],
            WorkloadKind::CronJob => &["spec", "jobTemplate", "spec", "template", "spec"],
            _ => &["spec", "template", "spec"],
        }
    }
}

/// The role of a container in the pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContainerRole {
    Main,
    /// A plain init container: runs to completion before the others.
    Init,
    /// An init container with `restartPolicy: Always` (a sidecar): lives as long as the pod.
    Sidecar,
}

impl ContainerRole {
    fn list(self) -> &'static str {
        match self {
            ContainerRole::Main => "containers",
            _ => "initContainers",
        }
    }
}

/// A memory field (limit or request) as written in the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemoryField {
    Missing,
    Valid { raw: String, bytes: u64 },
    Invalid(QuantityError),
}

impl MemoryField {
    pub fn bytes(&self) -> Option<u64> {
        match self {
            MemoryField::Valid { bytes, .. } => Some(*bytes),
            _ => None,
        }
    }

    fn read(resources: Option<&Value>, section: &str) -> MemoryField {
        let Some(v) = resources
            .and_then(|r| r.get(section))
            .and_then(|s| s.get("memory"))
        else {
            return MemoryField::Missing;
        };
        let raw = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => other.to_string(),
        };
        match quantity::parse_bytes(&raw) {
            Ok(bytes) => MemoryField::Valid { raw, bytes },
            Err(e) => MemoryField::Invalid(e),
        }
    }
}

/// One container of the pod template.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub name: String,
    pub role: ContainerRole,
    /// Index in `containers` or `initContainers`.
    pub index: usize,
    pub limit: MemoryField,
    pub request: MemoryField,
    /// What `resources` holds now: decides which parents a patch must create.
    pub has_resources: bool,
    pub has_limits: bool,
}

/// A workload reduced to what the engine needs.
#[derive(Debug, Clone)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
    /// The workload's `oomguard.io/` annotations.
    pub annotations: BTreeMap<String, String>,
    pub containers: Vec<ContainerSpec>,
    /// Set when another object controls this one (a ReplicaSet of a Deployment, a Pod of a
    /// ReplicaSet): the owner was already checked.
    pub controlled_by: Option<String>,
    pod_spec_path: &'static [&'static str],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkloadError {
    #[error("the object is not a JSON/YAML mapping")]
    NotAnObject,
    #[error("{kind} {name} has no pod spec at .{path}")]
    NoPodSpec {
        kind: &'static str,
        name: String,
        path: String,
    },
    #[error("{kind} {name}: .{path} must be a list of containers")]
    BadContainers {
        kind: &'static str,
        name: String,
        path: String,
    },
}

impl Workload {
    /// Reads a workload of a known kind from its object. `namespace` is the request's namespace
    /// (or the manifest's, or "default" offline).
    pub fn from_object(
        kind: WorkloadKind,
        object: &Value,
        namespace: &str,
    ) -> Result<Workload, WorkloadError> {
        if !object.is_object() {
            return Err(WorkloadError::NotAnObject);
        }
        let meta = object.get("metadata");
        let name = meta
            .and_then(|m| m.get("name").or_else(|| m.get("generateName")))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        // Only oomguard's own: the others include kubectl's last-applied-configuration, a
        // copy of the whole manifest.
        let annotations = meta
            .and_then(|m| m.get("annotations"))
            .and_then(Value::as_object)
            .map(|a| {
                a.iter()
                    .filter(|(k, _)| k.starts_with(OWN_ANNOTATION_PREFIX))
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let controlled_by = meta
            .and_then(|m| m.get("ownerReferences"))
            .and_then(Value::as_array)
            .and_then(|refs| {
                refs.iter()
                    .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
            })
            .map(|r| {
                format!(
                    "{}/{}",
                    r.get("kind").and_then(Value::as_str).unwrap_or("?"),
                    r.get("name").and_then(Value::as_str).unwrap_or("?")
                )
            });
        let path = kind.pod_spec_path();
        let mut spec = object;
        for seg in path {
            spec = spec.get(*seg).ok_or_else(|| WorkloadError::NoPodSpec {
                kind: kind.as_str(),
                name: name.clone(),
                path: path.join("."),
            })?;
        }
        let mut containers = Vec::new();
        for (list, default_role) in [
            ("initContainers", ContainerRole::Init),
            ("containers", ContainerRole::Main),
        ] {
            let items = match spec.get(list) {
                None | Some(Value::Null) => continue,
                Some(Value::Array(items)) => items,
                Some(_) => {
                    return Err(WorkloadError::BadContainers {
                        kind: kind.as_str(),
                        name,
                        path: format!("{}.{list}", path.join(".")),
                    })
                }
            };
            for (index, c) in items.iter().enumerate() {
                let role = if default_role == ContainerRole::Init
                    && c.get("restartPolicy").and_then(Value::as_str) == Some("Always")
                {
                    ContainerRole::Sidecar
                } else {
                    default_role
                };
                let resources = c.get("resources").filter(|r| r.is_object());
                containers.push(ContainerSpec {
                    name: c
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    role,
                    index,
                    limit: MemoryField::read(resources, "limits"),
                    request: MemoryField::read(resources, "requests"),
                    has_resources: resources.is_some(),
                    has_limits: resources
                        .and_then(|r| r.get("limits"))
                        .is_some_and(Value::is_object),
                });
            }
        }
        Ok(Workload {
            kind,
            namespace: namespace.to_string(),
            name,
            annotations,
            containers,
            controlled_by,
            pod_spec_path: path,
        })
    }

    pub fn key(&self) -> WorkloadKey {
        WorkloadKey {
            namespace: self.namespace.clone(),
            kind: self.kind.as_str().to_string(),
            name: self.name.clone(),
        }
    }

    /// JSON pointer to a container, escaped token by token.
    pub fn container_pointer(&self, c: &ContainerSpec) -> PointerBuf {
        let index = c.index.to_string();
        let mut tokens: Vec<&str> = self.pod_spec_path.to_vec();
        tokens.push(c.role.list());
        tokens.push(&index);
        PointerBuf::from_tokens(tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_containers_and_sidecars_of_every_kind() {
        let pod_spec = json!({
            "initContainers": [
                {"name": "setup", "resources": {"limits": {"memory": "64Mi"}}},
                {"name": "proxy", "restartPolicy": "Always"}
            ],
            "containers": [
                {"name": "web", "resources": {"limits": {"memory": "256Mi"}, "requests": {"memory": "128Mi"}}},
                {"name": "bad", "resources": {"limits": {"memory": "12Q"}}},
                {"name": "num", "resources": {"limits": {"memory": 1000000000}}}
            ]
        });
        let template = json!({"metadata": {}, "spec": pod_spec});
        let objects = [
            (
                WorkloadKind::Deployment,
                json!({"metadata": {"name": "a"}, "spec": {"template": template}}),
                "/spec/template/spec",
            ),
            (
                WorkloadKind::CronJob,
                json!({"metadata": {"name": "a"}, "spec": {"jobTemplate": {"spec": {"template": template}}}}),
                "/spec/jobTemplate/spec/template/spec",
            ),
            (
                WorkloadKind::Pod,
                json!({"metadata": {"name": "a"}, "spec": pod_spec}),
                "/spec",
            ),
        ];
        for (kind, obj, prefix) in objects {
            let w = Workload::from_object(kind, &obj, "ns").unwrap();
            let roles: Vec<_> = w
                .containers
                .iter()
                .map(|c| (c.name.as_str(), c.role))
                .collect();
            assert_eq!(
                roles,
                vec![
                    ("setup", ContainerRole::Init),
                    ("proxy", ContainerRole::Sidecar),
                    ("web", ContainerRole::Main),
                    ("bad", ContainerRole::Main),
                    ("num", ContainerRole::Main)
                ]
            );
            assert_eq!(w.containers[2].limit.bytes(), Some(256 << 20));
            assert_eq!(w.containers[2].request.bytes(), Some(128 << 20));
            assert!(matches!(w.containers[3].limit, MemoryField::Invalid(_)));
            assert_eq!(w.containers[4].limit.bytes(), Some(1_000_000_000));
            assert_eq!(w.containers[1].limit, MemoryField::Missing);
            assert_eq!(
                w.container_pointer(&w.containers[2]).to_string(),
                format!("{prefix}/containers/0")
            );
            assert_eq!(
                w.container_pointer(&w.containers[1]).to_string(),
                format!("{prefix}/initContainers/1")
            );
        }
    }

    #[test]
    fn malformed_objects_are_errors_not_panics() {
        assert_eq!(
            Workload::from_object(WorkloadKind::Deployment, &json!([1]), "ns").unwrap_err(),
            WorkloadError::NotAnObject
        );
        assert!(matches!(
            Workload::from_object(WorkloadKind::Deployment, &json!({"spec": {}}), "ns"),
            Err(WorkloadError::NoPodSpec { .. })
        ));
        assert!(matches!(
            Workload::from_object(
                WorkloadKind::Pod,
                &json!({"spec": {"containers": "web"}}),
                "ns"
            ),
            Err(WorkloadError::BadContainers { .. })
        ));
    }

    #[test]
    fn kinds_from_api_version() {
        assert_eq!(
            WorkloadKind::from_api_version("apps/v1", "Deployment"),
            Some(WorkloadKind::Deployment)
        );
        assert_eq!(
            WorkloadKind::from_api_version("v1", "Pod"),
            Some(WorkloadKind::Pod)
        );
        assert_eq!(WorkloadKind::from_api_version("v1", "ConfigMap"), None);
        assert_eq!(
            WorkloadKind::from_api_version("extensions/v1beta1", "Deployment"),
            None
        );
    }
}
