//! Command-line arguments and wiring. Each subcommand builds its edges (files, TLS, history
//! sources) here and hands them to the library.

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use crate::admission::Admitter;
use crate::check;
use crate::history::file::{FileHistory, FileSource};
use crate::history::{HistoryError, HistoryQuery, HistorySource, WorkloadHistory};
use crate::policy::store::{PolicySet, PolicyStore};
use crate::policy::Mode;
use crate::serving::{self, tls::TlsFiles};
use crate::webhook;

#[derive(Debug, Parser)]
#[command(
    name = "oomguard",
    version,
    about = "Keeps Kubernetes workloads from being OOM-killed"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the admission webhook (HTTPS) and its admin listener.
    Serve(ServeArgs),
    /// Check manifests offline, as the webhook would (for CI pipelines).
    Check(CheckArgs),
    /// Make a CA and a serving certificate, and render the webhook configurations.
    Certs(CertsArgs),
    /// Replay memory traces: oomguard in a closed loop against published recommenders; score
    /// OOMs and slack (built with `--features replay`).
    #[cfg(feature = "replay")]
    Replay(crate::replay::ReplayArgs),
    /// Report per container: current and recommended memory request and limit, sorted by risk.
    Recommend(RecommendArgs),
    /// Run the reconciler: act on forecasts at runtime (scale out, raise limits, restart before
    /// an OOM) and verify that it helped. One replica acts at a time (a Lease). With
    /// `--api-addr`, it also serves the forecast and remediation API.
    Reconcile(ReconcileArgs),
    /// Run only the forecast and remediation API (HTTPS, docs/openapi.yaml) with read-only
    /// records; remediations are executed when the API runs inside `oomguard reconcile`.
    Api(ApiCmdArgs),
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// Folder of <namespace>.yaml policies (and default.yaml); reloaded on change. Only
    /// namespaces whose policy has `reconcile.enabled: true` are acted on.
    #[arg(long, value_name = "DIR")]
    pub policies: PathBuf,
    #[command(flatten)]
    pub history: HistoryArgs,
    /// How often every workload is looked at again (changes are looked at at once).
    #[arg(long, default_value = "1m", value_parser = crate::duration::parse)]
    pub interval: Duration,
    /// Watch this namespace only (default: all namespaces).
    #[arg(long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Name of the coordination.k8s.io Lease that elects the acting replica.
    #[arg(long, default_value = "oomguard-reconciler")]
    pub lease_name: String,
    /// Namespace of the Lease (default: the pod's own, from POD_NAMESPACE or the service
    /// account, else "default").
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// How long a Lease holder that stopped renewing keeps it; a standby takes over after this.
    #[arg(long, default_value = "15s", value_parser = crate::duration::parse)]
    pub lease_duration: Duration,
    /// This replica's name in the Lease and in Events (default: POD_NAME, else host name and pid).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Plain-HTTP address of /livez, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:8081")]
    pub admin_listen: SocketAddr,
    #[command(flatten)]
    pub api: crate::api::ApiArgs,
    /// Serving certificate of the API (PEM); needed with --api-addr. Reloaded when it changes.
    #[arg(long, value_name = "FILE", requires = "api_addr")]
    pub tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, value_name = "FILE", requires = "api_addr")]
    pub tls_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ApiCmdArgs {
    #[command(flatten)]
    pub api: crate::api::ApiArgs,
    /// Serving certificate (PEM), e.g. tls.crt from `oomguard certs`; reloaded when it changes.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: PathBuf,
    /// Its private key (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_key: PathBuf,
    /// Folder of <namespace>.yaml policies (and default.yaml); reloaded on change.
    #[arg(long, value_name = "DIR")]
    pub policies: PathBuf,
    #[command(flatten)]
    pub history: HistoryArgs,
    /// How long in-flight requests may finish after SIGTERM.
    #[arg(long, default_value = "10s", value_parser = crate::duration::parse)]
    pub drain: Duration,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// History file (see docs/prometheus.md, "The history file"), instead of Prometheus.
    #[arg(long, value_name = "FILE", conflicts_with = "prometheus")]
    pub history: Option<PathBuf>,
    #[command(flatten)]
    pub prometheus: crate::history::prometheus::PrometheusArgs,
    /// Deadline for fetching a workload's history: an admission waits this long, then allows
    /// with a warning while the load goes on (default 2s); `check` waits for its answer
    /// (default 5m).
    #[arg(long, value_parser = crate::duration::parse)]
    pub history_timeout: Option<Duration>,
}

