use super::*;
use crate::quantity::{parse_bytes, GI};

/// A container spec from command, args and literal env.
fn spec(command: &[&str], args: &[&str], env: &[(&str, &str)]) -> RuntimeSpec {
    RuntimeSpec {
        command: command.iter().map(|s| s.to_string()).collect(),
        args: args.iter().map(|s| s.to_string()).collect(),
        env: env
            .iter()
            .map(|(n, v)| EnvVar {
                name: n.to_string(),
                value: EnvValue::Literal(v.to_string()),
            })
            .collect(),
        ..RuntimeSpec::default()
    }
}

fn check(s: &RuntimeSpec, limit: &str) -> Analysis {
    analyse("app", s, Some(parse_bytes(limit).unwrap()), limit, None)
}

fn lines(a: &Analysis) -> Vec<&str> {
    a.findings.iter().map(|f| f.line.as_str()).collect()
}

fn mi(n: u64) -> u64 {
    n * MI
}

#[test]
fn the_issue_jvm_heap_at_the_limit_is_certain_with_the_arithmetic_and_the_fix() {
    let a = check(
        &spec(&["java"], &["-Xmx1536m", "-jar", "/app.jar"], &[]),
        "1536Mi",
    );
    assert_eq!(
        lines(&a),
        ["container app: heap -Xmx1536m is 100% of limit 1536Mi; +384Mi non-heap: limit >= 1920Mi or -Xmx <= 1228m"]
    );
    assert_eq!(a.findings[0].certainty, Certainty::Certain);
    assert_eq!(a.needs, Some(mi(1920)));
    assert!(a.certain());
    assert_eq!(a.settings, ["-Xmx1536m"]);
    // The fix holds: 1228m + its non-heap fits 1536Mi, 1229m does not.
    let at = |x: &str| check(&spec(&["java"], &[x], &[]), "1536Mi");
    assert!(at("-Xmx1228m").findings.is_empty());
    assert!(!at("-Xmx1229m").findings.is_empty());
    // A heap below the limit whose non-heap does not fit: likely, not certain.
    let a = at("-Xmx1400m");
    assert_eq!(a.findings[0].certainty, Certainty::Likely);
    assert!(a.findings[0]
        .line
        .starts_with("container app: heap -Xmx1400m is 91% of limit 1536Mi;"));
}

#[test]
fn jvm_options_apply_in_the_jvm_order() {
    // _JAVA_OPTIONS comes after the command line and wins; JAVA_TOOL_OPTIONS comes first.
    let s = spec(
        &["java"],
        &["-Xmx1g", "-jar", "a.jar"],
        &[("JAVA_TOOL_OPTIONS", "-Xmx8g"), ("_JAVA_OPTIONS", "-Xmx2g")],
    );
    let a = check(&s, "2Gi");
    assert_eq!(a.findings[0].certainty, Certainty::Certain);
    assert_eq!(
        a.findings[0].line,
        "container app: heap -Xmx2g (_JAVA_OPTIONS) is 100% of 2Gi; +512Mi non-heap: limit >= 2560Mi or -Xmx <= 1638m"
    );
    let s = spec(
        &["java"],
        &["-Xmx1g", "-jar", "a.jar"],
        &[("JAVA_TOOL_OPTIONS", "-Xmx8g")],
    );
    assert!(check(&s, "2Gi").findings.is_empty());
    // JDK_JAVA_OPTIONS goes in front of the command line: the spec's -Xmx wins, and alone it
    // counts (the image runs java).
    let s = spec(
        &["java"],
        &["-Xmx512m", "-jar", "a.jar"],
        &[("JDK_JAVA_OPTIONS", "-Xmx4g")],
    );
    assert!(check(&s, "1Gi").findings.is_empty());
    let a = check(&spec(&[], &[], &[("JDK_JAVA_OPTIONS", "-Xmx4g")]), "1Gi");
    assert!(
        lines(&a)[0].contains("heap -Xmx4g (JDK_JAVA_OPTIONS) is 400% of"),
        "{a:?}"
    );
    // JAVA_OPTS is the image's convention: it counts when the image's entrypoint runs, not
    // beside a java command line that does not name it, and where a script expands it.
    let opts = [("JAVA_OPTS", "-Xms1g -Xmx3g")];
    assert!(lines(&check(&spec(&[], &[], &opts), "2Gi"))[0].contains("-Xmx3g (JAVA_OPTS) is 150%"));
    assert!(check(&spec(&["java"], &["-jar", "a.jar"], &opts), "2Gi")
        .findings
        .is_empty());
    let a = check(
        &spec(&["sh", "-c", "exec java $JAVA_OPTS -jar a.jar"], &[], &opts),
        "2Gi",
    );
    assert!(
        lines(&a)[0].contains("heap -Xmx3g is 150% of limit 2Gi"),
        "{a:?}"
    );
    // Kubernetes expands $(VAR) in args.
    let a = check(
        &spec(
            &["java"],
            &["-Xmx$(HEAP)", "-jar", "a.jar"],
            &[("HEAP", "2g")],
        ),
        "2Gi",
    );
    assert!(a.certain());
    // Options after the main class or -jar belong to the application.
    assert!(
        check(&spec(&["java"], &["-jar", "a.jar", "-Xmx9g"], &[]), "1Gi")
            .findings
            .is_empty()
    );
}

