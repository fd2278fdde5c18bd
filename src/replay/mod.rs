//! `oomguard replay` (cargo feature `replay`): the product scored in a closed loop on memory
//! traces, against the published recommenders, and leak detection on synthetic traces with
//! known truth.
//!
//! oomguard is not reimplemented here: every decision is `verdict::decide` (what `recommend`,
//! `check` and the webhook call) or `reconcile::plan` (the reconciler), with one policy (the
//! shipped default unless `--policy` names another). See `sim` for the loop, `source` for the
//! history it decides on, `baselines` for the others, docs/replay-results.md for the numbers.
//!
//! ```text
//! oomguard replay data/traces/*.csv --synthetic [--mode both] [--manifest recommended]
//!     [--deploy-every 1d] [--frontier] [--format table|json|html] [--dump-decisions DIR]
//! ```

pub mod baselines;
pub mod crossval;
pub mod frontier;
pub mod score;
pub mod sim;
pub mod source;
pub mod synthetic;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context};
use serde::Serialize;

use crate::forecast;
use crate::history::Sample;
use crate::policy::{MemoryPolicy, Percent, PolicySpec};
use baselines::{Autopilot, Krr, OlsTrend, Recommender, Vpa, OLS_MARGIN};
use frontier::{Comparison, Curve, Point};
use score::{Score, Series};
use sim::{Baseline, DumpSampler, LoopConfig, LoopMode, Manifest, Product, Provisioned};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Html,
}

/// Arguments of `oomguard replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// Trace files (CSV: series,timestamp,usage_bytes,limit_bytes).
    pub files: Vec<PathBuf>,
    /// Output format (html: the tables and one frontier chart per trace set; implies --frontier).
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Also replay a synthetic set with known truth and score leak detection on it.
    #[arg(long)]
    pub synthetic: bool,
    /// Seed of the synthetic set.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Synthetic series per kind (12 kinds).
    #[arg(long, default_value_t = 10)]
    pub synthetic_series: usize,
    /// Length of each synthetic series, days.
    #[arg(long, default_value_t = 14.0)]
    pub synthetic_days: f64,
    /// Score the synthetic set per kind (one trace set each) instead of as one set.
    #[arg(long)]
    pub by_kind: bool,
    /// Which halves of oomguard act: the webhook at deploys (mutate), the reconciler in between
    /// (reconcile), or both.
    #[arg(long, value_enum, default_value = "both")]
    pub mode: LoopMode,
    /// What the manifest says at each deploy: the GitOps recommendation (`recommend
    /// --emit-patches` before the deploy) or the provisioned limit, never edited.
    #[arg(long, value_enum, default_value = "recommended")]
    pub manifest: Manifest,
    /// Time between deploys (new pods from the manifest), e.g. 1d, 12h, 7d.
    #[arg(long, default_value = "1d", value_parser = parse_duration)]
    pub deploy_every: crate::policy::Duration,
    /// History before scoring starts.
    #[arg(long, default_value = "1d", value_parser = parse_duration)]
    pub warmup: crate::policy::Duration,
    /// The forecast's span of recent peaks (the Prometheus source's --history-recent).
    #[arg(long, default_value = "7d", value_parser = parse_duration)]
    pub history_recent: crate::policy::Duration,
    /// The MemoryPolicy file oomguard runs with (default: the built-in default policy, which
    /// policies/default.yaml spells out). Its mode and reconcile.enabled follow --mode.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Sweep every recommender's margin and compare the OOM/slack curves.
    #[arg(long)]
    pub frontier: bool,
    /// Choose the decision's defaults by leave-one-family-out cross-validation and report
    /// each held-out family's result (see `replay::crossval`); the trace files and
    /// `--synthetic` give the families.
    #[arg(long)]
    pub cross_validate: bool,
    /// Margins swept, percent. Past 50% so that every pair of curves shares a slack range
    /// (on Bitbrains, up to 50% Autopilot's and the tutorial's curves end below the least slack
    /// oomguard's reaches, and VPA's starts above its most: nothing to compare).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0,5,10,15,20,25,30,40,50,75,100,150,200,300"
    )]
    pub margins: Vec<f64>,
    /// Write up to 50 of oomguard's decisions per trace set (history, workload, policy, the
    /// recommended limit) for `oomguard check` to replay.
    #[arg(long, value_name = "DIR")]
    pub dump_decisions: Option<PathBuf>,
    /// Replay only these recommenders (by name, comma-separated; default: all).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Also one row per series (for looking into a result).
    #[arg(long)]
    pub per_series: bool,
    /// Worker threads (default: the machine's cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Time `forecast::fit` on this many series of 4,000 samples (one core) and print it.
    #[arg(long)]
    pub bench: bool,
    #[arg(long, default_value_t = 10_000)]
    pub bench_series: usize,
}