/// How long an admission waits for history.
pub const ADMISSION_HISTORY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long `check` waits for history: it is a CI step, a right answer matters more than a fast
/// one (a cold 14-day refresh of a large namespace takes seconds to minutes).
pub const OFFLINE_HISTORY_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// HTTPS address of the webhook.
    #[arg(long, default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Plain-HTTP address of /livez, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub admin_listen: SocketAddr,
    #[arg(long, value_name = "FILE")]
    pub tls_cert: PathBuf,
    #[arg(long, value_name = "FILE")]
    pub tls_key: PathBuf,
    /// Folder of <namespace>.yaml policies (and default.yaml); reloaded on change.
    #[arg(long, value_name = "DIR")]
    pub policies: PathBuf,
    #[command(flatten)]
    pub history: HistoryArgs,
    /// How long in-flight requests may finish after SIGTERM.
    #[arg(long, default_value = "10s", value_parser = crate::duration::parse)]
    pub drain: Duration,
    /// With --prometheus: `/readyz` says 503 until the histories of every namespace with a
    /// policy of its own are loaded, or until this has passed.
    #[arg(long, default_value = "60s", value_parser = crate::duration::parse)]
    pub warmup_timeout: Duration,
    /// Namespaces loaded from Prometheus at a time during the warm-up.
    #[arg(long, default_value_t = 2)]
    pub warmup_concurrency: usize,
    /// After SIGTERM, keep serving this long with /readyz answering 503 before draining, so
    /// that callers stop sending first. deploy/ gets the same from the kubelet's `preStop`
    /// sleep; set it where there is none.
    #[arg(long, default_value = "0s", value_parser = crate::duration::parse)]
    pub shutdown_delay: Duration,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Manifest file (multi-document YAML or JSON), or - for standard input.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: String,
    /// Folder of policies; without it every namespace gets the built-in default (warn).
    #[arg(long, value_name = "DIR")]
    pub policies: Option<PathBuf>,
    #[command(flatten)]
    pub history: HistoryArgs,
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub output: check::Format,
    /// Namespace for manifests that name none.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Use this mode in every namespace instead of the policies' own.
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
    /// Exit non-zero on warnings too, not only on denials.
    #[arg(long)]
    pub fail_on_warn: bool,
    /// Print the manifests as the webhook would leave them (text output).
    #[arg(long)]
    pub show_mutated: bool,
}

