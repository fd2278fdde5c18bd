//! Pod-template workloads: which containers run, with which memory limits, and where in the
//! object each container lives (so that a patch can address it exactly).

use std::collections::BTreeMap;

use jsonptr::PointerBuf;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::history::WorkloadKey;
use crate::memory_settings::{EnvValue, EnvVar, MemoryVolume, RuntimeSpec, Unread};
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
    /// `v1` ReplicationController: the ReplicaSet's predecessor, still what a DeploymentConfig
    /// runs its pods with.
    ReplicationController,
    /// OpenShift's `apps.openshift.io/v1` DeploymentConfig (and the legacy `v1` one).
    DeploymentConfig,
    /// Argo Rollouts' `argoproj.io/v1alpha1` Rollout (with its own template; one that refers
    /// to a Deployment with `workloadRef` has none).
    Rollout,
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
            ("", "ReplicationController") => WorkloadKind::ReplicationController,
            ("apps.openshift.io" | "", "DeploymentConfig") => WorkloadKind::DeploymentConfig,
            ("argoproj.io", "Rollout") => WorkloadKind::Rollout,
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
            WorkloadKind::ReplicationController => "ReplicationController",
            WorkloadKind::DeploymentConfig => "DeploymentConfig",
            WorkloadKind::Rollout => "Rollout",
        }
    }

    /// Every kind, in the order the docs list them.
    pub const ALL: [WorkloadKind; 10] = [
        WorkloadKind::Deployment,
        WorkloadKind::StatefulSet,
        WorkloadKind::DaemonSet,
        WorkloadKind::ReplicaSet,
        WorkloadKind::Job,
        WorkloadKind::CronJob,
        WorkloadKind::Pod,
        WorkloadKind::ReplicationController,
        WorkloadKind::DeploymentConfig,
        WorkloadKind::Rollout,
    ];

    /// Whether objects of this kind are made by Kubernetes' (or OpenShift's, Argo's) own
    /// controllers from a template oomguard already read: a Deployment's ReplicaSets, a
    /// ReplicaSet's Pods, a DeploymentConfig's ReplicationControllers, a CronJob's Jobs.
    pub fn is_workload_owner(kind: &str) -> bool {
        matches!(
            kind,
            "Deployment"
                | "StatefulSet"
                | "DaemonSet"
                | "ReplicaSet"
                | "Job"
                | "CronJob"
                | "ReplicationController"
                | "DeploymentConfig"
                | "Rollout"
                | "Node"
        )
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
    /// A valid field of `bytes`, written as its quantity (`512Mi`).
    pub fn of_bytes(bytes: u64) -> MemoryField {
        MemoryField::Valid {
            raw: crate::quantity::to_quantity(bytes),
            bytes,
        }
    }

    pub fn bytes(&self) -> Option<u64> {
        match self {
            MemoryField::Valid { bytes, .. } => Some(*bytes),
            _ => None,
        }
    }

    fn read(v: Option<&Value>) -> MemoryField {
        let Some(v) = v else {
            return MemoryField::Missing;
        };
        let raw = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Null => return MemoryField::Missing,
            // kubectl cannot decode a list, a mapping or a boolean into a quantity at all.
            other => {
                return MemoryField::Invalid(QuantityError {
                    input: other.to_string(),
                    reason: "it is not a quantity: kubectl refuses it",
                })
            }
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
    /// Command, args, env and memory-backed volumes: what [`crate::runtime`] reads.
    pub runtime: RuntimeSpec,
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
    /// The pod-level memory limit (`spec.resources.limits.memory` of the pod spec, 1.34+): no
    /// container's limit may exceed it, and a container without one is bounded by it.
    pub pod_limit: Option<u64>,
    /// Set when another object controls this one (a ReplicaSet of a Deployment, a Pod of a
    /// ReplicaSet): the owner was already checked.
    pub controlled_by: Option<String>,
    /// `metadata.deletionTimestamp` is set: the object is being deleted.
    pub deleting: bool,
    /// Whether `metadata` and `metadata.annotations` exist (a patch must create what is missing).
    pub has_metadata: bool,
    pub has_annotations: bool,
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
    #[error("{kind}: {message}")]
    Malformed { kind: &'static str, message: String },
}

// The parts of an object the engine reads. Everything else is skipped by serde without being
// built, which is what keeps the admission path cheap (the object can be a megabyte, and
// kubectl's last-applied annotation alone is a copy of the manifest).

/// The parts of an object the engine reads (deserialize it from the object's JSON or YAML).
#[derive(Default, Deserialize)]
#[cfg_attr(any(test, fuzzing), derive(PartialEq))]
pub struct PartialObject {
    #[serde(default)]
    pub(crate) metadata: Option<PartialMeta>,
    #[serde(default)]
    pub(crate) spec: Option<PartialSpec>,
}

#[derive(Default, Deserialize)]
#[cfg_attr(any(test, fuzzing), derive(PartialEq))]
pub(crate) struct PartialMeta {
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default, rename = "generateName")]
    pub(crate) generate_name: Option<String>,
    #[serde(default)]
    pub(crate) namespace: Option<String>,
    #[serde(default)]
    pub(crate) annotations: Option<OwnAnnotations>,
    #[serde(default, rename = "ownerReferences")]
    pub(crate) owner_references: Option<Vec<PartialOwner>>,
    /// Set (to anything but null) when the object is being deleted.
    #[serde(default, rename = "deletionTimestamp")]
    pub(crate) deletion_timestamp: Option<Present>,
}

