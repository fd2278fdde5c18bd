//! Cost of one admission through the webhook's router, without TLS and sockets: the same
//! handlers, middleware and answer serialization as `oomguard serve`, driven in-process with the
//! review `bench/load.sh` posts. Meant for callgrind (instructions are deterministic; time on a
//! shared machine is not):
//!
//! ```text
//! cargo build --release --features bench --example admission_cost
//! bench/admission-cost.sh            # instructions per request, /mutate and /trivial
//! target/release/examples/admission_cost mutate 10000   # or just time it
//! ```
//! Usage: `admission_cost [mutate|validate|trivial] [requests] [review.json]`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::Request;
use oomguard::admission::Admitter;
use oomguard::history::file::{FileHistory, FileSource};
use oomguard::policy::store::PolicyStore;
use oomguard::webhook::metrics::Metrics;
use oomguard::webhook::{webhook_router, App};
use tower::ServiceExt;

// As in the server binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = format!("/{}", args.get(1).map_or("mutate", String::as_str));
    let n: usize = args.get(2).map_or(Ok(1000), |s| s.parse())?;
    let root = env!("CARGO_MANIFEST_DIR");
    let review = args
        .get(3)
        .cloned()
        .unwrap_or_else(|| format!("{root}/tests/fixtures/reviews/deployment-create.json"));
    let body = Bytes::from(std::fs::read(review)?);

    // The policy bench/load.sh serves with.
    let dir = tempfile::tempdir()?;
    // (and for the recorded review of a JVM Deployment, in namespace shop).
    for ns in ["self-healing-platform", "shop"] {
        std::fs::write(
            dir.path().join(format!("{ns}.yaml")),
            "apiVersion: oomguard.io/v1\nkind: MemoryPolicy\nspec: {mode: mutate}\n",
        )?;
    }
    let (policies, _) = PolicyStore::open(dir.path())?;
    let history = FileHistory::load(std::path::Path::new(&format!(
        "{root}/examples/memory-leak-app/history.json"
    )))?;
    let app = Arc::new(App {
        admitter: Admitter {
            history: Arc::new(FileSource::new(history)),
            history_timeout: Duration::from_secs(2),
        },
        policies: Arc::new(policies),
        metrics: Arc::new(Metrics::new()),
        readiness: oomguard::serving::Readiness::new(true),
    });
    // The same log filter as bench/load.sh (events below warn are compiled in, not emitted).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn,rustls=error"))
        .with_writer(std::io::stderr)
        .init();
    let router = webhook_router(app);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let start = Instant::now();
    let mut answer_bytes = 0;
    rt.block_on(async {
        for _ in 0..n {
            let req = Request::post(path.as_str())
                .header("content-type", "application/json")
                .header("content-length", body.len())
                .body(Body::from(body.clone()))?;
            let resp = router.clone().oneshot(req).await?;
            if !resp.status().is_success() {
                let hint = if path == "/trivial" {
                    " (the /trivial route exists only in builds with --features bench)"
                } else {
                    ""
                };
                return Err(format!("{path}: {}{hint}", resp.status()).into());
            }
            answer_bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await?
                .len();
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    let took = start.elapsed();
    eprintln!(
        "{path}: {n} requests in {:.3} s ({:.1} µs each), answer {answer_bytes} bytes",
        took.as_secs_f64(),
        took.as_secs_f64() * 1e6 / n.max(1) as f64
    );
    Ok(())
}