#[test]
fn heap_percentages_are_weighed_at_the_limit() {
    let a = check(
        &spec(
            &[],
            &[],
            &[("JAVA_TOOL_OPTIONS", "-XX:MaxRAMPercentage=90")],
        ),
        "2Gi",
    );
    assert_eq!(
        lines(&a),
        ["container app: heap 1843Mi (JAVA_TOOL_OPTIONS MaxRAMPercentage=90) is 90% of limit 2Gi; MaxRAMPercentage <= 80"]
    );
    assert_eq!(a.findings[0].certainty, Certainty::Likely);
    assert_eq!(a.settings, ["-XX:MaxRAMPercentage=90 (JAVA_TOOL_OPTIONS)"]);
    // No limit fits a heap of 90% of it.
    assert_eq!(a.needs, None);
    let a = check(
        &spec(
            &["java"],
            &["-XX:MaxRAMPercentage=100", "-jar", "a.jar"],
            &[],
        ),
        "1Gi",
    );
    assert!(a.certain());
    // 75% fits; so does the JVM's 25% default, which says nothing.
    assert!(check(
        &spec(
            &[],
            &[],
            &[("JAVA_TOOL_OPTIONS", "-XX:MaxRAMPercentage=75")]
        ),
        "1Gi"
    )
    .findings
    .is_empty());
    let a = check(&spec(&["java"], &["-jar", "a.jar"], &[]), "1Gi");
    assert!(a.findings.is_empty());
    // MaxRAM sets the memory the percentages apply to, whatever the limit.
    let a = check(
        &spec(&["java"], &["-XX:MaxRAM=8g", "-jar", "a.jar"], &[]),
        "1Gi",
    );
    assert!(a.certain(), "{a:?}");
    assert!(lines(&a)[0].contains("heap 2Gi (-XX:MaxRAM=8g) is 200% of limit 1Gi"));
}

#[test]
fn non_heap_settings_add_to_the_estimate() {
    let s = spec(
        &["java"],
        &["-Xmx1g", "-XX:MaxDirectMemorySize=512m", "-jar", "a.jar"],
        &[],
    );
    // 1024 + 256 + 512
    assert_eq!(check(&s, "2Gi").needs, Some(mi(1792)));
    assert!(check(&s, "1700Mi").findings.len() == 1);
}

#[test]
fn elasticsearch_wants_twice_its_heap() {
    let s = spec(&[], &[], &[("ES_JAVA_OPTS", "-Xms4g -Xmx4g")]);
    let a = check(&s, "6Gi");
    assert_eq!(
        lines(&a),
        ["container app: heap -Xmx4g (ES_JAVA_OPTS) is 67% of limit 6Gi; ES needs 2x heap: limit >= 8Gi or -Xmx <= 3072m"]
    );
    assert!(check(&s, "8Gi").findings.is_empty());
}