/// A field whose value does not matter, only that it is there (read without being built).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Present;

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| Present)
    }
}

#[derive(Deserialize)]
#[cfg_attr(any(test, fuzzing), derive(PartialEq))]
pub(crate) struct PartialOwner {
    #[serde(default)]
    pub(crate) kind: Option<String>,
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) controller: Option<bool>,
}

/// The `oomguard.io/` annotations; the others are skipped unread.
#[derive(Default)]
#[cfg_attr(any(test, fuzzing), derive(PartialEq))]
pub(crate) struct OwnAnnotations(pub(crate) BTreeMap<String, String>);

impl<'de> Deserialize<'de> for OwnAnnotations {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OwnAnnotations;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of annotations")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<OwnAnnotations, A::Error> {
                let mut own = BTreeMap::new();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key.starts_with(OWN_ANNOTATION_PREFIX) {
                        if let Some(v) = map.next_value::<Option<String>>()? {
                            own.insert(key.into_owned(), v);
                        }
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(OwnAnnotations(own))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Default, Deserialize)]
#[cfg_attr(any(test, fuzzing), derive(PartialEq))]
pub(crate) struct PartialSpec {
    #[serde(default)]
    pub(crate) template: Option<PartialTemplate>,
    #[serde(default, rename = "jobTemplate")]
    pub(crate) job_template: Option<PartialJobTemplate>,
    // A Pod's spec is the pod spec itself. (Not `#[serde(flatten)]`: that buffers every other
    // field of the spec.)
    #[serde(default)]
    pub(crate) containers: Option<Vec<PartialContainer>>,
    #[serde(default, rename = "initContainers")]
    pub(crate) init_containers: Option<Vec<PartialContainer>>,
    #[serde(default)]
    pub(crate) volumes: Option<Vec<PartialVolume>>,
    /// A Pod's pod-level resources (1.34+).
    #[serde(default)]
    pub(crate) resources: Option<PartialResources>,
}

#[derive(Default, Deserialize)]
#[cfg_attr(any(test, fuzzing), derive(PartialEq))]
pub(crate) struct PartialJobTemplate {
    #[serde(default)]
    pub(crate) spec: Option<PartialJobSpec>,
}

#[derive(Default, Deserialize)]
#[cfg_attr(any(test, fuzzing), derive(PartialEq))]
pub(crate) struct PartialJobSpec {
    #[serde(default)]
    pub(crate) template: Option<PartialTemplate>,
}

