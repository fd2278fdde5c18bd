//! Day-zero checks: the OOM a container's own configuration already promises, before any memory
//! history exists. A JVM whose heap fills its limit, Redis with `maxmemory` at the limit, Node's
//! old space, `GOMEMLIMIT`, .NET's GC heap limit, and memory-backed `emptyDir` volumes, read from
//! the container's command, args, literal env values and volumes (rules and sources: docs/day-zero.md,
//! "Day-zero checks").
//!
//! Pure: [`settings`] reads what the spec sets (compared across an UPDATE), [`analyse`] weighs it
//! against the limit. A value from a ConfigMap, a Secret or the downward API is named as unread,
//! never guessed.

mod cmdline;
mod jvm;
#[cfg(test)]
mod tests;

use serde::Serialize;

use crate::quantity::{format_bytes, round_up_mi, to_quantity, MI};
use cmdline::{Env, Invocation, Program, Value};
use jvm::{HeapFrom, JvmOptions};

/// What a container's spec says about the program it runs (read from the pod template).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuntimeSpec {
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<EnvVar>,
    /// `envFrom` sources, described (`configMap app-env`): their keys are not read.
    pub env_from: Vec<String>,
    /// Memory-backed `emptyDir` volumes the container mounts.
    pub memory_volumes: Vec<MemoryVolume>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EnvVar {
    pub name: String,
    pub value: EnvValue,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EnvValue {
    Literal(String),
    /// `valueFrom` a ConfigMap, a Secret or a field: where from, not what.
    Unread(Unread),
    /// `valueFrom.resourceFieldRef` of this container (`limits.memory`, with its divisor).
    Resource {
        resource: String,
        divisor: Option<String>,
    },
}

/// Where a value the spec does not hold comes from (`secret db key password`, `fieldRef
/// metadata.name`); described only when it matters.
#[derive(Debug, Clone, PartialEq)]
pub struct Unread {
    /// `configMap`, `secret`, `fieldRef`, ...
    pub kind: &'static str,
    pub name: String,
    pub key: Option<String>,
}

impl std::fmt::Display for Unread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.key {
            Some(k) => write!(f, "{} {} key {}", self.kind, self.name, k),
            None if self.name.is_empty() => f.write_str(self.kind),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// An `emptyDir` with `medium: Memory`: tmpfs, whose files count against the memory limit of
/// the container that writes them.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryVolume {
    pub name: String,
    /// `sizeLimit` in bytes; None when it has none (it may then fill the pod's memory).
    pub size_limit: Option<u64>,
}

/// Launch-script variables whose value an image's start script hands to `java` (read when the
/// container runs the image's entrypoint or a script of its own, not a java command line of
/// its own), and whether the JVM is Elasticsearch's (twice the heap). From the scripts:
/// Tomcat's `catalina.sh` (CATALINA_OPTS, JAVA_OPTS), the UBI/fabric8 `run-java.sh`
/// (JAVA_OPTIONS, JAVA_OPTS_APPEND), Kafka's `kafka-run-class.sh` (KAFKA_HEAP_OPTS, KAFKA_OPTS),
/// Elasticsearch's and OpenSearch's launchers, Logstash (LS_JAVA_OPTS), ZooKeeper's
/// `zkServer.sh` (JVMFLAGS, SERVER_JVMFLAGS), Solr's `solr` (SOLR_JAVA_MEM), Jenkins'
/// `jenkins.sh` (JENKINS_JAVA_OPTS), Nexus' install4j launcher (INSTALL4J_ADD_VM_PARAMS).
const LAUNCHER_JVM_VARS: [(&str, bool); 15] = [
    ("JAVA_OPTS", false),
    ("CATALINA_OPTS", false),
    ("JAVA_OPTIONS", false),
    ("JAVA_OPTS_APPEND", false),
    ("KAFKA_HEAP_OPTS", false),
    ("KAFKA_OPTS", false),
    ("ES_JAVA_OPTS", true),
    ("OPENSEARCH_JAVA_OPTS", true),
    ("LS_JAVA_OPTS", false),
    ("JVMFLAGS", false),
    ("SERVER_JVMFLAGS", false),
    ("SOLR_JAVA_MEM", false),
    ("JENKINS_JAVA_OPTS", false),
    ("INSTALL4J_ADD_VM_PARAMS", false),
    ("JAVA_TOOL_OPTIONS_APPEND", false),
];

/// Launch-script variables that hold one size the script turns into a JVM option: Solr's
/// `SOLR_HEAP` and Cassandra's `MAX_HEAP_SIZE` (`-Xmx`), run-java.sh's `JAVA_MAX_MEM_RATIO`
/// (a share of the container's limit, as `-XX:MaxRAMPercentage`).
const LAUNCHER_HEAP_VARS: [(&str, &str); 3] = [
    ("SOLR_HEAP", "-Xmx"),
    ("MAX_HEAP_SIZE", "-Xmx"),
    ("JAVA_MAX_MEM_RATIO", "-XX:MaxRAMPercentage="),
];

/// The environment variables whose values decide memory (named when they cannot be read).
const MEMORY_VARS: [&str; 28] = [
    "JAVA_TOOL_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "JAVA_OPTS",
    "ES_JAVA_OPTS",
    "_JAVA_OPTIONS",
    "NODE_OPTIONS",
    "GOMEMLIMIT",
    "GOGC",
    "DOTNET_GCHeapHardLimit",
    "DOTNET_GCHeapHardLimitPercent",
    "COMPlus_GCHeapHardLimit",
    "COMPlus_GCHeapHardLimitPercent",
    "CATALINA_OPTS",
    "JAVA_OPTIONS",
    "JAVA_OPTS_APPEND",
    "KAFKA_HEAP_OPTS",
    "KAFKA_OPTS",
    "OPENSEARCH_JAVA_OPTS",
    "LS_JAVA_OPTS",
    "JVMFLAGS",
    "SERVER_JVMFLAGS",
    "SOLR_JAVA_MEM",
    "JENKINS_JAVA_OPTS",
    "INSTALL4J_ADD_VM_PARAMS",
    "JAVA_TOOL_OPTIONS_APPEND",
    "SOLR_HEAP",
    "MAX_HEAP_SIZE",
    "JAVA_MAX_MEM_RATIO",
];

/// A setting as written, with where it was set.
#[derive(Debug, Clone, PartialEq)]
struct Set<T> {
    value: T,
    text: String,
}

/// What the spec sets that decides memory, read without the limit: an UPDATE that changes it
/// changes memory as a new limit does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    jvm: Option<JvmOptions>,
    /// `ES_JAVA_OPTS` is set: Elasticsearch's launcher runs the JVM.
    elasticsearch: bool,
    /// `--max-old-space-size`, in bytes.
    node_old_space: Option<Set<u64>>,
    go_limit: Option<GoLimit>,
    go_gc_off: bool,
    redis_maxmemory: Option<Set<u64>>,
    dotnet: Option<DotnetLimit>,
    volumes: Vec<MemoryVolume>,
    unread: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum GoLimit {
    Bytes(Set<u64>),
    /// `resourceFieldRef` of this container's memory, with its divisor.
    Resource {
        resource: String,
        divisor: u64,
    },
    /// Not Go's grammar: the runtime refuses to start.
    Malformed(String),
}

#[derive(Debug, Clone, PartialEq)]
enum DotnetLimit {
    Bytes(Set<u64>),
    /// A percentage (the variable is hex: `50` is 80%).
    Percent(Set<u64>),
}

/// Reads what the spec sets.
pub fn settings(spec: &RuntimeSpec) -> Settings {
    let mut s = Settings {
        volumes: spec.memory_volumes.clone(),
        ..Settings::default()
    };
    if spec.command.is_empty() && spec.args.is_empty() && spec.env.is_empty() {
        return s;
    }
    let env = Env::new(spec);
    let inv = cmdline::invocation(spec, &env, &mut s.unread);
    let unknown = matches!(inv.program, Program::Other | Program::Entrypoint);

    if unknown || inv.program == Program::Java {
        jvm_settings(&env, &inv, unknown, &mut s);
    }
    if unknown || inv.program == Program::Node {
        s.node_old_space = node_old_space(&env, &inv);
    }
    if inv.program == Program::Redis {
        redis_settings(&inv, &mut s);
    }
    if unknown {
        s.go_limit = go_limit(&env);
        s.go_gc_off = env.literal("GOGC") == Some("off");
    }
    if unknown || inv.program == Program::Dotnet {
        s.dotnet = dotnet_limit(&env);
    }

    // What could not be read, where it could matter.
    for name in MEMORY_VARS {
        if let Some(Value::Unread(from)) = env.get(name) {
            s.unread.push(format!("{name} ({from})"));
        }
    }
    let runtime_seen = s.jvm.is_some()
        || s.node_old_space.is_some()
        || s.go_limit.is_some()
        || s.redis_maxmemory.is_some()
        || s.dotnet.is_some()
        || !matches!(inv.program, Program::Other | Program::Entrypoint);
    if runtime_seen {
        s.unread
            .extend(spec.env_from.iter().map(|f| format!("envFrom {f}")));
    }
    s.unread.dedup();
    s
}

/// The JVM's heap settings: JAVA_TOOL_OPTIONS, the command line (JDK_JAVA_OPTIONS, the image's
/// JAVA_OPTS / ES_JAVA_OPTS convention, the spec's own java options), _JAVA_OPTIONS.
fn jvm_settings(env: &Env<'_>, inv: &Invocation<'_>, unknown: bool, s: &mut Settings) {
    let mut o = JvmOptions::default();
    let var = |o: &mut JvmOptions, name: &'static str| {
        if let Some(v) = env.literal(name) {
            o.read(
                cmdline::split_options(v).iter().map(String::as_str),
                name,
                false,
            );
        }
    };
    var(&mut o, "JAVA_TOOL_OPTIONS");
    var(&mut o, "JDK_JAVA_OPTIONS");
    // JAVA_OPTS and its kin are no JVM variables: the image's scripts pass them on. A java
    // command line in the spec passes them only where it names them (expanded there
    // already).
    if unknown {
        for (name, elasticsearch) in LAUNCHER_JVM_VARS {
            if env.literal(name).is_some() {
                s.elasticsearch |= elasticsearch;
                var(&mut o, name);
            }
        }
        for (name, flag) in LAUNCHER_HEAP_VARS {
            if let Some(v) = env.literal(name).map(str::trim).filter(|v| !v.is_empty()) {
                let opt = format!("{flag}{v}");
                o.read(std::iter::once(opt.as_str()), name, false);
            }
        }
    }
    if inv.program == Program::Java {
        o.read(inv.args.iter().map(|a| a.as_ref()), "args", true);
    }
    var(&mut o, "_JAVA_OPTIONS");
    s.unread.append(&mut o.arg_files);
    if o.seen || inv.program == Program::Java {
        s.jvm = Some(o);
    }
}