#[test]
fn node_old_space_from_args_and_node_options() {
    let a = check(
        &spec(
            &["node", "--max-old-space-size=2048", "server.js"],
            &[],
            &[],
        ),
        "2Gi",
    );
    assert_eq!(
        lines(&a),
        ["container app: --max-old-space-size=2048 is 100% of limit 2Gi; 75% max: limit >= 2731Mi"]
    );
    assert!(a.certain());
    // The command line wins over NODE_OPTIONS.
    let s = spec(
        &["node", "--max-old-space-size", "1024", "server.js"],
        &[],
        &[("NODE_OPTIONS", "--max-old-space-size=4096")],
    );
    assert!(check(&s, "2Gi").findings.is_empty());
    let s = spec(
        &[],
        &[],
        &[(
            "NODE_OPTIONS",
            "--enable-source-maps --max_old_space_size=1800",
        )],
    );
    assert_eq!(check(&s, "2Gi").findings[0].certainty, Certainty::Likely);
    // Options after the script are the script's.
    assert!(check(
        &spec(&["node", "app.js", "--max-old-space-size=4096"], &[], &[]),
        "1Gi"
    )
    .findings
    .is_empty());
}

#[test]
fn redis_units_are_redis_units() {
    assert_eq!(redis_size("1k"), Some(1000));
    assert_eq!(redis_size("1kb"), Some(1024));
    assert_eq!(redis_size("900mb"), Some(900 * MI));
    assert_eq!(redis_size("900m"), Some(900_000_000));
    assert_eq!(redis_size("1GB"), Some(GI));
    assert_eq!(redis_size("2g"), Some(2_000_000_000));
    assert_eq!(redis_size("1048576"), Some(MI));
    for bad in ["", "mb", "1.5gb", "1gib", "-1mb"] {
        assert_eq!(redis_size(bad), None, "{bad}");
    }
    // The issue's case: 900mb under 1G (10^9 bytes).
    let a = check(
        &spec(
            &[],
            &[
                "redis-server",
                "--maxmemory",
                "900mb",
                "--maxmemory-policy",
                "allkeys-lru",
            ],
            &[],
        ),
        "1G",
    );
    assert_eq!(
        lines(&a),
        ["container app: maxmemory 900mb is 94% of limit 1G; 75% max: limit >= 1200Mi or maxmemory <= 715mb"]
    );
    assert_eq!(a.findings[0].certainty, Certainty::Likely);
    let a = check(
        &spec(
            &["redis-server", "/etc/redis.conf", "--maxmemory", "1gb"],
            &[],
            &[],
        ),
        "1Gi",
    );
    assert!(a.certain());
    assert_eq!(a.unread, ["redis config file /etc/redis.conf"]);
    // 900m is 10^6-based: 858Mi under 1200Mi fits.
    assert!(check(&spec(&[], &["--maxmemory", "900m"], &[]), "1200Mi")
        .findings
        .is_empty());
}