#[derive(Default, Deserialize)]
#[cfg_attr(any(test, fuzzing), derive(PartialEq))]
pub(crate) struct PartialTemplate {
    #[serde(default)]
    pub(crate) spec: Option<PartialPodSpec>,
}

#[derive(Default, Deserialize)]
#[cfg_attr(any(test, fuzzing), derive(PartialEq))]
pub(crate) struct PartialPodSpec {
    #[serde(default)]
    pub(crate) containers: Option<Vec<PartialContainer>>,
    #[serde(default, rename = "initContainers")]
    pub(crate) init_containers: Option<Vec<PartialContainer>>,
    #[serde(default)]
    pub(crate) volumes: Option<Vec<PartialVolume>>,
    /// Pod-level resources (`spec.resources`, Kubernetes 1.34+): a memory limit for the whole
    /// pod, which bounds every container's.
    #[serde(default)]
    pub(crate) resources: Option<PartialResources>,
}

#[derive(Deserialize)]
#[cfg_attr(any(test, fuzzing), derive(PartialEq))]
pub(crate) struct PartialContainer {
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default, rename = "restartPolicy")]
    pub(crate) restart_policy: Option<String>,
    #[serde(default)]
    pub(crate) resources: Option<PartialResources>,
    #[serde(default)]
    pub(crate) command: Option<Vec<Scalar>>,
    #[serde(default)]
    pub(crate) args: Option<Vec<Scalar>>,
    #[serde(default)]
    pub(crate) env: Option<Vec<PartialEnvVar>>,
    #[serde(default, rename = "envFrom")]
    pub(crate) env_from: Option<Vec<PartialEnvFrom>>,
    #[serde(default, rename = "volumeMounts")]
    pub(crate) volume_mounts: Option<Vec<PartialMount>>,
}

/// A string as written; a number or a boolean as its text (YAML's `value: 8080`, which the
/// apiserver refuses, is still read offline rather than failing the whole workload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scalar(pub(crate) String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar(v))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[cfg_attr(any(test, fuzzing), derive(PartialEq))]
pub(crate) struct PartialEnvVar {
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) value: Option<Scalar>,
    #[serde(default, rename = "valueFrom")]
    pub(crate) value_from: Option<PartialEnvSource>,
}

#[derive(Deserialize)]
#[cfg_attr(any(test, fuzzing), derive(PartialEq))]
pub(crate) struct PartialEnvSource {
    #[serde(default, rename = "configMapKeyRef")]
    pub(crate) config_map_key_ref: Option<PartialKeyRef>,
    #[serde(default, rename = "secretKeyRef")]
    pub(crate) secret_key_ref: Option<PartialKeyRef>,
    #[serde(default, rename = "fieldRef")]
    pub(crate) field_ref: Option<PartialFieldRef>,
    #[serde(default, rename = "resourceFieldRef")]
    pub(crate) resource_field_ref: Option<PartialResourceRef>,
}

#[derive(Deserialize)]
#[cfg_attr(any(test, fuzzing), derive(PartialEq))]
pub(crate) struct PartialKeyRef {
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) key: Option<String>,
}

#[derive(Deserialize)]
#[cfg_attr(any(test, fuzzing), derive(PartialEq))]
pub(crate) struct PartialFieldRef {
    #[serde(default, rename = "fieldPath")]
    pub(crate) field_path: Option<String>,
}

#[derive(Deserialize)]
#[cfg_attr(any(test, fuzzing), derive(PartialEq))]
pub(crate) struct PartialResourceRef {
    #[serde(default, rename = "containerName")]
    pub(crate) container_name: Option<String>,
    #[serde(default)]
    pub(crate) resource: Option<String>,
    #[serde(default)]
    pub(crate) divisor: Option<Value>,
}

#[derive(Deserialize)]
#[cfg_attr(any(test, fuzzing), derive(PartialEq))]
pub(crate) struct PartialEnvFrom {
    #[serde(default, rename = "configMapRef")]
    pub(crate) config_map_ref: Option<PartialName>,
    #[serde(default, rename = "secretRef")]
    pub(crate) secret_ref: Option<PartialName>,
    #[serde(default)]
    pub(crate) prefix: Option<String>,
}

