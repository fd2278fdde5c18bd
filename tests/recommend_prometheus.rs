//! `oomguard recommend --prometheus` against a real Prometheus with the tutorial's
//! memory-leak-app backfilled. The CLI evaluates at the clock's now with a 14-day window; the
//! data ends 4 h before (Prometheus cannot backfill the last hours), well inside the window.

mod common;

use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use common::prom::{self, Prometheus};
use common::scenario::{self, Workload};
use common::{repo, BIN};
use oomguard::recommend::{CurrentFrom, Report};

const WINDOW: i64 = 14 * 86_400;
const RECENT: i64 = 7 * 86_400;

struct Fixture {
    prom: Prometheus,
    end: i64,
    leak: Workload,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let end = prom::data_end();
        let leak = scenario::memory_leak_app(end - 86_400, end);
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("scenario.om");
        let mut out = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
        scenario::write_openmetrics(leak.series(30), &mut out).unwrap();
        scenario::write_eof(&mut out).unwrap();
        drop(out);
        let data = dir.path().join("tsdb");
        prom::create_blocks(&input, &data);
        let prom = Prometheus::start(&data, &[]);
        prom.wait_queryable("container_memory_working_set_bytes", end);
        Fixture {
            prom,
            end,
            leak,
            _dir: dir,
        }
    })
}

fn recommend(args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(repo())
        .arg("recommend")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn reports_the_scenarios_oom_kills_and_runtime_limit() {
    let f = fixture();
    let out = recommend(&[
        "--prometheus",
        &f.prom.url,
        "--namespace",
        "self-healing-platform",
        "--policies",
        "policies",
        "-o",
        "json",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = Report::parse(&stdout).unwrap();
    assert_eq!(report.source, format!("prometheus {}", f.prom.url));
    let rows = &report.recommendations;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    let r = &rows[0];
    assert_eq!(
        (r.kind.as_str(), r.name.as_str(), r.container.as_str()),
        ("Deployment", "memory-leak-app", "web")
    );
    let want = &f.leak.expected(f.end, WINDOW, RECENT)["web"];
    assert!(want.ooms.len() > 100, "{}", want.ooms.len());
    assert_eq!(r.oom_kills as usize, want.ooms.len());
    // Without manifests: the limit the containers ran with; the request is unknown.
    assert_eq!(r.current_from, CurrentFrom::Runtime);
    assert_eq!(r.limit, Some(256 * 1024 * 1024));
    assert_eq!(r.request, None);
    assert!(r.recommended_limit.is_some_and(|l| l > 256 * 1024 * 1024));
    assert_eq!(r.severity, oomguard::verdict::Severity::Critical);
}

#[test]
fn a_namespace_without_data_is_an_error_that_says_what_was_queried() {
    let f = fixture();
    let out = recommend(&["--prometheus", &f.prom.url, "--namespace", "no-such-ns"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("\"no-such-ns\""), "{err}");
    assert!(err.contains(&f.prom.url), "{err}");
    assert!(err.contains("container_memory_working_set_bytes"), "{err}");
    assert!(out.stdout.is_empty());
}