/// Node's `--max-old-space-size`, from NODE_OPTIONS and the command line.
fn node_old_space(env: &Env<'_>, inv: &Invocation<'_>) -> Option<Set<u64>> {
    let mut old_space = None;
    let mut opts: Vec<String> = env
        .literal("NODE_OPTIONS")
        .map(cmdline::split_options)
        .unwrap_or_default();
    // Command-line options come after NODE_OPTIONS and win; they end at the script.
    if inv.program == Program::Node {
        opts.extend(
            inv.args
                .iter()
                .take_while(|a| a.starts_with('-'))
                .map(|a| a.to_string()),
        );
        // `--max-old-space-size 2048`: the value is the next word.
        if let Some(i) = inv.args.iter().position(|a| is_old_space(a)) {
            if let Some(v) = inv.args.get(i + 1) {
                opts.push(format!("{}={v}", inv.args[i]));
            }
        }
    }
    for o in &opts {
        if let Some((flag, v)) = o.split_once('=') {
            if is_old_space(flag) {
                if let Some(mib) = v.parse::<u64>().ok().and_then(|m| m.checked_mul(MI)) {
                    old_space = Some(Set {
                        value: mib,
                        text: o.clone(),
                    });
                }
            }
        }
    }
    old_space
}

/// redis-server's `--maxmemory` (its config file is named, not read).
fn redis_settings(inv: &Invocation<'_>, s: &mut Settings) {
    let mut args = inv.args.iter().peekable();
    if let Some(conf) = args.next_if(|a| !a.starts_with("--")) {
        s.unread.push(format!("redis config file {conf}"));
    }
    while let Some(a) = args.next() {
        // `"--maxmemory 1gb"` as one argument: redis-server joins its arguments into one
        // config text, so it reads the same.
        if let Some(v) = a.strip_prefix("--maxmemory ").map(str::trim) {
            if let Some(b) = redis_size(v) {
                s.redis_maxmemory = (b > 0).then(|| Set {
                    value: b,
                    text: format!("maxmemory {v}"),
                });
            }
            continue;
        }
        if a == "--maxmemory" {
            if let Some(v) = args.next() {
                if let Some(b) = redis_size(v) {
                    s.redis_maxmemory = (b > 0).then(|| Set {
                        value: b,
                        text: format!("maxmemory {v}"),
                    });
                }
            }
        }
    }
}