#[derive(Debug, Args)]
pub struct RecommendArgs {
    #[command(flatten)]
    pub history: HistoryArgs,
    /// Namespace to report on (repeat for more). Default: the manifests' namespaces, or every
    /// namespace of the history file; required with --prometheus and no -f.
    #[arg(short = 'n', long = "namespace", value_name = "NS")]
    pub namespaces: Vec<String>,
    /// Folder of policies; without it every namespace gets the built-in default.
    #[arg(long, value_name = "DIR")]
    pub policies: Option<PathBuf>,
    /// Manifests (multi-document YAML, or - for standard input) with the current requests and
    /// limits, e.g. the GitOps repository's. Without them: the runtime limits from the history
    /// (requests unknown).
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: Option<String>,
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub output: crate::recommend::Format,
    /// Write one kustomize strategic-merge patch per workload into this folder.
    #[arg(long, value_name = "DIR")]
    pub emit_patches: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ModeArg {
    Off,
    Warn,
    Mutate,
    Enforce,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Mode {
        match m {
            ModeArg::Off => Mode::Off,
            ModeArg::Warn => Mode::Warn,
            ModeArg::Mutate => Mode::Mutate,
            ModeArg::Enforce => Mode::Enforce,
        }
    }
}

#[derive(Debug, Args)]
pub struct CertsArgs {
    #[arg(long, default_value = "certs", value_name = "DIR")]
    pub out: PathBuf,
    /// DNS names of the serving certificate (default: the in-cluster service names).
    #[arg(long)]
    pub dns: Vec<String>,
    /// IP addresses of the serving certificate.
    #[arg(long)]
    pub ip: Vec<IpAddr>,
    /// Render the webhook configurations with this base URL (e.g. https://127.0.0.1:8443)
    /// instead of the in-cluster service.
    #[arg(long)]
    pub url: Option<String>,
    /// Service namespace and name for the rendered configurations.
    #[arg(long, default_value = "oomguard")]
    pub service_namespace: String,
    #[arg(long, default_value = "oomguard")]
    pub service_name: String,
    /// Webhook timeout in the rendered configurations (1-30 s).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=30))]
    pub timeout_seconds: u32,
    /// Calls per admitted object: two (a mutating and a validating webhook; the validating one
    /// sees the object after every mutating webhook) or one (a mutating webhook at /admit that
    /// also warns and denies: half the apiserver's calls out; docs/webhook.md).
    #[arg(long, value_enum, default_value = "two")]
    pub webhooks: crate::certs::Calls,
    /// Replace existing files.
    #[arg(long)]
    pub force: bool,
}

/// A source that knows nothing: every workload is "no history yet".
struct NoHistory;

impl HistorySource for NoHistory {
    fn fetch<'a>(
        &'a self,
        _query: &'a HistoryQuery,
    ) -> futures::future::BoxFuture<'a, Result<Option<Arc<WorkloadHistory>>, HistoryError>> {
        Box::pin(async { Ok(None) })
    }
    fn name(&self) -> &'static str {
        "none"
    }
}

fn history_source(args: &HistoryArgs) -> anyhow::Result<Arc<dyn HistorySource>> {
    Ok(long_running_source(args)?.0)
}

type SourceAndPrometheus = (
    Arc<dyn HistorySource>,
    Option<Arc<crate::history::prometheus::PrometheusSource>>,
);

/// The history source of a long-running process (serve, reconcile, api): Prometheus histories
/// keep the forecast fit and a short tail of samples (memory stays flat with many workloads).
/// Also returns the Prometheus source itself, for the warm-up.
fn long_running_source(args: &HistoryArgs) -> anyhow::Result<SourceAndPrometheus> {
    use crate::history::prometheus::{PrometheusSource, SAMPLE_TAIL};
    if let Some(path) = &args.history {
        return Ok((Arc::new(FileSource::new(FileHistory::load(path)?)), None));
    }
    Ok(match PrometheusSource::from_args(&args.prometheus)? {
        Some(p) => {
            let p = Arc::new(p.keep_samples(Some(SAMPLE_TAIL), crate::forecast::prepare));
            (p.clone(), Some(p))
        }
        None => (Arc::new(NoHistory), None),
    })
}

impl Cli {
    /// Runs the command; returns the process exit code.
    pub async fn run(self) -> anyhow::Result<i32> {
        match self.command {
            Command::Serve(a) => serve(a).await,
            Command::Check(a) => run_check(a).await,
            Command::Certs(a) => certs(a),
            Command::Recommend(a) => recommend(a).await,
            Command::Reconcile(a) => reconcile(a).await,
            Command::Api(a) => api(a).await,
            #[cfg(feature = "replay")]
            Command::Replay(a) => {
                let stdout = std::io::stdout();
                crate::replay::run(&a, &mut stdout.lock())?;
                Ok(0)
            }
        }
    }
}