#[test]
fn gomemlimit_leaves_the_go_guide_headroom() {
    assert_eq!(go_size("2GiB"), Some(2 * GI));
    assert_eq!(go_size("1800MiB"), Some(mi(1800)));
    assert_eq!(go_size("123B"), Some(123));
    assert_eq!(go_size("123"), Some(123));
    for bad in ["2Gi", "2G", "1.5GiB", "GiB", "", "2gib"] {
        assert_eq!(go_size(bad), None, "{bad}");
    }
    let a = check(
        &spec(&["/app/server"], &[], &[("GOMEMLIMIT", "2GiB")]),
        "2Gi",
    );
    assert_eq!(
        lines(&a),
        ["container app: GOMEMLIMIT=2GiB is 100% of limit 2Gi; 10% headroom: limit >= 2276Mi or GOMEMLIMIT <= 1843MiB"]
    );
    assert_eq!(a.findings[0].certainty, Certainty::Likely);
    // With the collector off the heap grows to the limit: certain.
    let a = check(
        &spec(
            &["/app/server"],
            &[],
            &[("GOMEMLIMIT", "2GiB"), ("GOGC", "off")],
        ),
        "2Gi",
    );
    assert!(a.certain());
    assert!(check(&spec(&[], &[], &[("GOMEMLIMIT", "1800MiB")]), "2Gi")
        .findings
        .is_empty());
    assert!(check(&spec(&[], &[], &[("GOMEMLIMIT", "off")]), "2Gi")
        .findings
        .is_empty());
    let a = check(&spec(&[], &[], &[("GOMEMLIMIT", "2Gi")]), "4Gi");
    assert_eq!(
        lines(&a),
        ["container app: GOMEMLIMIT=2Gi is not Go's syntax (e.g. 1536MiB): the Go runtime exits at start"]
    );
    // From the container's own limit: 100% of it.
    let mut s = spec(&[], &[], &[]);
    s.env.push(EnvVar {
        name: "GOMEMLIMIT".into(),
        value: EnvValue::Resource {
            resource: "limits.memory".into(),
            divisor: None,
        },
    });
    let a = check(&s, "1Gi");
    assert!(
        lines(&a)[0].starts_with("container app: GOMEMLIMIT (limits.memory) is 100% of limit 1Gi;")
    );
}

#[test]
fn dotnet_values_are_hex() {
    let a = check(
        &spec(
            &["dotnet", "app.dll"],
            &[],
            &[("DOTNET_GCHeapHardLimit", "0x80000000")],
        ),
        "2Gi",
    );
    assert!(a.certain());
    assert_eq!(
        lines(&a),
        ["container app: DOTNET_GCHeapHardLimit=0x80000000 is 100% of limit 2Gi; 75% max: limit >= 2731Mi"]
    );
    // Without 0x too: 200000000 is 8 GiB, not 200 MB.
    let a = check(
        &spec(&[], &[], &[("DOTNET_GCHeapHardLimit", "200000000")]),
        "1Gi",
    );
    assert!(a.certain());
    // 50 is 0x50: 80% of the limit, above the 75% default.
    let a = check(
        &spec(&[], &[], &[("DOTNET_GCHeapHardLimitPercent", "50")]),
        "1Gi",
    );
    assert_eq!(a.findings.len(), 1);
    assert_eq!(
        lines(&a),
        ["container app: DOTNET_GCHeapHardLimitPercent=50 (hex) is 80% of 1Gi; 75% max: GCHeapHardLimitPercent <= 0x4B"]
    );
    assert_eq!(a.findings[0].certainty, Certainty::Likely);
    assert!(check(
        &spec(&[], &[], &[("DOTNET_GCHeapHardLimitPercent", "4B")]),
        "1Gi"
    )
    .findings
    .is_empty());
    // 0x64 is 100: outside 1..99, the runtime ignores it (its 75% default stays).
    assert!(check(
        &spec(&[], &[], &[("DOTNET_GCHeapHardLimitPercent", "64")]),
        "1Gi"
    )
    .findings
    .is_empty());
    // DOTNET_ before COMPlus_; the byte limit before the percentage.
    let s = spec(
        &[],
        &[],
        &[
            ("COMPlus_GCHeapHardLimit", "0x80000000"),
            ("DOTNET_GCHeapHardLimit", "0x10000000"),
        ],
    );
    assert!(check(&s, "1Gi").findings.is_empty());
    let s = spec(
        &[],
        &[],
        &[
            ("DOTNET_GCHeapHardLimit", "0x10000000"),
            ("DOTNET_GCHeapHardLimitPercent", "63"),
        ],
    );
    assert!(check(&s, "1Gi").findings.is_empty());
    // Another runtime's variables do not apply to a JVM.
    assert!(check(
        &spec(
            &["java"],
            &["-jar", "a.jar"],
            &[("DOTNET_GCHeapHardLimit", "0x80000000")]
        ),
        "1Gi"
    )
    .findings
    .is_empty());
}