/// GOMEMLIMIT, literal or from the container's resources.
fn go_limit(env: &Env<'_>) -> Option<GoLimit> {
    match env.get("GOMEMLIMIT") {
        Some(Value::Literal(v)) if v.as_ref() == "off" || v.is_empty() => None,
        Some(Value::Literal(v)) => Some(match go_size(v) {
            Some(b) => GoLimit::Bytes(Set {
                value: b,
                text: format!("GOMEMLIMIT={v}"),
            }),
            None => GoLimit::Malformed(v.to_string()),
        }),
        Some(Value::Resource { resource, divisor }) => {
            let divisor = match divisor {
                None => Some(1),
                Some(d) => crate::quantity::parse_bytes(d).ok().filter(|d| *d > 0),
            };
            divisor.map(|divisor| GoLimit::Resource {
                resource: resource.to_string(),
                divisor,
            })
        }
        _ => None,
    }
}

/// .NET's GC heap hard limit, in bytes or as a percentage.
fn dotnet_limit(env: &Env<'_>) -> Option<DotnetLimit> {
    // DOTNET_ before the older COMPlus_ prefix; the limit in bytes before the percentage,
    // which counts only from 1 to 99 (hex 0x1 to 0x63).
    let var = |name: &str| {
        env.literal(&format!("DOTNET_{name}"))
            .map(|v| (format!("DOTNET_{name}"), v))
            .or_else(|| {
                env.literal(&format!("COMPlus_{name}"))
                    .map(|v| (format!("COMPlus_{name}"), v))
            })
    };
    let hex = |v: &str| {
        let v = v.trim();
        let v = v
            .strip_prefix("0x")
            .or_else(|| v.strip_prefix("0X"))
            .unwrap_or(v);
        u64::from_str_radix(v, 16).ok()
    };
    match var("GCHeapHardLimit").and_then(|(n, v)| Some((n, v, hex(v)?))) {
        Some((n, v, b)) if b > 0 => Some(DotnetLimit::Bytes(Set {
            value: b,
            text: format!("{n}={v}"),
        })),
        _ => var("GCHeapHardLimitPercent")
            .and_then(|(n, v)| Some((n, v, hex(v)?)))
            .filter(|(_, _, p)| (1..100).contains(p))
            .map(|(n, v, p)| {
                DotnetLimit::Percent(Set {
                    value: p,
                    text: format!("{n}={v}"),
                })
            }),
    }
}

