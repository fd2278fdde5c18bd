//! Memory quantities against Kubernetes' grammar: random strings that match it never make the
//! parser panic, and where both oomguard and Kubernetes' own parser (apimachinery's
//! `resource.ParseQuantity`, run by the Go program in tests/quantity-ref) accept a string, they
//! agree on the bytes.
//!
//! The grammar (k8s.io/apimachinery/pkg/api/resource/quantity.go):
//! `<sign>? (<digits> | <digits>. | <digits>.<digits> | .<digits>) <suffix>`, suffix one of
//! `Ki Mi Gi Ti Pi Ei`, `m "" k M G T P E`, or `e`/`E` followed by a signed integer.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use oomguard::quantity::parse_bytes;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};

fn digits(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::char::range('0', '9'), 0..=max)
        .prop_map(|v| v.into_iter().collect())
}

/// A quantity of Kubernetes' grammar (and a few near misses: empty numbers) with an exponent
/// drawn from `exponent`.
fn quantity(exponent: impl Strategy<Value = i64>) -> impl Strategy<Value = String> {
    let sign = prop_oneof![Just(""), Just("+"), Just("-")];
    let number = prop_oneof![
        digits(40),
        (digits(25), digits(25)).prop_map(|(i, f)| format!("{i}.{f}")),
        digits(25).prop_map(|i| format!("{i}.")),
        digits(25).prop_map(|f| format!(".{f}")),
    ];
    let suffix = prop_oneof![
        prop::sample::select(vec![
            "", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
        ])
        .prop_map(str::to_string),
        (
            prop::sample::select(vec!["e", "E"]),
            prop::sample::select(vec!["", "+", "-"]),
            exponent
        )
            .prop_map(|(e, s, x)| format!("{e}{s}{}", x.unsigned_abs())),
    ];
    (sign, number, suffix).prop_map(|(s, n, x)| format!("{s}{n}{x}"))
}

/// Exponents anywhere in (and just past) i32, the ends most of all.
fn any_exponent() -> impl Strategy<Value = i64> {
    prop_oneof![
        0i64..40,
        0i64..=i64::from(i32::MAX) + 1,
        prop::sample::select(vec![
            i64::from(i32::MAX),
            i64::from(i32::MAX) + 1,
            i64::from(i32::MIN).abs(),
            i64::from(i32::MIN).abs() - 1,
        ]),
    ]
}

proptest! {
    #![proptest_config(Config { cases: 20_000, ..Config::default() })]

    #[test]
    fn grammar_strings_never_panic(q in quantity(any_exponent())) {
        // An answer either way; a panic (overflow checks are on in tests) fails the test.
        let _ = parse_bytes(&q);
    }
}

/// Kubernetes' answer for each line: Some(integer as text) or None for an error.
fn kubernetes(inputs: &[String]) -> Vec<Option<String>> {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/quantity-ref");
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("quantity-ref");
    let go = std::env::var("GO").unwrap_or_else(|_| "go".into());
    let build = Command::new(&go)
        .current_dir(&here)
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=readonly")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(".")
        .output()
        .unwrap_or_else(|e| {
            panic!("Go is needed for Kubernetes' reference parser ({go}: {e}); install Go 1.26")
        });
    assert!(
        build.status.success(),
        "go build of tests/quantity-ref failed: {}",
        String::from_utf8_lossy(&build.stderr)
    );
    let mut child = Command::new(&bin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let text = inputs.join("\n") + "\n";
    let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success());
    let lines: Vec<Option<String>> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.strip_prefix("ok ").map(str::to_string))
        .collect();
    assert_eq!(lines.len(), inputs.len());
    lines
}

#[test]
fn grammar_strings_agree_with_kubernetes() {
    // Kubernetes' parser builds the power of ten, so its time grows with the exponent: a few
    // hundred at most here (the never-panic property covers the whole range).
    let mut runner = TestRunner::deterministic();
    let strategy = quantity(prop_oneof![0i64..20, 0i64..300]);
    let mut inputs: Vec<String> = (0..20_000)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect();
    inputs.extend(
        [
            "256Mi", "1Gi", "0.5Gi", "1500m", "1e-3", ".5Ki", "1.", "+64Mi", "1e9", "129M", "-0",
            "0.0001",
        ]
        .map(String::from),
    );
    let reference = kubernetes(&inputs);
    let (mut compared, mut both_refuse) = (0, 0);
    for (input, k8s) in inputs.iter().zip(&reference) {
        let ours = parse_bytes(input);
        match (ours, k8s) {
            (Ok(bytes), Some(k)) => {
                assert_eq!(
                    bytes.to_string(),
                    *k,
                    "{input:?}: oomguard reads {bytes}, Kubernetes {k}"
                );
                compared += 1;
            }
            // Kubernetes accepts what oomguard refuses only as: negative memory, more than 30
            // significant digits, more than 8Ei (an int64: Kubernetes caps some such values at
            // 2^63-1 and keeps others it cannot give in bytes), or no number at
            // all ("Mi", ".G": 0 for Kubernetes, a typo for oomguard, which says so).
            (Err(e), Some(k)) => {
                let why = e.reason;
                assert!(
                    (k.starts_with('-') || why.contains("negative"))
                        || why.contains("too many digits")
                        || why.contains("exceeds 2^63-1 bytes")
                        || (why.contains("no number") && k == "0"),
                    "{input:?}: Kubernetes reads {k}, oomguard refuses: {e}"
                );
            }
            (Ok(bytes), None) => panic!("{input:?}: Kubernetes refuses, oomguard reads {bytes}"),
            (Err(_), None) => both_refuse += 1,
        }
    }
    // Most inputs are valid and small enough to compare: the test cannot pass by skipping.
    eprintln!(
        "{compared} of {} compared with Kubernetes, {both_refuse} refused by both",
        inputs.len()
    );
    assert!(
        compared > 5_000,
        "compared only {compared} of {}",
        inputs.len()
    );
    assert!(
        both_refuse > 0,
        "the generator never made an invalid string"
    );
}