#[derive(Deserialize)]
#[cfg_attr(any(test, fuzzing), derive(PartialEq))]
pub(crate) struct PartialName {
    #[serde(default)]
    pub(crate) name: Option<String>,
}

#[derive(Deserialize)]
#[cfg_attr(any(test, fuzzing), derive(PartialEq))]
pub(crate) struct PartialMount {
    #[serde(default)]
    pub(crate) name: Option<String>,
}

#[derive(Deserialize)]
#[cfg_attr(any(test, fuzzing), derive(PartialEq))]
pub(crate) struct PartialVolume {
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default, rename = "emptyDir")]
    pub(crate) empty_dir: Option<PartialEmptyDir>,
}

#[derive(Deserialize)]
#[cfg_attr(any(test, fuzzing), derive(PartialEq))]
pub(crate) struct PartialEmptyDir {
    #[serde(default)]
    pub(crate) medium: Option<String>,
    #[serde(default, rename = "sizeLimit")]
    pub(crate) size_limit: Option<Value>,
}

#[derive(Deserialize)]
#[cfg_attr(any(test, fuzzing), derive(PartialEq))]
pub(crate) struct PartialResources {
    #[serde(default)]
    pub(crate) limits: Option<PartialQuantities>,
    #[serde(default)]
    pub(crate) requests: Option<PartialQuantities>,
}

#[derive(Deserialize)]
#[cfg_attr(any(test, fuzzing), derive(PartialEq))]
pub(crate) struct PartialQuantities {
    #[serde(default)]
    pub(crate) memory: Option<Value>,
}

impl Workload {
    /// Reads a workload from a parsed object (`oomguard check`). `namespace` is used when the
    /// object names none.
    pub fn from_object(
        kind: WorkloadKind,
        object: &Value,
        namespace: &str,
    ) -> Result<Workload, WorkloadError> {
        if !object.is_object() {
            return Err(WorkloadError::NotAnObject);
        }
        // With the path of what does not fit (`spec.template.spec.containers[1].name`): YAML
        // 1.1 reads an unquoted `y`, `no` or `off` as a boolean, and the user must find it.
        let partial: PartialObject =
            serde_path_to_error::deserialize(object).map_err(|e| WorkloadError::Malformed {
                kind: kind.as_str(),
                message: format!("{}: {}", e.path(), e.inner()),
            })?;
        Self::from_partial(kind, partial, namespace)
    }

    /// Reads a workload straight from the object's JSON text (the admission path).
    pub fn from_json(
        kind: WorkloadKind,
        json: &str,
        namespace: &str,
    ) -> Result<Workload, WorkloadError> {
        if !json.trim_start().starts_with('{') {
            return Err(WorkloadError::NotAnObject);
        }
        let partial: PartialObject =
            serde_json::from_str(json).map_err(|e| WorkloadError::Malformed {
                kind: kind.as_str(),
                message: e.to_string(),
            })?;
        Self::from_partial(kind, partial, namespace)
    }