fn is_old_space(flag: &str) -> bool {
    flag == "--max-old-space-size" || flag == "--max_old_space_size"
}

/// Redis' memory units: `1k` = 1000, `1kb` = 1024, `1m` = 10^6, `1mb` = 1024^2, `1g` = 10^9,
/// `1gb` = 1024^3, any case; a bare number is bytes (`memtoll`).
pub fn redis_size(s: &str) -> Option<u64> {
    let lower = s.trim().to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (num, unit) = lower.split_at(digits_end);
    let mult: u64 = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1_000_000,
        "mb" => 1024 * 1024,
        "g" => 1_000_000_000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    if num.is_empty() {
        return None;
    }
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// Go's `GOMEMLIMIT` grammar: `^[0-9]+(([KMGT]i)?B)?$` (runtime `parseByteCount`).
pub fn go_size(s: &str) -> Option<u64> {
    let (num, mult) = if let Some(n) = s.strip_suffix("KiB") {
        (n, 1u64 << 10)
    } else if let Some(n) = s.strip_suffix("MiB") {
        (n, 1 << 20)
    } else if let Some(n) = s.strip_suffix("GiB") {
        (n, 1 << 30)
    } else if let Some(n) = s.strip_suffix("TiB") {
        (n, 1 << 40)
    } else if let Some(n) = s.strip_suffix('B') {
        (n, 1)
    } else {
        (s, 1)
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v = num.parse::<u64>().ok()?.checked_mul(mult)?;
    (v <= i64::MAX as u64).then_some(v)
}

/// How sure a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Certainty {
    /// The estimate of what the runtime uses besides its setting does not fit: likely an OOM.
    Likely,
    /// The setting alone reaches the limit: an OOM once it is used as configured.
    Certain,
}

/// One thing the configuration gets wrong, as one warning line with the numbers and the fix.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub certainty: Certainty,
    /// `container NAME: ...`, at most [`LINE_BUDGET`] characters when the name allows.
    pub line: String,
}

/// What is left of a 120-character warning line after the webhook's `oomguard: ` prefix.
pub const LINE_BUDGET: usize = 110;

/// The configuration weighed against the limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Analysis {
    pub findings: Vec<Finding>,
    /// The smallest limit the configuration fits in (its runtime's needs plus its memory
    /// volumes), bytes; None when that cannot be told (nothing set, or no limit would do: a heap
    /// of 90% of whatever the limit is).
    pub needs: Option<u64>,
    /// How `needs` comes about (`-Xmx2g + ~512Mi non-heap`), for a container without a limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explain: Option<String>,
    /// The memory settings read (`-Xmx1536m (args)`), for the record.
    pub settings: Vec<String>,
    /// Values that could decide memory but were not read (ConfigMaps, Secrets, files).
    pub unread: Vec<String>,
}

impl Analysis {
    pub fn certain(&self) -> bool {
        self.findings
            .iter()
            .any(|f| f.certainty == Certainty::Certain)
    }

    pub fn is_empty(&self) -> bool {
        self.findings.is_empty()
            && self.needs.is_none()
            && self.settings.is_empty()
            && self.unread.is_empty()
    }
}