async fn serve(a: ServeArgs) -> anyhow::Result<i32> {
    if a.history.history.is_none() && a.history.prometheus.prometheus.is_none() {
        bail!(
            "serve needs history to check limits against: pass --prometheus URL (or --history FILE)"
        );
    }
    let (history, prometheus) = long_running_source(&a.history)?;
    let admitter = Admitter {
        history,
        history_timeout: a
            .history
            .history_timeout
            .unwrap_or(ADMISSION_HISTORY_TIMEOUT),
    };
    let warmup = prometheus.map(|source| webhook::warmup::Warmup {
        source,
        timeout: a.warmup_timeout,
        concurrency: a.warmup_concurrency,
    });
    webhook::serve(webhook::ServeOptions {
        listen: a.listen,
        admin_listen: a.admin_listen,
        tls: TlsFiles {
            cert: a.tls_cert,
            key: a.tls_key,
        },
        policies: a.policies,
        admitter,
        drain: a.drain,
        warmup,
        shutdown_delay: a.shutdown_delay,
    })
    .await?;
    Ok(0)
}

/// Opens the policies folder and reloads it when it changes (the reconciler and the API; `serve`
/// counts the reloads in its metrics).
pub fn reloading_policies(dir: &std::path::Path) -> anyhow::Result<Arc<PolicyStore>> {
    let store = serving::reloading_policies(dir, |_, _| {})?;
    if let Some(ns) = serving::own_namespace() {
        store.reserve(&ns);
    }
    Ok(store)
}

async fn api(a: ApiCmdArgs) -> anyhow::Result<i32> {
    if a.api.api_addr.is_none() {
        bail!("api needs --api-addr ADDR (e.g. 0.0.0.0:9443)");
    }
    if a.history.history.is_none() && a.history.prometheus.prometheus.is_none() {
        bail!("api needs history for its forecasts: pass --prometheus URL (or --history FILE)");
    }
    let policies = reloading_policies(&a.policies)?;
    // kube's rustls client needs a process-wide provider (ring, as everywhere in oomguard); an
    // error only means one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = kube::Client::try_default().await.context(
        "no Kubernetes client configuration (in-cluster, $KUBECONFIG or ~/.kube/config)",
    )?;
    let remediator = Arc::new(crate::reconcile::record_lookup::ReadOnlyRemediator {
        records: crate::reconcile::record_lookup::AnnotationRecords::new(client.clone()),
    });
    let deps = crate::api::ApiDeps {
        policies,
        history: history_source(&a.history)?,
        client,
        remediator,
    };
    let tls = TlsFiles {
        cert: a.tls_cert,
        key: a.tls_key,
    };
    let shutdown = serving::Shutdown::on_signal();
    crate::api::serve(&a.api, &tls, deps, &shutdown, a.drain).await?;
    Ok(0)
}

