//! `oomguard replay`: a recommender benchmark on memory traces.
//!
//! Replays traces in the CSV format `series,timestamp,usage_bytes,limit_bytes` (see
//! `score` for the rules) with oomguard's rule and the published baselines (`baselines`), and
//! scores leak detection on synthetic traces with known truth (`synthetic`).
//!
//! ```text
//! oomguard replay data/traces/*.csv --synthetic --seed 42 [--format json] [--bench]
//! ```

pub mod baselines;
pub mod score;
pub mod synthetic;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use serde::Serialize;

use crate::forecast;
use crate::history::Sample;
use baselines::{Autopilot, KrrSimple, OlsTrend, Oomguard, OomguardParams, Recommender, Vpa};
use score::{replay_provisioned, replay_series, ReplayConfig, Score, Series};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// Arguments of `oomguard replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// Trace files (CSV: series,timestamp,usage_bytes,limit_bytes).
    pub files: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Also replay a synthetic set with known truth and score leak detection on it.
    #[arg(long)]
    pub synthetic: bool,
    /// Seed of the synthetic set.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Synthetic series per kind (9 kinds).
    #[arg(long, default_value_t = 10)]
    pub synthetic_series: usize,
    /// Length of each synthetic series, days.
    #[arg(long, default_value_t = 14.0)]
    pub synthetic_days: f64,
    /// History before the first decision, hours.
    #[arg(long, default_value_t = 24)]
    pub warmup_hours: i64,
    /// Time between decisions, minutes (a decision is also taken after each OOM).
    #[arg(long, default_value_t = 60)]
    pub interval_minutes: i64,
    /// oomguard: quantile of the peaks (1 = max).
    #[arg(long, default_value_t = 1.0)]
    pub quantile: f64,
    /// oomguard: headroom over the statistic (0.15 = 15%).
    #[arg(long, default_value_t = 0.10)]
    pub headroom: f64,
    /// oomguard: size every series from the max, also those the forecast calls steady (which
    /// are otherwise sized from the p98, Autopilot's rule for steady jobs, floored at the max
    /// plus the noise band).
    #[arg(long)]
    pub no_steady_p98: bool,
    /// oomguard: forecast horizon the limit must cover, hours.
    #[arg(long, default_value_t = 6)]
    pub horizon_hours: u64,
    /// Time `forecast::fit` on this many series of 4,000 samples (one core) and print it.
    #[arg(long)]
    pub bench: bool,
    #[arg(long, default_value_t = 10_000)]
    pub bench_series: usize,
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
            warmup_hours: 24,
            interval_minutes: 60,
            quantile: 1.0,
            headroom: 0.10,
            no_steady_p98: false,
            horizon_hours: 6,
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
    pub limit_changes_per_series_day: f64,
    /// Share of series-days without any OOM event (Autopilot's measure).
    pub oom_free_days: f64,
    /// Series left out (the provisioned limit is unknown somewhere in them).
    pub skipped_series: usize,
}