fn parse_duration(s: &str) -> Result<crate::policy::Duration, String> {
    crate::policy::Duration::parse(s)
}

impl Default for ReplayArgs {
    fn default() -> Self {
        ReplayArgs {
            files: Vec::new(),
            format: Format::Table,
            synthetic: false,
            seed: 42,
            synthetic_series: 10,
            synthetic_days: 14.0,
            by_kind: false,
            mode: LoopMode::Both,
            manifest: Manifest::Recommended,
            deploy_every: crate::policy::Duration(86_400),
            warmup: crate::policy::Duration(86_400),
            history_recent: crate::policy::Duration(7 * 86_400),
            policy: None,
            frontier: false,
            cross_validate: false,
            margins: vec![
                0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 75.0, 100.0, 150.0, 200.0,
                300.0,
            ],
            dump_decisions: None,
            per_series: false,
            only: Vec::new(),
            threads: None,
            bench: false,
            bench_series: 10_000,
        }
    }
}

/// One row of the results.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub trace: String,
    pub name: String,
    pub series: usize,
    pub series_days: f64,
    pub oom_events: u64,
    pub oom_events_per_series_day: f64,
    pub mean_slack: f64,
    /// Share of series-days without any OOM event (Autopilot's measure).
    pub oom_free_days: f64,
    pub limit_changes_per_series_day: f64,
    pub raises: u64,
    /// Raises with no OOM event since the previous raise.
    pub ratchets: u64,
}

impl Row {
    fn new(trace: &str, name: &str, s: &Score) -> Row {
        Row {
            trace: trace.to_string(),
            name: name.to_string(),
            series: s.series,
            series_days: s.series_days,
            oom_events: s.oom_events,
            oom_events_per_series_day: s.oom_rate(),
            mean_slack: s.mean_slack(),
            oom_free_days: s.oom_free_share(),
            limit_changes_per_series_day: s.per_day(s.limit_changes),
            raises: s.raises,
            ratchets: s.ratchets,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Bench {
    pub series: usize,
    pub samples_per_series: usize,
    pub seconds: f64,
    pub micros_per_fit: f64,
}

/// The frontier of one trace set.
#[derive(Debug, Clone, Serialize)]
pub struct FrontierReport {
    pub trace: String,
    pub curves: Vec<Curve>,
    /// oomguard's curve against each other's.
    pub comparisons: Vec<Comparison>,
    pub summary: Option<String>,
    #[serde(skip)]
    pub provisioned: Option<Point>,
}

#[derive(Debug, Clone, Serialize)]
struct Config {
    mode: LoopMode,
    manifest: Manifest,
    deploy_every: String,
    warmup: String,
    history_recent: String,
    policy: String,
}

/// A series where oomguard has more OOM events and more slack than KRR `simple` (window
/// max × 1.15): (OOM events, mean slack) of each.
#[derive(Debug, Clone, Serialize)]
pub struct LostSeries {
    pub series: String,
    pub oomguard: (u64, f64),
    pub krr_simple: (u64, f64),
}

/// Whether `a` has more OOM events than `b` and more slack too (worse on both counts).
pub fn loses_on_both(a: &Score, b: &Score) -> bool {
    a.oom_events > b.oom_events && a.mean_slack() > b.mean_slack()
}

#[derive(Debug, Clone, Serialize)]
struct Report {
    config: Config,
    results: Vec<Row>,
    /// Per series, oomguard against KRR `simple` (when both were replayed).
    #[serde(skip_serializing_if = "Option::is_none")]
    lost_to_krr: Option<Vec<LostSeries>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    frontier: Vec<FrontierReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detection: Option<synthetic::Detection>,
    /// False alarms on the shapes leak detection was not tuned on (batch, deploy, weekly).
    #[serde(skip_serializing_if = "Option::is_none")]
    detection_shapes: Option<synthetic::Detection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bench: Option<Bench>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dumped: Option<usize>,
    seconds: f64,
}

/// Who is replayed.
#[derive(Clone)]
enum Who {
    /// oomguard with this headroom (None: the policy's).
    Oomguard(Option<f64>),
    Baseline(std::sync::Arc<dyn Recommender>),
    Provisioned,
}

impl Who {
    fn name(&self) -> String {
        match self {
            Who::Oomguard(_) => "oomguard".into(),
            Who::Baseline(r) => r.name(),
            Who::Provisioned => "provisioned".into(),
        }
    }
}

/// The baselines replayed, at their shipped margins.
pub fn baselines() -> Vec<std::sync::Arc<dyn Recommender>> {
    vec![
        std::sync::Arc::new(Vpa { margin: 0.15 }),
        std::sync::Arc::new(Krr {
            margin: 0.15,
            use_oomkill_data: false,
        }),
        std::sync::Arc::new(Krr {
            margin: 0.15,
            use_oomkill_data: true,
        }),
        std::sync::Arc::new(Autopilot { margin: 0.10 }),
        std::sync::Arc::new(Autopilot { margin: 0.15 }),
        std::sync::Arc::new(OlsTrend { margin: OLS_MARGIN }),
    ]
}

/// Everything one replay needs besides the series.
pub struct Setup {
    pub policy: PolicySpec,
    pub cfg: LoopConfig,
    pub threads: usize,
}

impl Setup {
    /// Replays one series with `who`.
    fn one(&self, who: &Who, s: &Series, dump: Option<&mut DumpSampler>) -> anyhow::Result<Score> {
        Ok(match who {
            Who::Oomguard(headroom) => {
                let mut policy = sim::policy_for(&self.policy, self.cfg.mode);
                if let Some(h) = headroom {
                    policy.headroom = Percent(*h);
                }
                let mut p = Product::new(&policy, self.cfg, &s.name)?;
                p.dump = dump;
                sim::replay(s, &mut p, &self.cfg)
            }
            Who::Baseline(r) => {
                let mut b = Baseline {
                    rec: r.as_ref(),
                    manifest: self.cfg.manifest,
                };
                sim::replay(s, &mut b, &self.cfg)
            }
            Who::Provisioned => sim::replay(s, &mut Provisioned, &self.cfg),
        })
    }

    /// Replays every series with every `who`, on the worker threads; one total per `who`.
    fn scores(&self, who: &[Who], series: &[Series]) -> anyhow::Result<Vec<Score>> {
        Ok(self
            .per_series(who, series)?
            .iter()
            .map(|per| {
                let mut t = Score::default();
                for s in per {
                    t.add(s);
                }
                t
            })
            .collect())
    }

    /// Replays every series with every `who`, on the worker threads; per `who`, per series.
    fn per_series(&self, who: &[Who], series: &[Series]) -> anyhow::Result<Vec<Vec<Score>>> {
        let jobs: Vec<(usize, usize)> = (0..who.len())
            .flat_map(|w| (0..series.len()).map(move |s| (w, s)))
            .collect();
        let results = par_map(&jobs, self.threads, |&(w, s)| {
            self.one(&who[w], &series[s], None)
        });
        let mut out = vec![Vec::with_capacity(series.len()); who.len()];
        for (&(w, _), r) in jobs.iter().zip(results) {
            out[w].push(r?);
        }
        Ok(out)
    }
}

/// `f` over `items` on `threads` threads, results in order.
fn par_map<T: Sync, R: Send>(items: &[T], threads: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1).min(items.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else {
                    break;
                };
                let r = f(item);
                if let Ok(mut o) = out.lock() {
                    o[i] = Some(r);
                }
            });
        }
    });
    out.into_inner()
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect()
}