fn with_volumes(mut s: RuntimeSpec, volumes: &[(&str, Option<u64>)]) -> RuntimeSpec {
    s.memory_volumes = volumes
        .iter()
        .map(|(n, b)| MemoryVolume {
            name: n.to_string(),
            size_limit: *b,
        })
        .collect();
    s
}

#[test]
fn memory_backed_empty_dirs_count_against_the_limit() {
    let a = check(
        &with_volumes(spec(&[], &[], &[]), &[("scratch", Some(2 * GI))]),
        "1Gi",
    );
    assert_eq!(
        lines(&a),
        ["container app: emptyDir scratch (medium: Memory) sizeLimit 2Gi is 200% of limit 1Gi; limit >= 3Gi"]
    );
    assert!(a.certain());
    assert_eq!(a.needs, Some(3 * GI));
    let a = check(&with_volumes(spec(&[], &[], &[]), &[("shm", None)]), "1Gi");
    assert_eq!(
        lines(&a),
        ["container app: emptyDir shm (medium: Memory) without sizeLimit: its files count against limit 1Gi; set one"]
    );
    assert_eq!(a.findings[0].certainty, Certainty::Likely);
    // A small one next to an unknown program: nothing to say.
    assert!(check(
        &with_volumes(spec(&[], &[], &[]), &[("shm", Some(mi(64)))]),
        "1Gi"
    )
    .findings
    .is_empty());
    // The JVM fits alone, not with its volume.
    let s = with_volumes(
        spec(&["java"], &["-Xmx1g", "-jar", "a.jar"], &[]),
        &[("cache", Some(mi(512)))],
    );
    let a = check(&s, "1536Mi");
    assert_eq!(
        lines(&a),
        ["container app: JVM ~1280Mi + emptyDir cache 512Mi = 1792Mi is 117% of limit 1536Mi; limit >= 1792Mi"]
    );
    assert_eq!(a.needs, Some(mi(1792)));
    assert!(check(&s, "1792Mi").findings.is_empty());
}

#[test]
fn values_from_configmaps_and_secrets_are_named_not_guessed() {
    let mut s = spec(&["java"], &["-jar", "a.jar"], &[]);
    s.env.push(EnvVar {
        name: "JAVA_TOOL_OPTIONS".into(),
        value: EnvValue::Unread(Unread {
            kind: "configMap",
            name: "jvm".into(),
            key: Some("opts".into()),
        }),
    });
    s.env_from.push("secret app-env".into());
    let a = check(&s, "1Gi");
    assert!(a.findings.is_empty());
    assert_eq!(
        a.unread,
        [
            "JAVA_TOOL_OPTIONS (configMap jvm key opts)",
            "envFrom secret app-env"
        ]
    );
    // A $(VAR) from a Secret leaves the option unread: no finding from a guess.
    let mut s = spec(&["java"], &["-Xmx$(HEAP)", "-jar", "a.jar"], &[]);
    s.env.push(EnvVar {
        name: "HEAP".into(),
        value: EnvValue::Unread(Unread {
            kind: "secret",
            name: "heap".into(),
            key: Some("size".into()),
        }),
    });
    let a = check(&s, "256Mi");
    assert!(a.findings.is_empty());
    assert_eq!(a.unread, ["$(HEAP) (secret heap key size)"]);
    // envFrom beside a program that is not one of these says nothing.
    let mut s = spec(&["/app/server"], &[], &[]);
    s.env_from.push("configMap x".into());
    assert!(check(&s, "1Gi").is_empty());
}