async fn reconcile(a: ReconcileArgs) -> anyhow::Result<i32> {
    if a.history.history.is_none() && a.history.prometheus.prometheus.is_none() {
        tracing::warn!(
            "no --prometheus (or --history): acting on the OOM kills the pods report, with no usage history or forecast"
        );
    }
    let lease_namespace = a.lease_namespace.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
            .map(|s| s.trim().to_string())
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".to_string())
    });
    let identity = a.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "oomguard".to_string());
        format!("{host}-{}", std::process::id())
    });
    let policies = reloading_policies(&a.policies)?;
    let history = history_source(&a.history)?;
    // The API, when asked for, beside the controller with the reconciler's own remediator.
    let beside: Option<crate::reconcile::controller::Beside> =
        match (&a.api.api_addr, a.tls_cert, a.tls_key) {
            (None, _, _) => None,
            (Some(_), Some(cert), Some(key)) => {
                let (args, tls) = (a.api, TlsFiles { cert, key });
                let (policies, history) = (policies.clone(), history.clone());
                Some(Box::new(move |remediator, client, stop| {
                    Box::pin(async move {
                        let deps = crate::api::ApiDeps {
                            policies,
                            history,
                            client,
                            remediator,
                        };
                        crate::api::serve(&args, &tls, deps, &stop, Duration::from_secs(10)).await
                    })
                }))
            }
            (Some(_), _, _) => {
                bail!("--api-addr needs --tls-cert and --tls-key (the API is HTTPS only)")
            }
        };
    crate::reconcile::controller::run(crate::reconcile::controller::Options {
        policies,
        history,
        interval: a.interval,
        namespace: a.namespace,
        lease: crate::reconcile::controller::LeaseOptions {
            name: a.lease_name,
            namespace: lease_namespace,
            identity,
            duration: a.lease_duration,
        },
        admin_listen: a.admin_listen,
        beside,
    })
    .await?;
    Ok(0)
}

fn read_manifests(file: &str) -> anyhow::Result<String> {
    if file == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the manifests from standard input")?;
        Ok(s)
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading the manifests from {file}"))
    }
}

fn offline_policies(dir: Option<&PathBuf>) -> anyhow::Result<PolicySet> {
    Ok(match dir {
        Some(dir) => {
            let (store, report) = PolicyStore::open(dir)?;
            if let Some(e) = report.errors.first() {
                // Offline there is no last good version: a broken policy is an error.
                bail!("{e}");
            }
            (*store.current()).clone()
        }
        None => PolicySet::single(Default::default()),
    })
}

async fn run_check(a: CheckArgs) -> anyhow::Result<i32> {
    let mut policies = offline_policies(a.policies.as_ref())?;
    if let Some(m) = a.mode {
        policies = policies.with_mode(m.into());
    }
    let admitter = Admitter {
        history: offline_source(&a.history)?,
        history_timeout: a.history.history_timeout.unwrap_or(OFFLINE_HISTORY_TIMEOUT),
    };
    // Read as a stream, one document at a time: memory follows the largest document.
    let reader: Box<dyn std::io::BufRead> = if a.file == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        let f = std::fs::File::open(&a.file)
            .with_context(|| format!("reading the manifests from {}", a.file))?;
        Box::new(std::io::BufReader::new(f))
    };
    let docs = crate::manifest::documents(reader)
        .with_context(|| format!("reading the manifests from {}", a.file))?;
    let opts = check::Options {
        admitter: &admitter,
        policies: &policies,
        namespace: &a.namespace,
        format: a.output,
        show_mutated: a.show_mutated,
        source_name: &a.file,
    };
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let (summary, errors) = check::run(&opts, docs, &mut stdout.lock(), &mut stderr.lock()).await?;
    // Unreadable documents are named after the others were answered (kubectl refuses them).
    for e in &errors {
        eprintln!("error: {e}");
    }
    let objects = summary.pass
        + summary.warn
        + summary.fail
        + summary.skip
        + summary.not_read
        + summary.errors;
    if objects == 0 {
        // As kubectl: "error: no objects passed to apply" (an empty render is a broken step).
        eprintln!("error: {}: no objects to check", a.file);
        return Ok(2);
    }
    Ok(if !errors.is_empty() {
        2
    } else if summary.fail > 0 || (a.fail_on_warn && summary.warn > 0) {
        1
    } else {
        0
    })
}

/// The history source of `check`: all recent samples kept (one run, no memory concern).
fn offline_source(args: &HistoryArgs) -> anyhow::Result<Arc<dyn HistorySource>> {
    if let Some(path) = &args.history {
        return Ok(Arc::new(FileSource::new(FileHistory::load(path)?)));
    }
    Ok(
        match crate::history::prometheus::PrometheusSource::from_args(&args.prometheus)? {
            Some(p) => Arc::new(p),
            None => Arc::new(NoHistory),
        },
    )
}