/// One runtime's needs, weighed.
struct Need {
    /// Short name for a line that adds volumes (`JVM`).
    runtime: &'static str,
    /// The setting as written, with where it came from (`heap -Xmx2g (_JAVA_OPTIONS)`).
    what: String,
    /// The same without where it came from, for a line that is short of room.
    what_plain: String,
    /// The setting's bytes at the current limit.
    setting: u64,
    /// What the runtime needs at the current limit.
    needs_now: u64,
    /// The smallest limit it fits in.
    floor: Option<u64>,
    /// The arithmetic (`+384Mi non-heap`).
    model: String,
    /// How `needs` comes about without a limit (`-Xmx2g + ~512Mi non-heap`).
    explain: String,
    /// The setting's own fix at the current limit (`-Xmx <= 1228m`).
    fix: Option<String>,
    /// The setting alone reaches the limit.
    certain: bool,
    /// Shown in `settings`.
    record: String,
}

/// Weighs the settings against the limit (`limit_text` as the manifest writes it).
pub fn analyse(
    container: &str,
    spec: &RuntimeSpec,
    limit: Option<u64>,
    limit_text: &str,
    request: Option<u64>,
) -> Analysis {
    let s = settings(spec);
    analyse_settings(container, &s, limit, limit_text, request)
}

fn analyse_settings(
    container: &str,
    s: &Settings,
    limit: Option<u64>,
    limit_text: &str,
    request: Option<u64>,
) -> Analysis {
    let mut a = Analysis {
        unread: s.unread.clone(),
        ..Analysis::default()
    };
    let needs = runtime_needs(container, s, limit, request, &mut a);

    for n in &needs {
        a.settings.push(n.record.clone());
    }
    for v in &s.volumes {
        a.settings.push(match v.size_limit {
            Some(b) => format!(
                "emptyDir {} (medium: Memory) sizeLimit {}",
                v.name,
                format_bytes(b as f64)
            ),
            None => format!("emptyDir {} (medium: Memory) without sizeLimit", v.name),
        });
    }

    // The runtime: the largest need, if any.
    let runtime = needs.iter().max_by_key(|n| n.floor.unwrap_or(n.needs_now));
    let volumes: u64 = s.volumes.iter().filter_map(|v| v.size_limit).sum();
    let volume_certain = limit.is_some_and(|l| {
        s.volumes
            .iter()
            .any(|v| v.size_limit.is_some_and(|b| b >= l))
    });

    if let Some(l) = limit {
        for n in &needs {
            if n.needs_now > l {
                a.findings.push(Finding {
                    certainty: if n.certain {
                        Certainty::Certain
                    } else {
                        Certainty::Likely
                    },
                    line: need_line(container, n, l, limit_text),
                });
            }
        }
        volume_findings(container, s, l, limit_text, runtime, volumes, &mut a);
        // The runtime fits alone, not with its volumes.
        if let Some(r) = runtime.filter(|_| volumes > 0 && !volume_certain) {
            runtime_with_volumes(container, s, r, l, limit_text, volumes, &mut a);
        }
    }

    // The smallest limit the whole configuration fits in.
    a.needs = match runtime {
        Some(r) => r.floor.map(|f| f.saturating_add(volumes)),
        None if volume_certain => limit.map(|l| l.saturating_add(volumes)),
        None if volumes > 0 => Some(volumes),
        None => None,
    };
    if limit.is_none() {
        a.explain = runtime.filter(|r| r.floor.is_some()).map(|r| {
            if volumes > 0 {
                format!(
                    "{} + memory emptyDirs {}",
                    r.explain,
                    format_bytes(volumes as f64)
                )
            } else {
                r.explain.clone()
            }
        });
    }
    a
}