#[test]
fn a_sound_manifest_gets_nothing() {
    for s in [
        spec(&["java"], &["-Xmx700m", "-jar", "a.jar"], &[]),
        spec(
            &[],
            &[],
            &[("JAVA_TOOL_OPTIONS", "-XX:MaxRAMPercentage=75 -XX:+UseG1GC")],
        ),
        spec(&["node", "--max-old-space-size=700", "s.js"], &[], &[]),
        spec(&[], &["--maxmemory", "700mb"], &[]),
        spec(
            &["/server"],
            &[],
            &[("GOMEMLIMIT", "900MiB"), ("MODE", "blue")],
        ),
        spec(&[], &[], &[("DOTNET_GCHeapHardLimitPercent", "0x3C")]),
        spec(
            &["python", "app.py"],
            &["--workers", "4"],
            &[("PYTHONUNBUFFERED", "1")],
        ),
        with_volumes(
            spec(&["java"], &["-Xmx512m", "-jar", "a.jar"], &[]),
            &[("shm", Some(mi(64)))],
        ),
    ] {
        let a = check(&s, "1Gi");
        assert!(a.findings.is_empty(), "{s:?}: {:?}", a.findings);
    }
}

#[test]
fn without_a_limit_absolute_settings_still_tell_the_size() {
    let a = analyse(
        "app",
        &spec(&["java"], &["-Xmx2g", "-jar", "a.jar"], &[]),
        None,
        "",
        None,
    );
    assert!(a.findings.is_empty());
    assert_eq!(a.needs, Some(mi(2560)));
    assert_eq!(a.explain.as_deref(), Some("-Xmx2g + ~512Mi non-heap"));
    // Percentages of an unknown limit tell nothing.
    let s = spec(
        &[],
        &[],
        &[("JAVA_TOOL_OPTIONS", "-XX:MaxRAMPercentage=90")],
    );
    assert_eq!(analyse("app", &s, None, "", None).needs, None);
}

#[test]
fn every_line_fits_the_warning_budget() {
    let cases = [
        (
            spec(&["java"], &["-Xmx1536m", "-jar", "a.jar"], &[]),
            "1536Mi",
        ),
        (
            spec(
                &["java"],
                &["-Xmx1400m", "-XX:MaxDirectMemorySize=512m"],
                &[],
            ),
            "1536Mi",
        ),
        (
            spec(&[], &[], &[("_JAVA_OPTIONS", "-XX:MaxRAMPercentage=95.5")]),
            "1Gi",
        ),
        (spec(&[], &[], &[("ES_JAVA_OPTS", "-Xmx31g")]), "32Gi"),
        (
            spec(&["node", "--max-old-space-size=3000", "s.js"], &[], &[]),
            "3Gi",
        ),
        (spec(&[], &["--maxmemory", "4gb"], &[]), "4500M"),
        (
            spec(&[], &[], &[("GOMEMLIMIT", "1000000000"), ("GOGC", "off")]),
            "1G",
        ),
        (
            spec(&[], &[], &[("DOTNET_GCHeapHardLimit", "0x100000000")]),
            "4Gi",
        ),
        (
            spec(&[], &[], &[("COMPlus_GCHeapHardLimitPercent", "0x5A")]),
            "512Mi",
        ),
        (
            with_volumes(spec(&[], &[], &[]), &[("scratch-space", Some(8 * GI))]),
            "512Mi",
        ),
        (with_volumes(spec(&[], &[], &[]), &[("dshm", None)]), "16Gi"),
        (
            with_volumes(
                spec(&["java"], &["-Xmx2g"], &[]),
                &[("cache", Some(GI)), ("tmp", Some(GI))],
            ),
            "3Gi",
        ),
    ];
    for (s, limit) in cases {
        let a = analyse(
            "orders-api",
            &s,
            Some(parse_bytes(limit).unwrap()),
            limit,
            None,
        );
        assert!(!a.findings.is_empty(), "{s:?}");
        for f in &a.findings {
            assert!(
                f.line.chars().count() <= LINE_BUDGET,
                "{} chars: {}",
                f.line.chars().count(),
                f.line
            );
        }
    }
}