/// The policy oomguard runs with: `--policy FILE`, else the built-in default.
pub fn load_policy(path: Option<&Path>) -> anyhow::Result<PolicySpec> {
    match path {
        None => Ok(PolicySpec::default()),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read policy file {}", p.display()))?;
            Ok(MemoryPolicy::parse(&p.display().to_string(), &text)?.spec)
        }
    }
}

/// Runs `oomguard replay`.
pub fn run(args: &ReplayArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let started = Instant::now();
    if args.files.is_empty() && !args.synthetic && !args.bench {
        bail!("nothing to replay: give trace files, --synthetic or --bench");
    }
    if args.deploy_every.secs() < 300 {
        bail!("--deploy-every must be at least 5m (one interval)");
    }
    if args
        .margins
        .iter()
        .any(|m| !m.is_finite() || *m < 0.0 || *m > 1000.0)
    {
        bail!("--margins are percentages between 0 and 1000");
    }
    let policy = load_policy(args.policy.as_deref())?;
    let secs = |d: crate::policy::Duration| i64::try_from(d.secs()).unwrap_or(i64::MAX);
    let setup = Setup {
        policy,
        cfg: LoopConfig {
            mode: args.mode,
            manifest: args.manifest,
            deploy_every: secs(args.deploy_every),
            warmup: secs(args.warmup),
            recent: secs(args.history_recent),
        },
        threads: args
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
    };
    let mut sets: Vec<(String, Vec<Series>)> = Vec::new();
    for path in &args.files {
        let series = read_csv(path)?;
        let trace = path.file_stem().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        sets.push((trace, series));
    }
    if args.cross_validate {
        let set = if args.synthetic {
            synthetic::synthetic_set(args.seed, args.synthetic_series, args.synthetic_days)
        } else {
            Vec::new()
        };
        let families = crossval::families(&sets, &set);
        let cv = crossval::cross_validate(
            &setup,
            &setup.policy,
            &families,
            &crossval::Grid::standard(),
        )?;
        match args.format {
            Format::Json => {
                serde_json::to_writer_pretty(&mut *out, &cv)?;
                writeln!(out)?;
            }
            _ => crossval::write_table(&cv, out)?,
        }
        return Ok(());
    }
    let mut detection = None;
    let mut detection_shapes = None;
    if args.synthetic {
        let set = synthetic::synthetic_set(args.seed, args.synthetic_series, args.synthetic_days);
        // Leak detection is scored on the kinds its targets were set on; the shapes added
        // since (batch, deploy, weekly) report their false alarms apart.
        let classic = synthetic::Kind::classic();
        let (old, new): (Vec<_>, Vec<_>) =
            set.iter().cloned().partition(|s| classic.contains(&s.kind));
        detection = Some(synthetic::score_detection(&old, 900));
        detection_shapes = (!new.is_empty()).then(|| synthetic::score_detection(&new, 900));
        if args.by_kind {
            for kind in synthetic::Kind::all() {
                sets.push((
                    format!("synthetic-seed{}-{}", args.seed, kind.label()),
                    set.iter()
                        .filter(|s| s.kind == kind)
                        .map(|s| s.series.clone())
                        .collect(),
                ));
            }
        } else {
            sets.push((
                format!("synthetic-seed{}", args.seed),
                set.into_iter().map(|s| s.series).collect(),
            ));
        }
    }

    let mut who: Vec<Who> = vec![Who::Oomguard(None)];
    who.extend(baselines().into_iter().map(Who::Baseline));
    who.push(Who::Provisioned);
    if !args.only.is_empty() {
        who.retain(|w| args.only.contains(&w.name()));
        if who.is_empty() {
            bail!("--only names no recommender; they are oomguard, vpa, krr-simple, krr-simple-oomkill, autopilot-p98+10%, autopilot-p98+15%, tutorial-ols, provisioned");
        }
    }
    let mut results = Vec::new();
    let mut pooled = vec![Score::default(); who.len()];
    let og = who.iter().position(|w| w.name() == "oomguard");
    let krr = who.iter().position(|w| w.name() == "krr-simple");
    let mut lost_to_krr = Vec::new();
    for (trace, series) in &sets {
        let per = setup.per_series(&who, series)?;
        for (i, per) in per.iter().enumerate() {
            let mut t = Score::default();
            for s in per {
                t.add(s);
            }
            pooled[i].add(&t);
            results.push(Row::new(trace, &who[i].name(), &t));
        }
        if let (Some(o), Some(k)) = (og, krr) {
            lost_to_krr.extend(
                series
                    .iter()
                    .zip(per[o].iter().zip(&per[k]))
                    .filter(|(_, (o, k))| loses_on_both(o, k))
                    .map(|(s, (o, k))| LostSeries {
                        series: format!("{trace}/{}", s.name),
                        oomguard: (o.oom_events, o.mean_slack()),
                        krr_simple: (k.oom_events, k.mean_slack()),
                    }),
            );
        }
    }
    if sets.len() > 1 {
        for (i, t) in pooled.iter().enumerate() {
            results.push(Row::new("pooled", &who[i].name(), t));
        }
    }
    if args.per_series {
        for (trace, series) in &sets {
            for s in series {
                let totals = setup.scores(&who, std::slice::from_ref(s))?;
                for (i, t) in totals.iter().enumerate() {
                    results.push(Row::new(&format!("{trace}/{}", s.name), &who[i].name(), t));
                }
            }
        }
    }

    let mut frontiers = Vec::new();
    if args.frontier || args.format == Format::Html {
        frontiers = sweep(&setup, &sets, &args.margins)?;
    }

    let mut dumped = None;
    if let Some(dir) = &args.dump_decisions {
        dumped = Some(dump_decisions(&setup, &sets, dir, args.seed)?);
    }

    let report = Report {
        config: Config {
            mode: args.mode,
            manifest: args.manifest,
            deploy_every: args.deploy_every.to_string(),
            warmup: args.warmup.to_string(),
            history_recent: args.history_recent.to_string(),
            policy: args
                .policy
                .as_ref()
                .map_or("built-in default".into(), |p| p.display().to_string()),
        },
        results,
        lost_to_krr: (og.is_some() && krr.is_some()).then_some(lost_to_krr),
        frontier: frontiers,
        detection,
        detection_shapes,
        bench: args.bench.then(|| bench(args.bench_series, args.seed)),
        dumped,
        seconds: started.elapsed().as_secs_f64(),
    };
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, &report)?;
            writeln!(out)?;
        }
        Format::Table => write_table(&report, out)?,
        Format::Html => write_html(&report, out)?,
    }
    Ok(())
}

