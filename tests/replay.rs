//! The replay end to end (cargo feature `replay`): the closed loop's scoring on hand-computed
//! examples, oomguard itself in the loop, a slice of a real trace, and the decisions dumped by
//! `oomguard replay --dump-decisions` replayed through the real `oomguard check` binary.

use std::path::Path;
use std::process::Command;

use oomguard::history::Sample;
use oomguard::policy::PolicySpec;
use oomguard::replay::baselines::{Actuation, MIB};
use oomguard::replay::score::Series;
use oomguard::replay::sim::{self, Controller, Ctx, LoopConfig, LoopMode, Manifest, Product};
use oomguard::replay::{parse_csv, run, Format, ReplayArgs};

fn series(mib: &[f64], limit_mib: f64) -> Series {
    Series {
        name: "s".into(),
        samples: mib
            .iter()
            .enumerate()
            .map(|(i, &m)| Sample {
                t: 1_700_000_000 + i as i64 * 300,
                bytes: m * MIB,
            })
            .collect(),
        limits: vec![limit_mib * MIB; mib.len()],
    }
}

/// Sets `deploy` MiB at each deploy and, at runtime, twice the last limit after an OOM.
struct Doubler {
    deploy: f64,
}

impl Controller for Doubler {
    fn deploy(&mut self, _ctx: &mut Ctx<'_>) -> f64 {
        self.deploy * MIB
    }
    fn runtime(&mut self, ctx: &mut Ctx<'_>) -> Option<Actuation> {
        let last = ctx.obs.ooms.last()?;
        (last.t == ctx.now).then(|| Actuation {
            limit: last.limit.unwrap_or(0.0) * 2.0,
            restarts: false,
        })
    }
}

fn cfg(mode: LoopMode) -> LoopConfig {
    LoopConfig {
        mode,
        manifest: Manifest::Recommended,
        deploy_every: 600,
        warmup: 300,
        recent: 2 * 86_400,
    }
}

#[test]
fn the_loop_scores_censors_and_counts_changes_and_ratchets() {
    // Provisioned 120 MiB; deploys every 600 s set 100 MiB; after an OOM the runtime doubles
    // the limit it hit. Decisions at the end of an interval apply from the next one.
    // t0: 50 (warm-up, not scored); t1: 100 under 120 (slack 20/120); t2: 150 over 120, an
    // OOM; the deploy due at t2 sets 100, then the runtime doubles 120 → 240; t3: 260 over 240,
    // an OOM → 480; t4: 50 under 480 (slack 430/480), then the deploy sets 100 again.
    let s = series(&[50.0, 100.0, 150.0, 260.0, 50.0], 120.0);
    let mut c = Doubler { deploy: 100.0 };
    let score = sim::replay(&s, &mut c, &cfg(LoopMode::Reconcile));
    assert_eq!(score.oom_events, 2);
    assert_eq!(score.scored_samples, 4);
    let slack = (20.0 / 120.0 + 0.0 + 0.0 + 430.0 / 480.0) / 4.0;
    assert!(
        (score.mean_slack() - slack).abs() < 1e-12,
        "{}",
        score.mean_slack()
    );
    assert_eq!(score.limit_changes, 4);
    assert_eq!(score.raises, 2);
    assert_eq!(score.ratchets, 0, "each raise answered an OOM");
    // Without the runtime half the OOM at t2 is answered only by the deploys.
    let score = sim::replay(&s, &mut Doubler { deploy: 100.0 }, &cfg(LoopMode::Mutate));
    assert_eq!(score.oom_events, 2, "t2 over 120, t3 over 100");
    assert_eq!(score.raises, 0);
}

#[test]
fn provisioned_limits_are_scored_as_given() {
    let s = series(&[60.0, 60.0, 130.0], 120.0);
    let score = sim::replay(&s, &mut sim::Provisioned, &cfg(LoopMode::Both));
    assert_eq!(score.oom_events, 1);
    assert!((score.mean_slack() - 0.25).abs() < 1e-12);
    assert_eq!(score.limit_changes, 0);
}