/// What each runtime's settings need (GOMEMLIMIT that does not parse is a finding of its own).
fn runtime_needs(
    container: &str,
    s: &Settings,
    limit: Option<u64>,
    request: Option<u64>,
    a: &mut Analysis,
) -> Vec<Need> {
    let mut needs: Vec<Need> = Vec::new();
    if let Some(o) = &s.jvm {
        needs.extend(jvm_need(o, s.elasticsearch, limit));
    }
    if let Some(set) = &s.node_old_space {
        needs.push(share_need("Node", set, 0.75, limit, |cap| {
            format!("--max-old-space-size <= {}", cap / MI)
        }));
    }
    if let Some(set) = &s.redis_maxmemory {
        needs.push(share_need("Redis", set, 0.75, limit, |cap| {
            format!("maxmemory <= {}mb", cap / MI)
        }));
    }
    match &s.go_limit {
        Some(GoLimit::Bytes(set)) => needs.push(go_need(set, s.go_gc_off, limit)),
        Some(GoLimit::Resource { resource, divisor }) => {
            let base = match resource.as_str() {
                "limits.memory" => limit,
                "requests.memory" => request,
                _ => None,
            };
            if let Some(b) = base {
                let set = Set {
                    value: b.div_ceil(*divisor),
                    text: format!("GOMEMLIMIT ({resource})"),
                };
                needs.push(go_need(&set, s.go_gc_off, limit));
            }
        }
        Some(GoLimit::Malformed(v)) => {
            a.settings.push(format!("GOMEMLIMIT={v}"));
            a.findings.push(Finding {
                certainty: Certainty::Likely,
                line: fit(&[format!(
                    "container {container}: GOMEMLIMIT={v} is not Go's syntax (e.g. 1536MiB): the Go runtime exits at start"
                )]),
            });
        }
        None => {}
    }
    match &s.dotnet {
        Some(DotnetLimit::Bytes(set)) => needs.push(share_need(".NET", set, 0.75, limit, |cap| {
            format!("GCHeapHardLimit <= {:#X}", cap / MI * MI)
        })),
        Some(DotnetLimit::Percent(p)) => {
            if let Some(l) = limit {
                let set = Set {
                    value: (u128::from(l) * u128::from(p.value) / 100) as u64,
                    // `50` is 0x50: 80%.
                    text: if p.text.contains("=0x") || p.text.contains("=0X") {
                        p.text.clone()
                    } else {
                        format!("{} (hex)", p.text)
                    },
                };
                // The percentage scales with the limit: only a smaller one fixes it.
                let mut n = share_need(".NET", &set, 0.75, limit, |_| {
                    "GCHeapHardLimitPercent <= 0x4B".to_string()
                });
                n.floor = None;
                needs.push(n);
            }
        }
        None => {}
    }
    needs
}

/// Findings about memory-backed emptyDirs at limit `l`: a sizeLimit at or above it, or none.
fn volume_findings(
    container: &str,
    s: &Settings,
    l: u64,
    limit_text: &str,
    runtime: Option<&Need>,
    volumes: u64,
    a: &mut Analysis,
) {
    for v in &s.volumes {
        let whats = [
            format!("emptyDir {} (medium: Memory)", v.name),
            format!("emptyDir {} (Memory)", v.name),
        ];
        match v.size_limit {
            Some(b) if b >= l => {
                let app = runtime.map_or(l, |r| r.floor.unwrap_or(r.needs_now));
                let to = to_quantity(round_up_mi((app + volumes) as f64));
                let (size, p) = (format_bytes(b as f64), pct(b, l));
                let mut c: Vec<String> = whats
                    .iter()
                    .map(|what| format!(
                        "container {container}: {what} sizeLimit {size} is {p}% of limit {limit_text}; its files are memory: limit >= {to} or a smaller sizeLimit"
                    ))
                    .collect();
                c.extend(whats.iter().map(|what| {
                    format!("container {container}: {what} sizeLimit {size} is {p}% of limit {limit_text}; limit >= {to}")
                }));
                a.findings.push(Finding {
                    certainty: Certainty::Certain,
                    line: fit(&c),
                });
            }
            Some(_) => {}
            None => {
                let mut c: Vec<String> = whats
                    .iter()
                    .map(|what| format!(
                        "container {container}: {what} without sizeLimit: its files count against limit {limit_text}; set one"
                    ))
                    .collect();
                c.extend(whats.iter().map(|what| {
                    format!("container {container}: {what} without sizeLimit; set one below limit {limit_text}")
                }));
                a.findings.push(Finding {
                    certainty: Certainty::Likely,
                    line: fit(&c),
                });
            }
        }
    }
}

/// The runtime's need fits limit `l` alone, not with the memory emptyDirs beside it.
fn runtime_with_volumes(
    container: &str,
    s: &Settings,
    r: &Need,
    l: u64,
    limit_text: &str,
    volumes: u64,
    a: &mut Analysis,
) {
    let total = r.needs_now.saturating_add(volumes);
    if r.needs_now <= l && total > l {
        let names: Vec<&str> = s
            .volumes
            .iter()
            .filter(|v| v.size_limit.is_some())
            .map(|v| v.name.as_str())
            .collect();
        let to = to_quantity(round_up_mi(total as f64));
        a.findings.push(Finding {
            certainty: Certainty::Likely,
            line: fit(&[
                format!(
                    "container {container}: {} ~{} + emptyDir {} {} = {} is {}% of limit {limit_text}; limit >= {to}",
                    r.runtime,
                    format_bytes(r.needs_now as f64),
                    names.join("+"),
                    format_bytes(volumes as f64),
                    format_bytes(total as f64),
                    pct(total, l)
                ),
                format!(
                    "container {container}: {} + memory emptyDirs need {}, {}% of limit {limit_text}; limit >= {to}",
                    r.runtime,
                    format_bytes(total as f64),
                    pct(total, l)
                ),
            ]),
        });
    }
}