    /// Reads a workload from its already deserialized parts (one pass over an AdmissionReview).
    pub fn from_partial(
        kind: WorkloadKind,
        o: PartialObject,
        namespace: &str,
    ) -> Result<Workload, WorkloadError> {
        let meta = o.metadata;
        let has_metadata = meta.is_some();
        let meta = meta.unwrap_or_default();
        let name = meta.name.or(meta.generate_name).unwrap_or_default();
        let has_annotations = meta.annotations.is_some();
        let deleting = meta.deletion_timestamp.is_some();
        let annotations = meta.annotations.unwrap_or_default().0;
        let controlled_by = meta
            .owner_references
            .unwrap_or_default()
            .into_iter()
            .find(|r| r.controller == Some(true))
            .map(|r| {
                format!(
                    "{}/{}",
                    r.kind.as_deref().unwrap_or("?"),
                    r.name.as_deref().unwrap_or("?")
                )
            });
        let path = kind.pod_spec_path();
        let no_pod_spec = || WorkloadError::NoPodSpec {
            kind: kind.as_str(),
            name: name.clone(),
            path: path.join("."),
        };
        let spec = o.spec.ok_or_else(no_pod_spec)?;
        let pod = match kind {
            WorkloadKind::Pod => PartialPodSpec {
                containers: spec.containers,
                init_containers: spec.init_containers,
                volumes: spec.volumes,
                resources: spec.resources,
            },
            WorkloadKind::CronJob => spec
                .job_template
                .and_then(|j| j.spec)
                .and_then(|s| s.template)
                .and_then(|t| t.spec)
                .ok_or_else(no_pod_spec)?,
            _ => spec.template.and_then(|t| t.spec).ok_or_else(no_pod_spec)?,
        };
        let pod_limit = pod
            .resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| MemoryField::read(l.memory.as_ref()).bytes());
        // Memory-backed emptyDirs by name: what a mount of them charges to a container.
        let memory_volumes: Vec<MemoryVolume> = pod
            .volumes
            .unwrap_or_default()
            .into_iter()
            .filter_map(|v| {
                let e = v.empty_dir?;
                (e.medium.as_deref() == Some("Memory")).then(|| MemoryVolume {
                    name: v.name.unwrap_or_default(),
                    size_limit: MemoryField::read(e.size_limit.as_ref()).bytes(),
                })
            })
            .collect();
        let mut containers = Vec::new();
        for (list, default_role) in [
            (pod.init_containers, ContainerRole::Init),
            (pod.containers, ContainerRole::Main),
        ] {
            for (index, c) in list.unwrap_or_default().into_iter().enumerate() {
                let role = if default_role == ContainerRole::Init
                    && c.restart_policy.as_deref() == Some("Always")
                {
                    ContainerRole::Sidecar
                } else {
                    default_role
                };
                let (has_resources, limits, requests) = match c.resources {
                    Some(r) => (true, r.limits, r.requests),
                    None => (false, None, None),
                };
                let name = c.name.unwrap_or_default();
                let runtime = runtime_spec(
                    &name,
                    c.command,
                    c.args,
                    c.env,
                    c.env_from,
                    c.volume_mounts,
                    &memory_volumes,
                );
                containers.push(ContainerSpec {
                    name,
                    role,
                    index,
                    has_limits: limits.is_some(),
                    limit: MemoryField::read(limits.as_ref().and_then(|l| l.memory.as_ref())),
                    request: MemoryField::read(requests.as_ref().and_then(|r| r.memory.as_ref())),
                    has_resources,
                    runtime,
                });
            }
        }
        Ok(Workload {
            kind,
            namespace: meta.namespace.unwrap_or_else(|| namespace.to_string()),
            name,
            annotations,
            containers,
            controlled_by,
            deleting,
            has_metadata,
            has_annotations,
            pod_limit,
            pod_spec_path: path,
        })
    }

    /// The controller that owns this object when it is not one of Kubernetes' own workload
    /// controllers (an operator's custom resource: `Elasticsearch/quickstart`): the operator
    /// rewrites the object from that resource, which is where memory is set.
    pub fn operator_owner(&self) -> Option<&str> {
        self.controlled_by.as_deref().filter(|o| {
            let kind = o.split_once('/').map_or(*o, |(k, _)| k);
            !WorkloadKind::is_workload_owner(kind)
        })
    }

    pub fn key(&self) -> WorkloadKey {
        WorkloadKey {
            namespace: self.namespace.clone(),
            kind: self.kind.as_str().to_string(),
            name: self.name.clone(),
        }
    }

    /// [`Self::container_pointer`] as text, built without escaping: its tokens are fixed names
    /// and an index, which need none.
    pub fn container_path(&self, c: &ContainerSpec) -> String {
        use std::fmt::Write as _;
        let mut path = String::with_capacity(64);
        for t in self.pod_spec_path {
            path.push('/');
            path.push_str(t);
        }
        path.push('/');
        path.push_str(c.role.list());
        // Writing into a String cannot fail.
        let _ = write!(path, "/{}", c.index);
        path
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

/// What [`crate::runtime`] reads of a container: its command line, its env (values from
/// ConfigMaps, Secrets and fields described, not read) and the memory-backed volumes it mounts.
fn runtime_spec(
    container: &str,
    command: Option<Vec<Scalar>>,
    args: Option<Vec<Scalar>>,
    env: Option<Vec<PartialEnvVar>>,
    env_from: Option<Vec<PartialEnvFrom>>,
    mounts: Option<Vec<PartialMount>>,
    memory_volumes: &[MemoryVolume],
) -> RuntimeSpec {
    let strings = |v: Option<Vec<Scalar>>| {
        v.unwrap_or_default()
            .into_iter()
            .map(|s| s.0)
            .collect::<Vec<_>>()
    };
    let env = env
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| {
            let name = e.name?;
            let value = match (e.value, e.value_from) {
                (_, Some(from)) => env_source(container, from),
                (Some(v), None) => EnvValue::Literal(v.0),
                (None, None) => EnvValue::Literal(String::new()),
            };
            Some(EnvVar { name, value })
        })
        .collect();
    let env_from = env_from
        .unwrap_or_default()
        .into_iter()
        .filter_map(|f| {
            let what = match (f.config_map_ref, f.secret_ref) {
                (Some(c), _) => format!("configMap {}", c.name.unwrap_or_default()),
                (None, Some(s)) => format!("secret {}", s.name.unwrap_or_default()),
                (None, None) => return None,
            };
            Some(match f.prefix.filter(|p| !p.is_empty()) {
                Some(p) => format!("{what} prefix {p}"),
                None => what,
            })
        })
        .collect();
    let mut mounted: Vec<MemoryVolume> = Vec::new();
    if !memory_volumes.is_empty() {
        for m in mounts.unwrap_or_default() {
            if let Some(v) = memory_volumes
                .iter()
                .find(|v| Some(&v.name) == m.name.as_ref())
            {
                // Mounted twice (two subPaths): one volume.
                if !mounted.iter().any(|x| x.name == v.name) {
                    mounted.push(v.clone());
                }
            }
        }
    }
    RuntimeSpec {
        command: strings(command),
        args: strings(args),
        env,
        env_from,
        memory_volumes: mounted,
    }
}