#[test]
fn oomguard_in_the_loop_answers_a_step_up_and_does_not_ratchet_on_a_flat_series() {
    // Two days flat at 200 MiB (provisioned 1 GiB), then a step to 420 MiB for a day.
    let mut mib = vec![200.0; 576];
    mib.extend(std::iter::repeat_n(420.0, 288));
    let s = series(&mib, 1024.0);
    let policy = sim::policy_for(&PolicySpec::default(), LoopMode::Both);
    let cfg = LoopConfig {
        mode: LoopMode::Both,
        manifest: Manifest::Recommended,
        deploy_every: 86_400,
        warmup: 86_400,
        recent: 2 * 86_400,
    };
    let mut p = Product::new(&policy, cfg, &s.name).expect("product");
    let score = sim::replay(&s, &mut p, &cfg);
    // The deploy after a day lowers 1 GiB to about 200 MiB + headroom; the step then OOMs at
    // that limit until the reconciler's raises (one per cooldown) carry it.
    assert!(score.oom_events >= 1 && score.oom_events <= 4, "{score:?}");
    assert!(score.raises >= 1, "{score:?}");
    assert_eq!(score.ratchets, 0, "{score:?}");
    // Only the mutate half: the OOMs go on until the next deploy raises the limit.
    let m = LoopConfig {
        mode: LoopMode::Mutate,
        ..cfg
    };
    let policy = sim::policy_for(&PolicySpec::default(), LoopMode::Mutate);
    let mut p = Product::new(&policy, m, &s.name).expect("product");
    let mutate_only = sim::replay(&s, &mut p, &m);
    assert!(
        mutate_only.oom_events > score.oom_events,
        "{mutate_only:?} vs {score:?}"
    );
}

#[test]
fn csv_errors_name_the_line() {
    let err =
        parse_csv("series,timestamp,usage_bytes,limit_bytes\na,1,2,3\na,x,2,3\n").unwrap_err();
    assert!(format!("{err:#}").contains("line 3"), "{err:#}");
    let err = parse_csv("a,b\n").unwrap_err();
    assert!(format!("{err:#}").contains("line 1"), "{err:#}");
    let err = parse_csv("series,timestamp,usage_bytes,limit_bytes\na,1,2\n").unwrap_err();
    assert!(format!("{err:#}").contains("line 2: expected 4"), "{err:#}");
    let ok = parse_csv("series,timestamp,usage_bytes,limit_bytes\nb,600,5,9\na,0,1,2\nb,300,4,9\n")
        .unwrap();
    assert_eq!(ok.len(), 2);
    assert_eq!(
        ok[0].samples.iter().map(|s| s.t).collect::<Vec<_>>(),
        vec![300, 600]
    );
    assert_eq!(ok[0].limits, vec![9.0, 9.0]);
}

const GOOGLE: &str = "/work/shared/data/traces/google-2019-job382.csv";

/// The first `lines` samples of the Google trace (two series of about 2 days), if present.
fn google_slice(dir: &Path, lines: usize) -> Option<std::path::PathBuf> {
    let text = std::fs::read_to_string(GOOGLE).ok()?;
    let slice: Vec<&str> = text
        .lines()
        .take(1)
        .chain(text.lines().skip(1).take(lines))
        .collect();
    let file = dir.join("google-slice.csv");
    std::fs::write(&file, slice.join("\n")).expect("write slice");
    Some(file)
}

#[test]
fn run_replays_a_slice_of_a_real_trace_as_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(file) = google_slice(dir.path(), 1200) else {
        eprintln!("{GOOGLE} not present, skipping");
        return;
    };
    let args = ReplayArgs {
        files: vec![file],
        format: Format::Json,
        ..ReplayArgs::default()
    };
    let mut out = Vec::new();
    run(&args, &mut out).expect("replay runs");
    let json: serde_json::Value = serde_json::from_slice(&out).expect("json output");
    let rows = json["results"].as_array().expect("results");
    let names: Vec<&str> = rows.iter().filter_map(|r| r["name"].as_str()).collect();
    for want in [
        "oomguard",
        "vpa",
        "krr-simple",
        "krr-simple-oomkill",
        "autopilot-p98+10%",
        "tutorial-ols",
        "provisioned",
    ] {
        assert!(names.contains(&want), "{names:?}");
    }
    for r in rows {
        for key in [
            "series",
            "series_days",
            "oom_events",
            "mean_slack",
            "oom_free_days",
            "limit_changes_per_series_day",
            "ratchets",
        ] {
            assert!(!r[key].is_null(), "{key} missing in {r}");
        }
        let slack = r["mean_slack"].as_f64().expect("slack");
        assert!((0.0..=1.0).contains(&slack));
        assert_eq!(r["series"], 2, "{r}");
    }
    assert_eq!(json["config"]["mode"], "both");
    // Per series, oomguard never has more OOMs and more slack than KRR `simple` (max × 1.15).
    assert_eq!(
        json["lost_to_krr"],
        serde_json::json!([]),
        "{}",
        json["lost_to_krr"]
    );
}