impl Row {
    fn new(trace: &str, name: &str, s: &Score, skipped: usize) -> Row {
        Row {
            trace: trace.to_string(),
            name: name.to_string(),
            series: s.series,
            series_days: s.series_days,
            oom_events: s.oom_events,
            oom_events_per_series_day: s.per_day(s.oom_events),
            mean_slack: s.mean_slack(),
            limit_changes_per_series_day: s.per_day(s.limit_changes),
            oom_free_days: if s.days > 0 {
                s.oom_free_days as f64 / s.days as f64
            } else {
                0.0
            },
            skipped_series: skipped,
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

#[derive(Debug, Clone, Serialize)]
struct Report {
    results: Vec<Row>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detection: Option<synthetic::Detection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bench: Option<Bench>,
}

/// The recommenders replayed, oomguard first.
pub fn recommenders(params: OomguardParams) -> Vec<Box<dyn Recommender>> {
    vec![
        Box::new(Oomguard { params }),
        Box::new(Vpa),
        Box::new(KrrSimple),
        Box::new(Autopilot::new(0.10)),
        Box::new(Autopilot::new(0.15)),
        Box::new(OlsTrend),
    ]
}

/// Replays `series` with every recommender and the provisioned limits; one row each.
pub fn replay_all(
    trace: &str,
    series: &[Series],
    params: &OomguardParams,
    cfg: &ReplayConfig,
) -> Vec<Row> {
    let mut rows = Vec::new();
    for rec in recommenders(params.clone()) {
        let mut total = Score::default();
        for s in series {
            total.add(&replay_series(s, rec.as_ref(), cfg));
        }
        rows.push(Row::new(trace, rec.name(), &total, 0));
    }
    let mut total = Score::default();
    let mut skipped = 0;
    for s in series {
        match replay_provisioned(s, cfg) {
            Some(score) => total.add(&score),
            None => skipped += 1,
        }
    }
    rows.push(Row::new(trace, "provisioned", &total, skipped));
    rows
}

/// Runs `oomguard replay`.
pub fn run(args: &ReplayArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    if args.files.is_empty() && !args.synthetic && !args.bench {
        bail!("nothing to replay: give trace files, --synthetic or --bench");
    }
    if args.interval_minutes <= 0 || args.warmup_hours < 0 {
        bail!("--interval-minutes must be positive and --warmup-hours not negative");
    }
    let cfg = ReplayConfig {
        warmup_secs: args.warmup_hours * 3600,
        interval_secs: args.interval_minutes * 60,
    };
    let params = OomguardParams {
        quantile: args.quantile,
        headroom: args.headroom,
        horizon_secs: args.horizon_hours * 3600,
        steady_p98: !args.no_steady_p98,
        ..OomguardParams::default()
    };
    let mut report = Report {
        results: Vec::new(),
        detection: None,
        bench: None,
    };
    for path in &args.files {
        let series = read_csv(path)?;
        let trace = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        report
            .results
            .extend(replay_all(&trace, &series, &params, &cfg));
    }
    if args.synthetic {
        let set = synthetic::synthetic_set(args.seed, args.synthetic_series, args.synthetic_days);
        let series: Vec<Series> = set.iter().map(|s| s.series.clone()).collect();
        report.results.extend(replay_all(
            &format!("synthetic (seed {})", args.seed),
            &series,
            &params,
            &cfg,
        ));
        report.detection = Some(synthetic::score_detection(&set, 900));
    }
    if args.bench {
        report.bench = Some(bench(args.bench_series, args.seed));
    }
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, &report)?;
            writeln!(out)?;
        }
        Format::Table => write_table(&report, out)?,
    }
    Ok(())
}

fn write_table(report: &Report, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut trace = "";
    for r in &report.results {
        if r.trace != trace {
            trace = &r.trace;
            writeln!(out, "\n{trace}")?;
            writeln!(
                out,
                "  {:<20} {:>6} {:>8} {:>6} {:>10} {:>7} {:>9} {:>10}",
                "recommender",
                "series",
                "days",
                "OOMs",
                "OOMs/day",
                "slack",
                "OOM-free",
                "changes/d"
            )?;
        }
        let skipped = if r.skipped_series > 0 {
            format!("  ({} series without a limit skipped)", r.skipped_series)
        } else {
            String::new()
        };
        writeln!(
            out,
            "  {:<20} {:>6} {:>8.1} {:>6} {:>10.4} {:>6.1}% {:>8.1}% {:>10.2}{skipped}",
            r.name,
            r.series,
            r.series_days,
            r.oom_events,
            r.oom_events_per_series_day,
            r.mean_slack * 100.0,
            r.oom_free_days * 100.0,
            r.limit_changes_per_series_day
        )?;
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
    if let Some(b) = &report.bench {
        writeln!(
            out,
            "\nforecast cost: fit of {} series x {} samples in {:.3} s on one core ({:.1} us per fit)",
            b.series, b.samples_per_series, b.seconds, b.micros_per_fit
        )?;
    }
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