/// The line of a runtime's finding: the setting against the limit, the arithmetic, the fix —
/// the longest form that fits the warning budget, dropping the least useful words first: the
/// word "limit" before the limit, then the other fix, then the arithmetic; where the setting
/// came from stays longest (the user must find it). Built one at a time: the first usually fits.
fn need_line(container: &str, n: &Need, limit: u64, limit_text: &str) -> String {
    let p = pct(n.setting, limit);
    let to = n
        .floor
        .map(|f| format!("limit >= {}", to_quantity(round_up_mi(f as f64))));
    let fixes: Vec<String> = match (&to, &n.fix) {
        (Some(to), Some(fix)) => vec![format!("{to} or {fix}"), to.clone()],
        (Some(to), None) => vec![to.clone()],
        (None, Some(fix)) => vec![fix.clone()],
        (None, None) => vec![],
    };
    let mut last = format!(
        "container {container}: {} is {p}% of limit {limit_text}; {}",
        n.what, n.model
    );
    for what in [&n.what, &n.what_plain] {
        for model in [true, false] {
            for fix in &fixes {
                for of in ["of limit ", "of "] {
                    last = if model {
                        format!(
                            "container {container}: {what} is {p}% {of}{limit_text}; {}: {fix}",
                            n.model
                        )
                    } else {
                        format!("container {container}: {what} is {p}% {of}{limit_text}; {fix}")
                    };
                    if last.chars().count() <= LINE_BUDGET {
                        return last;
                    }
                }
            }
        }
    }
    last
}

/// The first candidate within the line budget, else the last (the webhook shortens it).
fn fit(candidates: &[String]) -> String {
    candidates
        .iter()
        .find(|c| c.chars().count() <= LINE_BUDGET)
        .or(candidates.last())
        .cloned()
        .unwrap_or_default()
}

/// `x` as a whole percentage of `of`; below 100 unless it reaches it.
fn pct(x: u64, of: u64) -> u64 {
    if of == 0 {
        return 0;
    }
    let p = (x as f64 * 100.0 / of as f64).round() as u64;
    if x < of {
        p.min(99)
    } else {
        p.max(100)
    }
}

/// The words of a line, built only when a line is made (a finding, or a missing limit to
/// explain): most configurations are sound and need none.
fn describe(needs_now: u64, limit: Option<u64>) -> bool {
    limit.is_none_or(|l| needs_now > l)
}

/// `text (source)`, or `text` alone from the command line.
fn label(text: &str, source: &str) -> String {
    match source {
        "" | "args" => text.to_string(),
        s => format!("{text} ({s})"),
    }
}

/// The JVM: heap plus the non-heap estimate (Elasticsearch: twice the heap, its own rule).
fn jvm_need(o: &JvmOptions, elasticsearch: bool, limit: Option<u64>) -> Option<Need> {
    let heap = o.heap(limit)?;
    let needs_of = |h: u64| {
        let jvm = h.saturating_add(o.non_heap(h));
        if elasticsearch {
            jvm.max(h.saturating_mul(2))
        } else {
            jvm
        }
    };
    let needs_now = needs_of(heap.bytes);
    let non_heap = needs_now.saturating_sub(heap.bytes);
    let floor = match &heap.how {
        HeapFrom::Explicit { .. } | HeapFrom::MaxRam { .. } => Some(needs_now),
        // The heap scales with the limit: the smallest limit that fits, if one does.
        HeapFrom::Percentage { .. } => {
            limit.and_then(|l| smallest(l, |l| o.scaled_heap(l).is_some_and(|h| needs_of(h) <= l)))
        }
    };
    let (text, source) = match &heap.how {
        HeapFrom::Explicit { text, source }
        | HeapFrom::MaxRam { text, source }
        | HeapFrom::Percentage { text, source, .. } => (text.as_str(), *source),
    };
    let mut n = Need {
        runtime: if elasticsearch {
            "Elasticsearch"
        } else {
            "JVM"
        },
        certain: limit.is_some_and(|l| heap.bytes >= l),
        setting: heap.bytes,
        what: String::new(),
        what_plain: String::new(),
        needs_now,
        floor,
        model: String::new(),
        explain: String::new(),
        fix: None,
        record: label(text, source),
    };
    if !describe(needs_now, limit) {
        return Some(n);
    }
    n.model = if elasticsearch {
        "ES needs 2x heap".to_string()
    } else {
        format!("+{} non-heap", format_bytes(non_heap as f64))
    };
    // The largest heap that fits a limit, in whole MiB.
    let max_heap = |l: u64| largest(l / MI, |h| needs_of(h * MI) <= l).map(|h| h * MI);
    match &heap.how {
        HeapFrom::Explicit { .. } => {
            n.what = format!("heap {}", label(text, source));
            n.what_plain = format!("heap {text}");
        }
        HeapFrom::MaxRam { .. } => {
            let b = format_bytes(heap.bytes as f64);
            n.what = format!("heap {b} ({})", label(text, source));
            n.what_plain = format!("heap {b} ({text})");
        }
        HeapFrom::Percentage { .. } => {
            let flag = text.trim_start_matches("-XX:");
            let b = format_bytes(heap.bytes as f64);
            n.what = match source {
                "" | "args" => format!("heap {b} ({flag})"),
                s => format!("heap {b} ({s} {flag})"),
            };
            n.what_plain = format!("heap {b} ({flag})");
            n.fix = limit.and_then(|l| {
                largest(100, |p| needs_of((l as f64 * p as f64 / 100.0) as u64) <= l)
                    .map(|p| format!("MaxRAMPercentage <= {p}"))
            });
        }
    }
    if !matches!(heap.how, HeapFrom::Percentage { .. }) {
        n.fix = limit
            .and_then(max_heap)
            .map(|h| format!("-Xmx <= {}m", h / MI));
        n.explain = format!("{text} + ~{} non-heap", format_bytes(non_heap as f64));
    }
    Some(n)
}