#[test]
fn run_rejects_missing_files_with_their_name() {
    let args = ReplayArgs {
        files: vec!["/nonexistent/trace.csv".into()],
        ..ReplayArgs::default()
    };
    let err = run(&args, &mut Vec::new()).unwrap_err();
    assert!(format!("{err:#}").contains("/nonexistent/trace.csv"));
}

/// Every dumped decision, given to the real `oomguard check` with its history, workload and
/// policy, gives the recommended limit the replay decided, byte for byte.
#[test]
fn dumped_decisions_are_what_oomguard_check_decides() {
    let bin = env!("CARGO_BIN_EXE_oomguard");
    let dir = tempfile::tempdir().expect("tempdir");
    let dump = dir.path().join("dump");
    let mut cmd = Command::new(bin);
    cmd.args([
        "replay",
        "--synthetic",
        "--synthetic-series",
        "1",
        "--synthetic-days",
        "5",
        "--only",
        "oomguard",
        "--dump-decisions",
    ])
    .arg(&dump);
    if let Some(file) = google_slice(dir.path(), 1200) {
        cmd.arg(file);
    }
    let out = cmd.output().expect("oomguard replay runs");
    assert!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut dirs: Vec<_> = std::fs::read_dir(&dump)
        .expect("dump dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 20, "only {} decisions dumped", dirs.len());
    let mut per_trace: std::collections::HashMap<String, usize> = Default::default();
    let (mut changed, mut kinds) = (0, std::collections::BTreeSet::new());
    for d in &dirs {
        let decision: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(d.join("decision.json")).expect("decision"),
        )
        .expect("decision.json");
        *per_trace
            .entry(decision["trace"].as_str().unwrap_or("").to_string())
            .or_default() += 1;
        kinds.insert(decision["decision"].as_str().unwrap_or("").to_string());
        let want = decision["recommended"].as_u64().expect("recommended bytes");
        if want != decision["limit"].as_u64().expect("limit") {
            changed += 1;
        }
        let out = Command::new(bin)
            .current_dir(d)
            .args([
                "check",
                "-f",
                "workload.yaml",
                "--history",
                "history.json",
                "--policies",
                "policies",
                "-o",
                "json",
            ])
            .output()
            .expect("oomguard check runs");
        assert!(
            out.status.success(),
            "{}: check failed: {}",
            d.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("check json");
        let got = report["results"][0]["verdict"]["containers"][0]["recommended"].as_u64();
        assert_eq!(
            got,
            Some(want),
            "{}: check recommends {got:?}, the replay decided {want} ({decision})",
            d.display()
        );
    }
    assert!(per_trace.values().all(|&n| n <= 50), "{per_trace:?}");
    assert!(changed > 0, "no dumped decision changed the limit");
    assert!(
        kinds.contains("reconcile") && kinds.contains("deploy"),
        "{kinds:?}"
    );
}

/// The cross-validation on a small grid: every family is held out once; what a fold chooses
/// is the least cost on the *other* families (recomputed here from the in-sample grid), and
/// the held-out result is the chosen candidate's own replay of the held-out family.
#[test]
fn cross_validation_chooses_on_the_other_families_and_scores_the_held_out_one() {
    use oomguard::replay::crossval::{self, Grid, Setting};
    use oomguard::replay::synthetic;

    let set = synthetic::synthetic_set(7, 1, 3.0);
    let families = crossval::families(&[], &set);
    assert!(families.len() >= 8, "one family per shape");
    let setup = oomguard::replay::Setup {
        policy: PolicySpec::default(),
        cfg: LoopConfig {
            mode: LoopMode::Both,
            manifest: Manifest::Recommended,
            deploy_every: 86_400,
            warmup: 86_400,
            recent: 7 * 86_400,
        },
        threads: 2,
    };
    let grid = Grid {
        axes: vec![vec![Setting::Headroom(0.0), Setting::Headroom(0.6)]],
    };
    let cv = crossval::cross_validate(&setup, &PolicySpec::default(), &families, &grid)
        .expect("cross-validation runs");
    assert_eq!(cv.folds.len(), families.len());
    assert_eq!(cv.grid.len(), 3, "the base policy and two headrooms");
    // (mean OOMs per series-day, mean slack, whether the targets are met: no ratchet and at
    // most 0.5 changes per series-day pooled) on the training families.
    let on = |row: &crossval::GridRow, train: &[&str]| {
        let rows: Vec<_> = row
            .families
            .iter()
            .filter(|r| train.contains(&r.trace.as_str()))
            .collect();
        let n = rows.len() as f64;
        let days: f64 = rows.iter().map(|r| r.series_days).sum();
        let changes: f64 = rows
            .iter()
            .map(|r| r.limit_changes_per_series_day * r.series_days)
            .sum();
        let ratchets: u64 = rows.iter().map(|r| r.ratchets).sum();
        (
            rows.iter()
                .map(|r| r.oom_events_per_series_day)
                .sum::<f64>()
                / n,
            rows.iter().map(|r| r.mean_slack).sum::<f64>() / n,
            ratchets == 0 && changes / days <= 0.5 + 1e-9,
        )
    };
    assert_eq!(cv.grid[0].candidate, "as shipped");
    let mut choices = std::collections::BTreeSet::new();
    for fold in &cv.folds {
        let train: Vec<&str> = cv
            .families
            .iter()
            .map(String::as_str)
            .filter(|f| *f != fold.held_out)
            .collect();
        // With one axis the combination is a grid candidate: the choice is, among those no
        // worse than the base on OOMs and on slack over the training families and without
        // ratchets there, the least OOMs per series-day plus slack; else the base.
        let base = on(&cv.grid[0], &train);
        let cost = |g: &crossval::GridRow| {
            let (o, s, _) = on(g, &train);
            o + s
        };
        let best = cv
            .grid
            .iter()
            .filter(|g| {
                let (o, s, meets) = on(g, &train);
                meets && o <= base.0 && s <= base.1
            })
            .min_by(|a, b| cost(a).total_cmp(&cost(b)))
            .unwrap_or(&cv.grid[0]);
        assert_eq!(fold.chosen, best.candidate, "fold {}", fold.held_out);
        choices.insert(fold.chosen.clone());
        // The held-out family is scored with the choice: its in-sample grid row.
        let own = best
            .families
            .iter()
            .find(|r| r.trace == fold.held_out)
            .expect("held-out family in the grid");
        assert_eq!(fold.result.oom_events, own.oom_events);
        assert_eq!(fold.result.mean_slack, own.mean_slack);
        assert_eq!(
            fold.baselines.len(),
            6,
            "every baseline on the held-out family"
        );
    }
    // The held-out results pooled are the folds' results added up.
    let ooms: u64 = cv.folds.iter().map(|f| f.result.oom_events).sum();
    assert_eq!(cv.pooled_result.oom_events, ooms);
    assert!(cv.replays >= 3 * set.len());
}

#[test]
fn cross_validation_needs_two_families() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(file) = google_slice(dir.path(), 600) else {
        eprintln!("{GOOGLE} not present, skipping");
        return;
    };
    let args = ReplayArgs {
        files: vec![file],
        cross_validate: true,
        ..ReplayArgs::default()
    };
    let err = run(&args, &mut Vec::new()).unwrap_err();
    assert!(format!("{err:#}").contains("two families"), "{err:#}");
}

