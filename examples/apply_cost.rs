//! The client side of bench/apply-cost.sh: creates N Deployments through a kube-apiserver, C at
//! a time, over the kube client's pooled keep-alive connections (the cluster of KUBECONFIG,
//! whose user the bench makes the admin), and prints one JSON line: creates per second over the
//! whole run, latency percentiles, and how many failed.
//!
//! Usage: apply_cost NAMESPACE N C PREFIX
//! Each Deployment is a small one as a user writes it: one container, a 256Mi limit and a
//! 128Mi request.

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::PostParams;
use kube::{Api, Client};

fn deployment(name: &str) -> Result<Deployment, serde_json::Error> {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "app",
                    "image": "registry.example/app:1.0",
                    "resources": {
                        "requests": {"cpu": "100m", "memory": "128Mi"},
                        "limits": {"memory": "256Mi"}
                    }
                }]}
            }
        }
    }))
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, ns, n, c, prefix] = args.as_slice() else {
        anyhow::bail!("usage: apply_cost NAMESPACE N C PREFIX");
    };
    // Both of rustls' providers are in the build (kube's ring, others' aws-lc): name one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let n: usize = n.parse()?;
    let c: usize = c.parse()?;
    let client = Client::try_default().await?;
    let api: Api<Deployment> = Api::namespaced(client, ns);
    let bodies = (0..n)
        .map(|i| deployment(&format!("{prefix}-{i}")))
        .collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    let results: Vec<(Duration, Result<(), String>)> = futures::stream::iter(bodies)
        .map(|d| {
            let api = api.clone();
            async move {
                let t = Instant::now();
                let r = api
                    .create(&PostParams::default(), &d)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string());
                (t.elapsed(), r)
            }
        })
        .buffer_unordered(c)
        .collect()
        .await;
    let wall = started.elapsed().as_secs_f64();
    let mut lat: Vec<Duration> = results.iter().map(|(d, _)| *d).collect();
    lat.sort();
    let failed: Vec<&String> = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().err())
        .collect();
    println!(
        "{}",
        serde_json::json!({
            "creates": n,
            "concurrency": c,
            "seconds": wall,
            "per_second": n as f64 / wall,
            "p50_ms": percentile(&lat, 0.50),
            "p90_ms": percentile(&lat, 0.90),
            "p99_ms": percentile(&lat, 0.99),
            "failed": failed.len(),
            "first_error": failed.first(),
        })
    );
    Ok(())
}