/// More workloads than this get a progress bar (on a terminal).
const PROGRESS_FROM: usize = 8;

async fn recommend(a: RecommendArgs) -> anyhow::Result<i32> {
    use crate::recommend::{self, Manifests, ReportSource};
    let source = match (&a.history.history, &a.history.prometheus.prometheus) {
        (Some(path), _) => ReportSource::File(FileSource::new(FileHistory::load(path)?)),
        (None, Some(_)) => {
            match crate::history::prometheus::PrometheusSource::from_args(&a.history.prometheus)? {
                Some(p) => ReportSource::Prometheus(p),
                None => bail!("recommend needs history: pass --prometheus URL or --history FILE"),
            }
        }
        (None, None) => {
            bail!("recommend needs history: pass --prometheus URL or --history FILE")
        }
    };
    let manifests = match &a.file {
        Some(f) => {
            let text = read_manifests(f)?;
            Some(Manifests {
                name: f.clone(),
                docs: check::parse_documents(f, &text)?,
            })
        }
        None => None,
    };
    let policies = offline_policies(a.policies.as_ref())?;
    let request = recommend::Request {
        source: &source,
        policies: &policies,
        manifests: manifests.as_ref(),
        namespaces: &a.namespaces,
    };
    // indicatif draws nothing when stderr is not a terminal.
    let bar = indicatif::ProgressBar::hidden();
    let mut progress = |done: usize, total: usize| {
        if total >= PROGRESS_FROM && bar.is_hidden() && done == 1 {
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            bar.set_length(total as u64);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{spinner} analysing workloads {bar:30} {pos}/{len} {elapsed}",
            ) {
                bar.set_style(style);
            }
        }
        bar.set_position(done as u64);
    };
    let analysis = recommend::analyse(&request, &mut progress).await?;
    bar.finish_and_clear();
    if let Some(dir) = &a.emit_patches {
        let written = recommend::patches::write(&analysis.report, dir)?;
        eprintln!(
            "wrote {} patch(es) to {} (add them to your kustomization's patches:)",
            written.files.len(),
            dir.display()
        );
        for s in &written.skipped {
            eprintln!("no patch for {s}");
        }
    }
    let stdout = std::io::stdout();
    recommend::write(&analysis, a.output, &mut stdout.lock())?;
    Ok(0)
}

fn certs(a: CertsArgs) -> anyhow::Result<i32> {
    let dns = if a.dns.is_empty() && a.ip.is_empty() {
        let (ns, svc) = (&a.service_namespace, &a.service_name);
        vec![
            format!("{svc}.{ns}.svc"),
            format!("{svc}.{ns}.svc.cluster.local"),
            "localhost".to_string(),
        ]
    } else {
        a.dns.clone()
    };
    let ips = if a.dns.is_empty() && a.ip.is_empty() {
        vec![IpAddr::from([127, 0, 0, 1])]
    } else {
        a.ip.clone()
    };
    let bundle = crate::certs::generate(&dns, &ips)?;
    let client = match &a.url {
        Some(u) => crate::certs::Client::Url(u.clone()),
        None => crate::certs::Client::Service {
            namespace: a.service_namespace.clone(),
            name: a.service_name.clone(),
            port: 443,
        },
    };
    let yaml = crate::certs::webhook_configuration(
        &bundle.ca_cert,
        &client,
        &a.service_namespace,
        a.timeout_seconds,
        a.webhooks,
    );
    let written = crate::certs::write(&a.out, &bundle, &yaml, a.force)?;
    for w in written {
        println!("wrote {w}");
    }
    let sans: Vec<String> = dns
        .iter()
        .cloned()
        .chain(ips.iter().map(|i| i.to_string()))
        .collect();
    println!("serving certificate for: {}", sans.join(", "));
    Ok(0)
}
