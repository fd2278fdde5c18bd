//! Reading the target workload from the cluster (with oomguard's own identity, after the caller
//! was authorised): its containers and limits through [`crate::workload`], its replica count.

use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::api::Api;

use crate::reconcile::observe::Scalable;
use crate::reconcile::plan::ScalableKind;
use crate::workload::{Workload, WorkloadKind};

/// A workload as the API needs it.
#[derive(Debug, Clone)]
pub struct ReadWorkload {
    pub workload: Workload,
    /// `spec.replicas` (Kubernetes' default 1 when unset).
    pub replicas: u32,
}

pub trait Workloads: Send + Sync {
    /// The workload, None when it does not exist; Err with a message when the API failed.
    fn get<'a>(
        &'a self,
        kind: ScalableKind,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ReadWorkload>, String>>;
}

pub struct KubeWorkloads {
    pub client: kube::Client,
}

fn read<K: Scalable>(
    kind: WorkloadKind,
    object: &K,
    namespace: &str,
) -> Result<ReadWorkload, String> {
    let value = serde_json::to_value(object).map_err(|e| e.to_string())?;
    let workload = Workload::from_object(kind, &value, namespace).map_err(|e| e.to_string())?;
    Ok(ReadWorkload {
        workload,
        replicas: object.replicas(),
    })
}

impl Workloads for KubeWorkloads {
    fn get<'a>(
        &'a self,
        kind: ScalableKind,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ReadWorkload>, String>> {
        Box::pin(async move {
            let failed = |e: kube::Error| {
                format!(
                    "reading {} {namespace}/{name} from the Kubernetes API: {e}",
                    kind.as_str()
                )
            };
            match kind {
                ScalableKind::Deployment => {
                    let api: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
                    match api.get_opt(name).await.map_err(failed)? {
                        None => Ok(None),
                        Some(d) => read(WorkloadKind::Deployment, &d, namespace).map(Some),
                    }
                }
                ScalableKind::StatefulSet => {
                    let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), namespace);
                    match api.get_opt(name).await.map_err(failed)? {
                        None => Ok(None),
                        Some(s) => read(WorkloadKind::StatefulSet, &s, namespace).map(Some),
                    }
                }
            }
        })
    }
}
