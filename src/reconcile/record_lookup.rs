//! Reading remediation records where the reconciler keeps them: the `oomguard.io/remediations`
//! annotation of each workload labelled `oomguard.io/remediated=true` (see
//! [`super::record`]). Read-only; a real [`Remediator`] may use it for `get` and
//! `list`. A record counts only on the workload it names: anyone who may annotate a workload
//! could write records claiming other namespaces' workloads, and those are dropped
//! ([`record::about`]).

use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::api::{Api, ListParams};

use super::plan::ScalableKind;
use super::record::{self, Remediation, Target};
use super::remediator::{Caller, RemediateError, Remediator, Validated};

/// Lists the records from the workloads' annotations with the given client.
#[derive(Clone)]
pub struct AnnotationRecords {
    client: kube::Client,
}

impl AnnotationRecords {
    pub fn new(client: kube::Client) -> AnnotationRecords {
        AnnotationRecords { client }
    }

    /// Every record (of one namespace, or all), oldest first.
    pub async fn list(&self, namespace: Option<&str>) -> Result<Vec<Remediation>, RemediateError> {
        let lp = ListParams::default().labels(&format!("{}=true", record::LABEL));
        let mut out = Vec::new();
        let (deployments, statefulsets): (Api<Deployment>, Api<StatefulSet>) = match namespace {
            Some(ns) => (
                Api::namespaced(self.client.clone(), ns),
                Api::namespaced(self.client.clone(), ns),
            ),
            None => (Api::all(self.client.clone()), Api::all(self.client.clone())),
        };
        let upstream = |what: &str, e: kube::Error| {
            RemediateError::Upstream(format!("listing {what} labelled {}: {e}", record::LABEL))
        };
        let d = deployments
            .list(&lp)
            .await
            .map_err(|e| upstream("deployments", e))?;
        let s = statefulsets
            .list(&lp)
            .await
            .map_err(|e| upstream("statefulsets", e))?;
        let annotations = d
            .items
            .iter()
            .map(|o| (&o.metadata, ScalableKind::Deployment))
            .chain(
                s.items
                    .iter()
                    .map(|o| (&o.metadata, ScalableKind::StatefulSet)),
            );
        for (meta, kind) in annotations {
            let value = meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(record::ANNOTATION));
            let here = Target {
                kind,
                namespace: meta.namespace.clone().unwrap_or_default(),
                name: meta.name.clone().unwrap_or_default(),
            };
            match record::decode(value.map(String::as_str)) {
                Ok(rs) => out.extend(record::about(rs, &here)),
                Err(e) => tracing::warn!(
                    kind = kind.as_str(),
                    namespace = meta.namespace.as_deref().unwrap_or(""),
                    name = meta.name.as_deref().unwrap_or(""),
                    error = %e,
                    "skipping unreadable remediation records"
                ),
            }
        }
        out.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    pub async fn get(&self, id: &str) -> Result<Option<Remediation>, RemediateError> {
        Ok(self.list(None).await?.into_iter().find(|r| r.id == id))
    }
}

/// Reads records but executes nothing: `oomguard api` on its own, until the reconciler runs the
/// API in-process. `trigger` answers 503.
pub struct ReadOnlyRemediator {
    pub records: AnnotationRecords,
}

impl Remediator for ReadOnlyRemediator {
    fn trigger<'a>(
        &'a self,
        _req: &'a Validated,
        _caller: &'a Caller,
    ) -> BoxFuture<'a, Result<Remediation, RemediateError>> {
        Box::pin(async {
            Err(RemediateError::Unavailable(
                "this process only reads remediations: run the API inside `oomguard reconcile` \
                 (--api-addr) to execute them"
                    .to_string(),
            ))
        })
    }

    fn get<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Remediation>, RemediateError>> {
        Box::pin(self.records.get(id))
    }

    fn list<'a>(
        &'a self,
        namespace: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Remediation>, RemediateError>> {
        Box::pin(self.records.list(namespace))
    }
}