/// Builds the recommender of a family at a margin.
type MakeWho = Box<dyn Fn(f64) -> Who>;

/// Every recommender's margin swept on every trace set (and pooled).
fn sweep(
    setup: &Setup,
    sets: &[(String, Vec<Series>)],
    margins: &[f64],
) -> anyhow::Result<Vec<FrontierReport>> {
    let default_headroom = setup.policy.headroom.0;
    let families: Vec<(String, f64, MakeWho)> = vec![
        (
            "oomguard".into(),
            default_headroom,
            Box::new(|m| Who::Oomguard(Some(m))),
        ),
        (
            "vpa".into(),
            0.15,
            Box::new(|m| Who::Baseline(std::sync::Arc::new(Vpa { margin: m }))),
        ),
        (
            "krr-simple".into(),
            0.15,
            Box::new(|m| {
                Who::Baseline(std::sync::Arc::new(Krr {
                    margin: m,
                    use_oomkill_data: false,
                }))
            }),
        ),
        (
            "autopilot".into(),
            0.10,
            Box::new(|m| Who::Baseline(std::sync::Arc::new(Autopilot { margin: m }))),
        ),
        (
            "tutorial-ols".into(),
            OLS_MARGIN,
            Box::new(|m| Who::Baseline(std::sync::Arc::new(OlsTrend { margin: m }))),
        ),
    ];
    // Each family's margins: the swept ones and its own default.
    let mut who = Vec::new();
    let mut index: Vec<(usize, f64)> = Vec::new();
    for (f, (_, default, make)) in families.iter().enumerate() {
        let mut ms: Vec<f64> = margins.iter().map(|m| m / 100.0).collect();
        if !ms.iter().any(|m| (m - default).abs() < 1e-9) {
            ms.push(*default);
        }
        ms.sort_by(f64::total_cmp);
        for m in ms {
            who.push(make(m));
            index.push((f, m));
        }
    }
    who.push(Who::Provisioned);
    let mut per_set: Vec<(String, Vec<Score>)> = Vec::new();
    for (trace, series) in sets {
        per_set.push((trace.clone(), setup.scores(&who, series)?));
    }
    if sets.len() > 1 {
        let mut pooled = vec![Score::default(); who.len()];
        for (_, scores) in &per_set {
            for (p, s) in pooled.iter_mut().zip(scores) {
                p.add(s);
            }
        }
        per_set.push(("pooled".into(), pooled));
    }
    let mut out = Vec::new();
    for (trace, scores) in per_set {
        let mut curves: Vec<Curve> = families
            .iter()
            .map(|(name, default, _)| Curve {
                name: name.clone(),
                points: Vec::new(),
                default_margin: *default,
            })
            .collect();
        for (&(f, m), s) in index.iter().zip(&scores) {
            curves[f].points.push(Point {
                margin: m,
                slack: s.mean_slack(),
                oom_rate: s.oom_rate(),
            });
        }
        let provisioned = scores.last().map(|s| Point {
            margin: 0.0,
            slack: s.mean_slack(),
            oom_rate: s.oom_rate(),
        });
        let comparisons = curves[1..]
            .iter()
            .map(|c| frontier::compare(&curves[0], c))
            .collect();
        let summary = frontier::summary_line(&curves[0], &curves[1]);
        out.push(FrontierReport {
            trace,
            curves,
            comparisons,
            summary,
            provisioned,
        });
    }
    Ok(out)
}