/// A runtime whose setting may take at most `share` of the limit (Node's old space, Redis'
/// maxmemory, .NET's GC heap limit): needs = setting / share.
fn share_need(
    runtime: &'static str,
    set: &Set<u64>,
    share: f64,
    limit: Option<u64>,
    fix: impl Fn(u64) -> String,
) -> Need {
    let needs_now = (set.value as f64 / share).ceil() as u64;
    let mut n = Need {
        runtime,
        what: String::new(),
        what_plain: String::new(),
        setting: set.value,
        needs_now,
        floor: Some(needs_now),
        model: String::new(),
        explain: String::new(),
        fix: None,
        certain: limit.is_some_and(|l| set.value >= l),
        record: set.text.clone(),
    };
    if describe(needs_now, limit) {
        n.what = set.text.clone();
        n.what_plain = set.text.clone();
        n.model = format!("{}% max", (share * 100.0).round());
        n.explain = format!(
            "{} + ~{} for the rest",
            set.text,
            format_bytes(needs_now.saturating_sub(set.value) as f64)
        );
        n.fix = limit
            .map(|l| (l as f64 * share) as u64)
            .filter(|cap| *cap >= MI)
            .map(fix);
    }
    n
}

/// `GOMEMLIMIT`: Go's GC guide leaves 5-10% of the container for memory the runtime does not
/// manage; above 90% of the limit it cannot keep the process under it. With `GOGC=off` the heap
/// grows to the limit before any collection: at or above the container's limit, certain.
fn go_need(set: &Set<u64>, gc_off: bool, limit: Option<u64>) -> Need {
    let mut n = share_need("Go", set, 0.9, limit, |cap| {
        format!("GOMEMLIMIT <= {}MiB", cap / MI)
    });
    n.certain = gc_off && n.certain;
    if describe(n.needs_now, limit) {
        n.model = "10% headroom".to_string();
        n.explain = format!("{} + 10% headroom", set.text);
        if gc_off {
            n.what = format!("{} with GOGC=off", set.text);
            n.what_plain = n.what.clone();
        }
    }
    n
}

/// The largest `x` in `0..=hi` with `ok(x)`, for `ok` true up to some point and false after.
fn largest(hi: u64, ok: impl Fn(u64) -> bool) -> Option<u64> {
    if !ok(0) {
        return None;
    }
    let (mut lo, mut hi) = (0, hi);
    if ok(hi) {
        return Some(hi);
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if ok(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(lo)
}

/// The smallest limit from `from` up (in whole MiB) with `ok`, searching up to 1 PiB.
fn smallest(from: u64, ok: impl Fn(u64) -> bool) -> Option<u64> {
    let from = round_up_mi(from as f64).max(MI);
    if ok(from) {
        // Already fits: nothing above `from` is needed; find the least fitting below it.
        let mut lo = MI;
        let mut hi = from;
        if ok(lo) {
            return Some(lo);
        }
        while hi - lo > MI {
            let mid = (lo + (hi - lo) / 2) / MI * MI;
            if ok(mid) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        return Some(hi);
    }
    let mut hi = from;
    let mut lo = from;
    while !ok(hi) {
        lo = hi;
        hi = hi.checked_mul(2)?;
        if hi > 1 << 50 {
            return None;
        }
    }
    while hi - lo > MI {
        let mid = (lo + (hi - lo) / 2) / MI * MI;
        if ok(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}