/// On every synthetic shape (leaks, steady, step, spiky, daily, batch, deploy, weekly), no
/// series where oomguard has more OOMs *and* more slack than KRR `simple` (window max × 1.15).
/// Known to fail (issue 30): with 5 series per kind, synthetic-batch-4 (1 OOM at 79.1% slack
/// against 0 at 78.4%) and synthetic-deploy-1 (2 at 28.2% against 0 at 25.2%) lose to it: a
/// peak or level shift 10% headroom misses and 15% does not, then the × 1.3 bump's extra slack.
/// Run it with `cargo test --release --features replay --test replay -- --ignored`.
#[test]
#[ignore = "known failure, issue 30: two synthetic series lose to krr-simple on both counts"]
fn no_synthetic_series_is_lost_to_the_window_max_plus_15_percent() {
    let args = ReplayArgs {
        synthetic: true,
        by_kind: true,
        synthetic_series: 5,
        synthetic_days: 14.0,
        only: vec!["oomguard".into(), "krr-simple".into()],
        format: Format::Json,
        ..ReplayArgs::default()
    };
    let mut out = Vec::new();
    run(&args, &mut out).expect("replay runs");
    let json: serde_json::Value = serde_json::from_slice(&out).expect("json output");
    let rows = json["results"].as_array().expect("results");
    // One set per kind (12), both recommenders replayed on each; then the pooled rows.
    let oomguard_sets = rows
        .iter()
        .filter(|r| r["name"] == "oomguard" && r["trace"] != "pooled")
        .count();
    assert_eq!(oomguard_sets, 12);
    assert_eq!(
        json["lost_to_krr"],
        serde_json::json!([]),
        "{}",
        json["lost_to_krr"]
    );
}