/// Replays oomguard (one thread, so that the choice is deterministic) and writes the sampled
/// decisions: `DIR/<n>/{history.json, workload.yaml, policies/default.yaml, decision.json}`.
fn dump_decisions(
    setup: &Setup,
    sets: &[(String, Vec<Series>)],
    dir: &Path,
    seed: u64,
) -> anyhow::Result<usize> {
    let policy = sim::policy_for(&setup.policy, setup.cfg.mode);
    let policy_file = serde_norway::to_string(&MemoryPolicy {
        api_version: crate::policy::API_VERSION.into(),
        kind: crate::policy::KIND.into(),
        metadata: Default::default(),
        spec: policy.clone(),
    })?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut n = 0;
    for (trace, series) in sets {
        let mut sampler = DumpSampler::new(seed, 25);
        for s in series {
            let mut p = Product::new(&policy, setup.cfg, &s.name)?;
            p.dump = Some(&mut sampler);
            sim::replay(s, &mut p, &setup.cfg);
        }
        for d in sampler.into_points() {
            n += 1;
            let d_dir = dir.join(n.to_string());
            std::fs::create_dir_all(d_dir.join("policies"))?;
            std::fs::write(
                d_dir.join("history.json"),
                serde_json::to_string(&d.history)?,
            )?;
            std::fs::write(
                d_dir.join("workload.yaml"),
                serde_norway::to_string(&sim::deployment(&d.key.name, d.limit))?,
            )?;
            std::fs::write(d_dir.join("policies").join("default.yaml"), &policy_file)?;
            let decision = serde_json::json!({
                "series": d.series,
                "trace": trace,
                "time": d.time,
                "decision": d.decision,
                "limit": d.limit,
                "recommended": d.recommended,
            });
            std::fs::write(
                d_dir.join("decision.json"),
                serde_json::to_string_pretty(&decision)?,
            )?;
        }
    }
    Ok(n)
}