/// Where an env value comes from when it is not a literal (named, not formatted: most are
/// never shown).
fn env_source(container: &str, from: PartialEnvSource) -> EnvValue {
    let key_ref = |kind: &'static str, r: PartialKeyRef| {
        EnvValue::Unread(Unread {
            kind,
            name: r.name.unwrap_or_default(),
            key: Some(r.key.unwrap_or_default()),
        })
    };
    if let Some(r) = from.config_map_key_ref {
        return key_ref("configMap", r);
    }
    if let Some(r) = from.secret_key_ref {
        return key_ref("secret", r);
    }
    if let Some(r) = from.resource_field_ref {
        let resource = r.resource.unwrap_or_default();
        let own = r
            .container_name
            .as_deref()
            .is_none_or(|c| c.is_empty() || c == container);
        if own {
            let divisor = match r.divisor {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s),
                Some(other) => Some(other.to_string()),
            };
            return EnvValue::Resource { resource, divisor };
        }
        return EnvValue::Unread(Unread {
            kind: "resourceFieldRef of another container",
            name: resource,
            key: None,
        });
    }
    if let Some(r) = from.field_ref {
        return EnvValue::Unread(Unread {
            kind: "fieldRef",
            name: r.field_path.unwrap_or_default(),
            key: None,
        });
    }
    EnvValue::Unread(Unread {
        kind: "valueFrom",
        name: String::new(),
        key: None,
    })
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
            for c in &w.containers {
                assert_eq!(w.container_path(c), w.container_pointer(c).to_string());
            }
        }
    }

    fn unread(kind: &'static str, name: &str, key: Option<&str>) -> EnvValue {
        EnvValue::Unread(Unread {
            kind,
            name: name.into(),
            key: key.map(str::to_string),
        })
    }

    #[test]
    fn reads_what_the_runtime_checks_need() {
        let pod_spec = json!({
            "containers": [{
                "name": "app",
                "command": ["java"],
                "args": ["-Xmx1g", 8080, true],
                "env": [
                    {"name": "A", "value": "x"},
                    {"name": "PORT", "value": 8080},
                    {"name": "EMPTY"},
                    {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}},
                    {"name": "S", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "p"}}},
                    {"name": "F", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "M", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                    {"name": "O", "valueFrom": {"resourceFieldRef": {"containerName": "side", "resource": "limits.memory"}}},
                    {"value": "no name"}
                ],
                "envFrom": [{"configMapRef": {"name": "cfg"}}, {"secretRef": {"name": "sec"}, "prefix": "DB_"}],
                "volumeMounts": [
                    {"name": "shm", "mountPath": "/dev/shm"},
                    {"name": "shm", "mountPath": "/x", "subPath": "x"},
                    {"name": "disk", "mountPath": "/tmp"},
                    {"name": "nolimit", "mountPath": "/n"}
                ]
            }],
            "volumes": [
                {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
                {"name": "nolimit", "emptyDir": {"medium": "Memory"}},
                {"name": "disk", "emptyDir": {}},
                {"name": "cfg", "configMap": {"name": "cfg"}}
            ]
        });
        let obj = json!({"metadata": {"name": "a"}, "spec": {"template": {"spec": pod_spec}}});
        let w = Workload::from_object(WorkloadKind::Deployment, &obj, "ns").unwrap();
        let r = &w.containers[0].runtime;
        assert_eq!(r.command, ["java"]);
        assert_eq!(r.args, ["-Xmx1g", "8080", "true"]);
        let env: Vec<(&str, &EnvValue)> =
            r.env.iter().map(|e| (e.name.as_str(), &e.value)).collect();
        assert_eq!(
            env,
            vec![
                ("A", &EnvValue::Literal("x".into())),
                ("PORT", &EnvValue::Literal("8080".into())),
                ("EMPTY", &EnvValue::Literal(String::new())),
                ("C", &unread("configMap", "cm", Some("k"))),
                ("S", &unread("secret", "sec", Some("p"))),
                ("F", &unread("fieldRef", "metadata.name", None)),
                (
                    "M",
                    &EnvValue::Resource {
                        resource: "limits.memory".into(),
                        divisor: Some("1Mi".into())
                    }
                ),
                (
                    "O",
                    &unread(
                        "resourceFieldRef of another container",
                        "limits.memory",
                        None
                    )
                ),
            ]
        );
        assert_eq!(r.env_from, ["configMap cfg", "secret sec prefix DB_"]);
        assert_eq!(
            r.memory_volumes,
            [
                MemoryVolume {
                    name: "shm".into(),
                    size_limit: Some(64 << 20)
                },
                MemoryVolume {
                    name: "nolimit".into(),
                    size_limit: None
                }
            ]
        );
        // The same from JSON text (the admission path's fallback) as from a parsed value.
        let from_json =
            Workload::from_json(WorkloadKind::Deployment, &obj.to_string(), "ns").unwrap();
        assert_eq!(from_json.containers[0].runtime, *r);
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
        for w in [
            Workload::from_object(
                WorkloadKind::Pod,
                &json!({"spec": {"containers": "web"}}),
                "ns",
            ),
            Workload::from_json(
                WorkloadKind::Pod,
                r#"{"spec": {"containers": "web"}}"#,
                "ns",
            ),
        ] {
            assert!(matches!(w, Err(WorkloadError::Malformed { .. })), "{w:?}");
        }
        assert_eq!(
            Workload::from_json(WorkloadKind::Pod, "[1]", "ns").unwrap_err(),
            WorkloadError::NotAnObject
        );
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