#[test]
fn settings_tell_an_update_that_changes_memory() {
    let a = settings(&spec(
        &["java"],
        &["-Xmx1g", "-jar", "a.jar"],
        &[("MODE", "blue")],
    ));
    let b = settings(&spec(
        &["java"],
        &["-Xmx1g", "-jar", "a.jar"],
        &[("MODE", "green")],
    ));
    let c = settings(&spec(
        &["java"],
        &["-Xmx2g", "-jar", "a.jar"],
        &[("MODE", "blue")],
    ));
    assert_eq!(a, b);
    assert_ne!(a, c);
    let v = |b| settings(&with_volumes(spec(&[], &[], &[]), &[("shm", b)]));
    assert_ne!(v(Some(MI)), v(Some(GI)));
}

/// The issue's launch-script settings: each read where the image's script reads it, with where
/// it came from named in the line.
#[test]
fn launch_script_heap_settings_are_read() {
    type Case<'a> = (
        &'a [&'a str],
        &'a [&'a str],
        &'a [(&'a str, &'a str)],
        &'a str,
    );
    let cases: [Case; 8] = [
        (
            &[],
            &[],
            &[("KAFKA_HEAP_OPTS", "-Xmx1G -Xms1G")],
            "heap -Xmx1G (KAFKA_HEAP_OPTS)",
        ),
        (
            &[],
            &[],
            &[("OPENSEARCH_JAVA_OPTS", "-Xms1g -Xmx1g")],
            "heap -Xmx1g (OPENSEARCH_JAVA_OPTS)",
        ),
        (
            &[],
            &[],
            &[("CATALINA_OPTS", "-Xmx1024m")],
            "heap -Xmx1024m (CATALINA_OPTS)",
        ),
        (
            &[],
            &[],
            &[("JAVA_OPTS_APPEND", "-Xmx1g")],
            "heap -Xmx1g (JAVA_OPTS_APPEND)",
        ),
        (&[], &[], &[("SOLR_HEAP", "1g")], "heap -Xmx1g (SOLR_HEAP)"),
        (
            &[],
            &[],
            &[("MAX_HEAP_SIZE", "1G")],
            "heap -Xmx1G (MAX_HEAP_SIZE)",
        ),
        (
            &["/entrypoint.sh", "java", "-Xmx1g", "-jar", "a.jar"],
            &[],
            &[],
            "heap -Xmx1g",
        ),
        (
            &[],
            &["redis-server", "--maxmemory 1gb"],
            &[],
            "maxmemory 1gb",
        ),
    ];
    for (command, args, env, what) in cases {
        let a = check(&spec(command, args, env), "1Gi");
        assert!(
            a.findings
                .first()
                .is_some_and(|f| f.line.starts_with(&format!("container app: {what} is "))),
            "{command:?} {args:?} {env:?}: {:?}",
            lines(&a)
        );
    }
    // OpenSearch, like Elasticsearch, needs twice its heap.
    let a = check(
        &spec(&[], &[], &[("OPENSEARCH_JAVA_OPTS", "-Xmx512m")]),
        "1Gi",
    );
    assert_eq!(a.needs, Some(mi(1024)));
    // run-java.sh's JAVA_MAX_MEM_RATIO is a share of the limit.
    let a = check(&spec(&[], &[], &[("JAVA_MAX_MEM_RATIO", "95")]), "1Gi");
    assert!(!a.findings.is_empty(), "{:?}", a);
    // A script that runs something else is not a JVM.
    let a = check(
        &spec(&["/entrypoint.sh", "python", "-Xmx1g"], &[], &[]),
        "1Gi",
    );
    assert!(a.findings.is_empty() && a.settings.is_empty());
    // From a ConfigMap: named as unread.
    let mut s = spec(&[], &[], &[]);
    s.env.push(EnvVar {
        name: "KAFKA_HEAP_OPTS".into(),
        value: EnvValue::Unread(Unread {
            kind: "configMap",
            name: "kafka".into(),
            key: Some("heap".into()),
        }),
    });
    assert_eq!(
        check(&s, "1Gi").unread,
        ["KAFKA_HEAP_OPTS (configMap kafka key heap)"]
    );
}