fn write_table(report: &Report, out: &mut dyn Write) -> anyhow::Result<()> {
    let c = &report.config;
    writeln!(
        out,
        "closed loop: mode {}, manifest {}, deploy every {}, warm-up {}, forecast span {}, policy {}",
        c.mode.as_str(),
        match c.manifest {
            Manifest::Recommended => "recommended (GitOps)",
            Manifest::Provisioned => "provisioned",
        },
        c.deploy_every,
        c.warmup,
        c.history_recent,
        c.policy
    )?;
    let mut trace = "";
    for r in &report.results {
        if r.trace != trace {
            trace = &r.trace;
            writeln!(out, "\n{trace}")?;
            writeln!(
                out,
                "  {:<20} {:>6} {:>8} {:>7} {:>9} {:>7} {:>9} {:>9} {:>8}",
                "recommender",
                "series",
                "days",
                "OOMs",
                "OOMs/day",
                "slack",
                "OOM-free",
                "changes/d",
                "ratchets"
            )?;
        }
        writeln!(
            out,
            "  {:<20} {:>6} {:>8.1} {:>7} {:>9.4} {:>6.1}% {:>8.1}% {:>9.2} {:>8}",
            r.name,
            r.series,
            r.series_days,
            r.oom_events,
            r.oom_events_per_series_day,
            r.mean_slack * 100.0,
            r.oom_free_days * 100.0,
            r.limit_changes_per_series_day,
            r.ratchets
        )?;
    }
    if let Some(lost) = &report.lost_to_krr {
        writeln!(
            out,
            "\nseries where oomguard has more OOMs and more slack than krr-simple (max x 1.15): {}",
            if lost.is_empty() { "none" } else { "" }
        )?;
        for l in lost {
            writeln!(
                out,
                "  {}: oomguard {} OOMs at {:.1}%, krr-simple {} at {:.1}%",
                l.series,
                l.oomguard.0,
                l.oomguard.1 * 100.0,
                l.krr_simple.0,
                l.krr_simple.1 * 100.0
            )?;
        }
    }
    for f in &report.frontier {
        writeln!(
            out,
            "\nfrontier {} (OOMs/series-day at mean slack, margins swept)",
            f.trace
        )?;
        for c in &f.curves {
            let pts: Vec<String> = c
                .points
                .iter()
                .map(|p| {
                    format!(
                        "{:.0}%:{:.4}@{:.1}%",
                        p.margin * 100.0,
                        p.oom_rate,
                        p.slack * 100.0
                    )
                })
                .collect();
            writeln!(out, "  {:<13} {}", c.name, pts.join(" "))?;
        }
        for cmp in &f.comparisons {
            writeln!(
                out,
                "  oomguard vs {:<13} {} (overlap {}, worst excess {:.4})",
                cmp.other,
                if cmp.below { "below" } else { "NOT below" },
                cmp.overlap.map_or("none".into(), |(a, b)| format!(
                    "{:.1}-{:.1}%",
                    a * 100.0,
                    b * 100.0
                )),
                cmp.worst_excess
            )?;
        }
        if let Some(s) = &f.summary {
            writeln!(out, "  {s}")?;
        }
    }
    if let Some(d) = &report.detection {
        writeln!(out, "\nleak detection (synthetic, alarms = leak with time-to-limit within 24 h, checked every 15 min)")?;
        writeln!(
            out,
            "  leak OOMs detected >= 1 h ahead: {}/{} ({:.1}%), median lead {:.1} h",
            d.detected_1h,
            d.leak_ooms,
            pct(d.detected_1h, d.leak_ooms),
            d.median_lead_hours
        )?;
        writeln!(
            out,
            "  time-to-OOM within +-25%: {}/{} predictions ({:.1}%), median |error| {:.1}%",
            d.ttl_within_25pct,
            d.ttl_predictions,
            pct(d.ttl_within_25pct, d.ttl_predictions),
            d.ttl_median_abs_error * 100.0
        )?;
        writeln!(
            out,
            "  false alarms after the first day: {}/{} non-leak series ({:.1}%), {}/{} checks ({:.2}%); series with an alarm in their first day: {}",
            d.false_alarm_series,
            d.non_leak_series,
            pct(d.false_alarm_series, d.non_leak_series),
            d.false_alarm_checks,
            d.non_leak_checks,
            pct(d.false_alarm_checks, d.non_leak_checks),
            d.early_alarm_series
        )?;
        let classes: Vec<String> = d
            .classified
            .iter()
            .map(|(k, ok, n)| format!("{k} {ok}/{n}"))
            .collect();
        writeln!(
            out,
            "  pattern named right at the end: {}",
            classes.join(", ")
        )?;
    }
    if let Some(d) = &report.detection_shapes {
        let classes: Vec<String> = d
            .classified
            .iter()
            .map(|(k, ok, n)| format!("{k} {ok}/{n}"))
            .collect();
        writeln!(
            out,
            "  batch, deploy and weekly shapes: false alarms after the first day on {}/{} series ({}/{} checks); pattern named right: {}",
            d.false_alarm_series,
            d.non_leak_series,
            d.false_alarm_checks,
            d.non_leak_checks,
            classes.join(", ")
        )?;
    }
    if let Some(b) = &report.bench {
        writeln!(
            out,
            "\nforecast cost: fit of {} series x {} samples in {:.3} s on one core ({:.1} us per fit)",
            b.series, b.samples_per_series, b.seconds, b.micros_per_fit
        )?;
    }
    if let Some(n) = report.dumped {
        writeln!(out, "\n{n} decisions dumped")?;
    }
    writeln!(out, "\n({:.1} s)", report.seconds)?;
    Ok(())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn write_html(report: &Report, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>oomguard replay</title>\n<style>body{font-family:sans-serif;max-width:960px;margin:2em auto}table{border-collapse:collapse}td,th{padding:2px 8px;text-align:right}td:first-child,th:first-child{text-align:left}tr.oomguard{font-weight:bold}</style></head><body>\n");
    let c = &report.config;
    h.push_str(&format!(
        "<h1>oomguard replay</h1><p>Closed loop: mode {}, manifest {:?}, deploy every {}, warm-up {}, forecast span {}, policy {}.</p>\n",
        c.mode.as_str(),
        c.manifest,
        esc(&c.deploy_every),
        esc(&c.warmup),
        esc(&c.history_recent),
        esc(&c.policy)
    ));
    let mut traces: Vec<&str> = Vec::new();
    for r in &report.results {
        if !traces.contains(&r.trace.as_str()) {
            traces.push(&r.trace);
        }
    }
    for trace in traces {
        h.push_str(&format!("<section id=\"{}\"><h2>{}</h2>\n<table><tr><th>recommender</th><th>series</th><th>series-days</th><th>OOMs</th><th>OOMs/series-day</th><th>mean slack</th><th>OOM-free days</th><th>changes/series-day</th><th>ratchets</th></tr>\n", esc(trace), esc(trace)));
        for r in report.results.iter().filter(|r| r.trace == trace) {
            h.push_str(&format!(
                "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{:.4}</td><td>{:.1}%</td><td>{:.1}%</td><td>{:.2}</td><td>{}</td></tr>\n",
                esc(&r.name),
                esc(&r.name),
                r.series,
                r.series_days,
                r.oom_events,
                r.oom_events_per_series_day,
                r.mean_slack * 100.0,
                r.oom_free_days * 100.0,
                r.limit_changes_per_series_day,
                r.ratchets
            ));
        }
        h.push_str("</table>\n");
        if let Some(f) = report.frontier.iter().find(|f| f.trace == trace) {
            let points: Vec<(String, Point)> = f
                .provisioned
                .map(|p| vec![("provisioned".to_string(), p)])
                .unwrap_or_default();
            let svg = frontier::svg(
                &format!("{trace}: OOM events per series-day vs mean slack"),
                &f.curves,
                &points,
            )
            .map_err(|e| anyhow::anyhow!("frontier chart: {e}"))?;
            h.push_str(&format!(
                "<figure class=\"frontier\">{svg}</figure>\n<ul>\n"
            ));
            for cmp in &f.comparisons {
                h.push_str(&format!(
                    "<li>oomguard vs {}: {}</li>\n",
                    esc(&cmp.other),
                    if cmp.below { "below" } else { "not below" }
                ));
            }
            if let Some(s) = &f.summary {
                h.push_str(&format!("<li><strong>{}</strong></li>\n", esc(s)));
            }
            h.push_str("</ul>\n");
        }
        h.push_str("</section>\n");
    }
    h.push_str("</body></html>\n");
    out.write_all(h.as_bytes())?;
    Ok(())
}

fn pct(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        100.0 * a as f64 / b as f64
    }
}

