//! Replay end to end: CSV parsing, scoring on a hand-computed example, a slice of a real trace.

use oomguard::history::Sample;
use oomguard::replay::baselines::{Oom, Recommender, View, MIB};
use oomguard::replay::score::{replay_provisioned, replay_series, ReplayConfig, Series};
use oomguard::replay::{parse_csv, run, Format, ReplayArgs};

struct Constant(f64);

impl Recommender for Constant {
    fn name(&self) -> &str {
        "constant"
    }
    fn recommend(&self, _: &View<'_>) -> Option<f64> {
        Some(self.0)
    }
}

/// Twice the largest sample seen, and records what it saw of OOMs through the limit.
struct TwiceMax;

impl Recommender for TwiceMax {
    fn name(&self) -> &str {
        "twice-max"
    }
    fn recommend(&self, v: &View<'_>) -> Option<f64> {
        let max = v.samples.iter().map(|s| s.bytes).fold(0.0, f64::max);
        let oom_floor = v.ooms.last().map_or(0.0, |o: &Oom| o.limit * 3.0);
        Some((2.0 * max).max(oom_floor))
    }
}

fn series(mib: &[f64]) -> Series {
    Series {
        name: "s".into(),
        samples: mib
            .iter()
            .enumerate()
            .map(|(i, &m)| Sample {
                t: i as i64 * 300,
                bytes: m * MIB,
            })
            .collect(),
        limits: vec![120.0 * MIB; mib.len()],
    }
}

#[test]
fn scores_a_hand_computed_replay() {
    // Decision at t=300 (after 300 s of warm-up): 100 MiB. Scored: 100 (slack 0), 150 (OOM,
    // slack 0), 50 (slack 0.5) → 1 OOM, mean slack 0.5 / 3.
    let cfg = ReplayConfig {
        warmup_secs: 300,
        interval_secs: 86_400,
    };
    let s = replay_series(
        &series(&[50.0, 100.0, 150.0, 50.0]),
        &Constant(100.0 * MIB),
        &cfg,
    );
    assert_eq!(s.oom_events, 1);
    assert_eq!(s.scored_samples, 3);
    assert!((s.mean_slack() - 0.5 / 3.0).abs() < 1e-12);
    assert_eq!(s.limit_changes, 0);
    assert!((s.series_days - 600.0 / 86_400.0).abs() < 1e-12);
    assert_eq!((s.days, s.oom_free_days), (1, 0));
}

#[test]
fn oom_is_censored_and_triggers_a_new_decision() {
    // Limit 2 × 50 = 100 MiB; 150 MiB is an OOM; the recommender then sees the OOM at 100 MiB
    // and sets 300 MiB (and 2 × the censored 100 = 200 < 300) before the last sample.
    let cfg = ReplayConfig {
        warmup_secs: 300,
        interval_secs: 86_400,
    };
    let s = replay_series(&series(&[50.0, 50.0, 150.0, 150.0]), &TwiceMax, &cfg);
    assert_eq!(s.oom_events, 1);
    assert_eq!(s.limit_changes, 1);
    let expected = (0.5 + 0.0 + 0.5) / 3.0;
    assert!(
        (s.mean_slack() - expected).abs() < 1e-12,
        "{}",
        s.mean_slack()
    );
}

#[test]
fn provisioned_limits_are_scored_as_given_and_unknown_limits_skip() {
    let cfg = ReplayConfig {
        warmup_secs: 0,
        interval_secs: 3600,
    };
    let s = replay_provisioned(&series(&[60.0, 130.0]), &cfg).expect("known limits");
    assert_eq!(s.oom_events, 1);
    // 60 of 120 MiB: slack 0.5; 130 MiB: an OOM, slack 0.
    assert!((s.mean_slack() - 0.25).abs() < 1e-12);
    let mut unknown = series(&[60.0, 130.0]);
    unknown.limits[1] = 0.0;
    assert!(replay_provisioned(&unknown, &cfg).is_none());
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

#[test]
fn run_replays_a_slice_of_a_real_trace_as_json() {
    let path = std::path::Path::new("/work/shared/data/traces/google-2019-job382.csv");
    let Ok(text) = std::fs::read_to_string(path) else {
        eprintln!("trace not present, skipping");
        return;
    };
    // Two series, first ~2 days each.
    let slice: Vec<&str> = text
        .lines()
        .take(1)
        .chain(text.lines().skip(1).take(1200))
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("slice.csv");
    std::fs::write(&file, slice.join("\n")).expect("write slice");
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
            "oom_events_per_series_day",
            "mean_slack",
            "limit_changes_per_series_day",
        ] {
            assert!(!r[key].is_null(), "{key} missing in {r}");
        }
        let slack = r["mean_slack"].as_f64().expect("slack");
        assert!((0.0..=1.0).contains(&slack));
    }
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