/// Median, reordering `values`; 0 when empty.
pub(crate) fn median(values: &mut [f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Times `forecast::fit` over `n` fits of 4,000-sample series (a pool of 100 synthetic series of
/// every kind, fitted in turn, so that the data does not sit in cache).
pub fn bench(n: usize, seed: u64) -> Bench {
    const SAMPLES: usize = 4000;
    let days = SAMPLES as f64 * 300.0 / 86_400.0;
    let pool: Vec<(Vec<Sample>, Vec<i64>)> = synthetic::synthetic_set(seed, 12, days)
        .into_iter()
        .take(100)
        .map(|s| (s.series.samples, s.ooms))
        .collect();
    let start = Instant::now();
    let mut checksum = 0.0;
    for i in 0..n {
        let (samples, restarts) = &pool[i % pool.len()];
        checksum += forecast::fit(samples, restarts).slope;
    }
    let seconds = start.elapsed().as_secs_f64();
    std::hint::black_box(checksum);
    Bench {
        series: n,
        samples_per_series: SAMPLES,
        seconds,
        micros_per_fit: if n > 0 { seconds * 1e6 / n as f64 } else { 0.0 },
    }
}

/// Reads a trace CSV (`series,timestamp,usage_bytes,limit_bytes`) into series, in file order.
pub fn read_csv(path: &Path) -> anyhow::Result<Vec<Series>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read trace file {}", path.display()))?;
    parse_csv(&text).with_context(|| format!("trace file {}", path.display()))
}

/// Parses the trace CSV format; errors name the line.
pub fn parse_csv(text: &str) -> anyhow::Result<Vec<Series>> {
    let mut lines = text.lines().enumerate();
    let header = lines.next().map(|(_, h)| h.trim()).unwrap_or_default();
    if header != "series,timestamp,usage_bytes,limit_bytes" {
        bail!("line 1: expected the header `series,timestamp,usage_bytes,limit_bytes`, found `{header}`");
    }
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut out: Vec<Series> = Vec::new();
    for (i, line) in lines {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        let [name, t, usage, limit] = fields[..] else {
            bail!(
                "line {line_no}: expected 4 comma-separated fields, found {}",
                fields.len()
            );
        };
        let t: i64 = t
            .trim()
            .parse()
            .with_context(|| format!("line {line_no}: timestamp `{t}` is not whole seconds"))?;
        let num = |v: &str, what: &str| -> anyhow::Result<f64> {
            let x: f64 = v
                .trim()
                .parse()
                .with_context(|| format!("line {line_no}: {what} `{v}` is not a number"))?;
            if !x.is_finite() || x < 0.0 {
                bail!(
                    "line {line_no}: {what} `{v}` must be a finite, non-negative number of bytes"
                );
            }
            Ok(x)
        };
        let usage = num(usage, "usage_bytes")?;
        let limit = num(limit, "limit_bytes")?;
        let idx = *index.entry(name.to_string()).or_insert_with(|| {
            out.push(Series {
                name: name.to_string(),
                samples: Vec::new(),
                limits: Vec::new(),
            });
            out.len() - 1
        });
        out[idx].samples.push(Sample { t, bytes: usage });
        out[idx].limits.push(limit);
    }
    for s in &mut out {
        if !s.samples.windows(2).all(|w| w[0].t <= w[1].t) {
            let mut pairs: Vec<(Sample, f64)> = s
                .samples
                .iter()
                .copied()
                .zip(s.limits.iter().copied())
                .collect();
            pairs.sort_by_key(|p| p.0.t);
            (s.samples, s.limits) = pairs.into_iter().unzip();
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::prometheus::PrometheusArgs;
    use clap::Parser;

    #[derive(Parser)]
    struct Replay {
        #[command(flatten)]
        args: ReplayArgs,
    }

    #[derive(Parser)]
    struct Prometheus {
        #[command(flatten)]
        args: PrometheusArgs,
    }

    /// The replay forecasts from the same recent span as production: the Prometheus source's
    /// `--history-recent` default (flag and `Default`).
    #[test]
    fn the_forecast_span_is_the_prometheus_sources() {
        let prom = Prometheus::parse_from(["x"]).args.history_recent.as_secs();
        assert_eq!(PrometheusArgs::default().history_recent.as_secs(), prom);
        assert_eq!(Replay::parse_from(["x"]).args.history_recent.secs(), prom);
        assert_eq!(ReplayArgs::default().history_recent.secs(), prom);
    }
}
