//! The JVM's memory options, gathered in the order HotSpot applies them (the last setting of a
//! flag wins): `JAVA_TOOL_OPTIONS`, then the command line (`JDK_JAVA_OPTIONS` is put in front
//! of it by the `java` launcher, then the image's `JAVA_OPTS`/`ES_JAVA_OPTS` convention, then
//! the options in the spec's command and args), then `_JAVA_OPTIONS`.
//!
//! The heap when no `-Xmx` is set follows `Arguments::set_heap_size`: a `MinRAMPercentage` of
//! the container's memory when that is small, else `MaxRAMPercentage` of it (25% by default),
//! never below the default `MaxHeapSize` (96M scaled for 64-bit words: 124.8 MiB).

use crate::quantity::MI;

/// HotSpot's default `MaxHeapSize` on 64-bit (`ScaleForWordSize(96*M)`).
const DEFAULT_MAX_HEAP: u64 = 130_862_280;

/// One option as set, with where it was set.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Setting<T> {
    pub(super) value: T,
    /// The option as written (`-Xmx1536m`).
    pub(super) text: String,
    /// `args`, `JAVA_TOOL_OPTIONS`, ...
    pub(super) source: &'static str,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct JvmOptions {
    pub(super) max_heap: Option<Setting<u64>>,
    pub(super) max_ram_percentage: Option<Setting<f64>>,
    pub(super) min_ram_percentage: Option<Setting<f64>>,
    pub(super) max_ram_fraction: Option<Setting<f64>>,
    pub(super) max_ram: Option<Setting<u64>>,
    pub(super) max_metaspace: Option<Setting<u64>>,
    pub(super) max_direct: Option<Setting<u64>>,
    pub(super) stack: Option<Setting<u64>>,
    /// `-XX:-UseContainerSupport`: percentages are of the node's memory.
    pub(super) no_container_support: bool,
    /// `@argfiles` (not read).
    pub(super) arg_files: Vec<String>,
    /// Any JVM memory option at all: the container runs a JVM.
    pub(super) seen: bool,
}

/// The heap the options give, and how.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Heap {
    pub(super) bytes: u64,
    /// How the heap comes about, as the message shows it.
    pub(super) how: HeapFrom,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum HeapFrom {
    /// `-Xmx` / `-XX:MaxHeapSize`, as written, and where.
    Explicit { text: String, source: &'static str },
    /// A percentage of the container's memory (`MaxRAMPercentage`, or `MinRAMPercentage` for
    /// small containers, or the 25% default), as written.
    Percentage {
        pct: f64,
        text: String,
        source: &'static str,
    },
    /// A percentage of `-XX:MaxRAM`, whatever the container's limit.
    MaxRam { text: String, source: &'static str },
}

impl JvmOptions {
    /// Reads options in order; `command_line` stops at the main class or `-jar` (the rest are the
    /// application's arguments).
    pub(super) fn read<'a>(
        &mut self,
        options: impl IntoIterator<Item = &'a str>,
        source: &'static str,
        command_line: bool,
    ) {
        let mut it = options.into_iter();
        while let Some(o) = it.next() {
            if command_line {
                if !o.starts_with('-') {
                    if let Some(file) = o.strip_prefix('@') {
                        self.arg_files.push(format!("@{file}"));
                        continue;
                    }
                    break;
                }
                match o {
                    "-jar" | "-m" | "--module" => break,
                    // Options whose value is the next argument.
                    "-cp"
                    | "-classpath"
                    | "--class-path"
                    | "-p"
                    | "--module-path"
                    | "--upgrade-module-path"
                    | "--add-modules"
                    | "--add-reads"
                    | "--add-exports"
                    | "--add-opens"
                    | "--limit-modules"
                    | "--patch-module"
                    | "--enable-native-access"
                    | "--source" => {
                        it.next();
                        continue;
                    }
                    _ => {}
                }
            }
            self.option(o, source);
        }
    }

    fn option(&mut self, o: &str, source: &'static str) {
        let set = if let Some(v) = o.strip_prefix("-Xmx") {
            put(&mut self.max_heap, size(v), o, source)
        } else if let Some(v) = o.strip_prefix("-Xss") {
            put(&mut self.stack, size(v), o, source)
        } else if let Some(xx) = o.strip_prefix("-XX:") {
            match xx.split_once('=') {
                None => match xx {
                    "-UseContainerSupport" => {
                        self.no_container_support = true;
                        true
                    }
                    "+UseContainerSupport" => {
                        self.no_container_support = false;
                        false
                    }
                    _ => false,
                },
                Some(("MaxHeapSize", v)) => put(&mut self.max_heap, size(v), o, source),
                Some(("MaxRAMPercentage", v)) => {
                    put(&mut self.max_ram_percentage, percent(v), o, source)
                }
                Some(("MinRAMPercentage", v)) => {
                    put(&mut self.min_ram_percentage, percent(v), o, source)
                }
                Some(("MaxRAMFraction", v)) => {
                    let f = v.parse::<u64>().ok().filter(|f| *f > 0).map(|f| f as f64);
                    put(&mut self.max_ram_fraction, f, o, source)
                }
                Some(("MaxRAM", v)) => put(&mut self.max_ram, size(v), o, source),
                Some(("MaxMetaspaceSize", v)) => put(&mut self.max_metaspace, size(v), o, source),
                Some(("MaxDirectMemorySize", v)) => put(&mut self.max_direct, size(v), o, source),
                // In KiB.
                Some(("ThreadStackSize", v)) => {
                    let b = v.parse::<u64>().ok().and_then(|k| k.checked_mul(1024));
                    put(&mut self.stack, b, o, source)
                }
                _ => false,
            }
        } else {
            false
        };
        self.seen |= set;
    }

    /// The maximum heap in a container with `limit` bytes (None when the options make it depend
    /// on what is not known: the node's memory).
    pub(super) fn heap(&self, limit: Option<u64>) -> Option<Heap> {
        if let Some(s) = &self.max_heap {
            return Some(Heap {
                bytes: s.value,
                how: HeapFrom::Explicit {
                    text: s.text.clone(),
                    source: s.source,
                },
            });
        }
        let phys = match (&self.max_ram, limit) {
            (Some(m), _) => m.value,
            (None, Some(l)) if !self.no_container_support => l,
            _ => return None,
        };
        let (bytes, pct, setting) = self.heap_of(phys);
        let how = match (&self.max_ram, setting) {
            (Some(m), _) => HeapFrom::MaxRam {
                text: m.text.clone(),
                source: m.source,
            },
            (None, Some(s)) => HeapFrom::Percentage {
                pct,
                text: s.text.clone(),
                source: s.source,
            },
            (None, None) => HeapFrom::Percentage {
                pct,
                text: format!("default MaxRAMPercentage={}", fmt_pct(pct)),
                source: "",
            },
        };
        Some(Heap { bytes, how })
    }

    /// `Arguments::set_heap_size` for `phys` bytes: the heap, the percentage that gave it, and
    /// the option behind that percentage (None: the default).
    fn heap_of(&self, phys: u64) -> (u64, f64, Option<&Setting<f64>>) {
        let (max_pct, max_from) = match (&self.max_ram_percentage, &self.max_ram_fraction) {
            (Some(p), _) => (p.value, Some(p)),
            (None, Some(f)) => (100.0 / f.value, Some(f)),
            (None, None) => (25.0, None),
        };
        let (min_pct, min_from) = match &self.min_ram_percentage {
            Some(p) => (p.value, Some(p)),
            None => (50.0, None),
        };
        let reasonable_min = (phys as f64 * min_pct / 100.0) as u64;
        if reasonable_min < DEFAULT_MAX_HEAP {
            (reasonable_min, min_pct, min_from)
        } else {
            let max = (phys as f64 * max_pct / 100.0) as u64;
            if max >= DEFAULT_MAX_HEAP {
                (max, max_pct, max_from)
            } else {
                let pct = DEFAULT_MAX_HEAP as f64 * 100.0 / phys as f64;
                (DEFAULT_MAX_HEAP, pct, None)
            }
        }
    }

    /// The heap for another limit, when it scales with the limit (no `-Xmx`, no `MaxRAM`).
    pub(super) fn scaled_heap(&self, limit: u64) -> Option<u64> {
        (self.max_heap.is_none() && self.max_ram.is_none() && !self.no_container_support)
            .then(|| self.heap_of(limit).0)
    }

    /// What the JVM uses besides its heap (an estimate, see docs/day-zero.md): a quarter of the heap
    /// and at least 64 MiB for metaspace, code cache, thread stacks and GC structures — the 20%
    /// of the container Red Hat's OpenJDK images leave outside a heap of MaxRAMPercentage=80 —
    /// at least MaxMetaspaceSize + 64 MiB when that is set, plus MaxDirectMemorySize when set,
    /// plus 250 threads' worth of stack beyond the 1 MiB default when -Xss is larger.
    pub(super) fn non_heap(&self, heap: u64) -> u64 {
        let mut base = (heap / 4).max(64 * MI);
        if let Some(m) = &self.max_metaspace {
            base = base.max(m.value.saturating_add(64 * MI));
        }
        let direct = self.max_direct.as_ref().map_or(0, |d| d.value);
        let stacks = self
            .stack
            .as_ref()
            .map_or(0, |s| s.value.saturating_sub(MI).saturating_mul(250));
        base.saturating_add(direct).saturating_add(stacks)
    }
}

/// Sets `slot` when `value` could be read (a value the JVM would refuse changes nothing here).
fn put<T>(slot: &mut Option<Setting<T>>, value: Option<T>, o: &str, source: &'static str) -> bool {
    match value {
        Some(value) => {
            *slot = Some(Setting {
                value,
                text: o.to_string(),
                source,
            });
            true
        }
        None => false,
    }
}

/// A JVM size: digits (or `0x` hex) with an optional `k`, `m`, `g` or `t` (powers of 1024).
pub(super) fn size(s: &str) -> Option<u64> {
    let (num, mult) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1u64 << 10),
        b'm' | b'M' => (&s[..s.len() - 1], 1 << 20),
        b'g' | b'G' => (&s[..s.len() - 1], 1 << 30),
        b't' | b'T' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    let n = match num.strip_prefix("0x").or_else(|| num.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok()?,
        None if !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit()) => num.parse().ok()?,
        None => return None,
    };
    n.checked_mul(mult)
}

fn percent(s: &str) -> Option<f64> {
    s.parse::<f64>()
        .ok()
        .filter(|p| p.is_finite() && (0.0..=100.0).contains(p))
}

/// `80`, `62.5`.
pub(super) fn fmt_pct(p: f64) -> String {
    if (p - p.round()).abs() < 1e-9 {
        format!("{}", p.round() as u64)
    } else {
        format!("{p:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantity::GI;

    fn read(parts: &[(&[&str], &'static str, bool)]) -> JvmOptions {
        let mut o = JvmOptions::default();
        for (opts, source, cl) in parts {
            o.read(opts.iter().copied(), source, *cl);
        }
        o
    }

    #[test]
    fn sizes_are_read_as_the_jvm_reads_them() {
        assert_eq!(size("1536m"), Some(1536 * MI));
        assert_eq!(size("2G"), Some(2 * GI));
        assert_eq!(size("512k"), Some(512 * 1024));
        assert_eq!(size("1073741824"), Some(GI));
        assert_eq!(size("0x40000000"), Some(GI));
        assert_eq!(size("1t"), Some(1024 * GI));
        for bad in ["", "m", "1.5g", "1gb", "-1g", "1Gi"] {
            assert_eq!(size(bad), None, "{bad}");
        }
        assert_eq!(size("99999999999999999999g"), None);
    }

    #[test]
    fn the_last_setting_wins_in_the_jvm_order() {
        // JAVA_TOOL_OPTIONS < command line (JDK_JAVA_OPTIONS first) < _JAVA_OPTIONS.
        let o = read(&[
            (&["-Xmx4g"], "JAVA_TOOL_OPTIONS", false),
            (&["-Xmx3g"], "JDK_JAVA_OPTIONS", false),
            (
                &["-Xmx2g", "-XX:MaxHeapSize=1g", "-jar", "a.jar", "-Xmx9g"],
                "args",
                true,
            ),
        ]);
        let h = o.heap(Some(8 * GI)).unwrap();
        assert_eq!(h.bytes, GI);
        assert_eq!(
            h.how,
            HeapFrom::Explicit {
                text: "-XX:MaxHeapSize=1g".into(),
                source: "args"
            }
        );
        let mut o = o;
        o.read(["-Xmx512m"], "_JAVA_OPTIONS", false);
        assert_eq!(o.heap(None).unwrap().bytes, 512 * MI);
        // Options after the main class belong to the application.
        let o = read(&[(&["-cp", "lib/*", "com.Main", "-Xmx9g"], "args", true)]);
        assert!(!o.seen && o.heap(Some(GI)).unwrap().bytes < GI);
    }

    #[test]
    fn percentages_follow_set_heap_size() {
        let pct = |opts: &[&str], limit: u64| {
            read(&[(opts, "JAVA_TOOL_OPTIONS", false)])
                .heap(Some(limit))
                .unwrap()
                .bytes
        };
        // The default: 25%, at least the default MaxHeapSize.
        assert_eq!(pct(&[], 4 * GI), GI);
        assert_eq!(pct(&[], 300 * MI), DEFAULT_MAX_HEAP);
        // Small containers: MinRAMPercentage (50%).
        assert_eq!(pct(&[], 200 * MI), 100 * MI);
        assert_eq!(
            pct(&["-XX:MaxRAMPercentage=90"], 2 * GI),
            (2.0 * GI as f64 * 0.9) as u64
        );
        assert_eq!(pct(&["-XX:MaxRAMFraction=2"], 2 * GI), GI);
        assert_eq!(pct(&["-XX:MaxRAMPercentage=100.0"], GI), GI);
        // MaxRAM replaces the container's memory.
        let o = read(&[(&["-XX:MaxRAM=8g", "-XX:MaxRAMPercentage=50"], "args", true)]);
        let h = o.heap(Some(2 * GI)).unwrap();
        assert_eq!(h.bytes, 4 * GI);
        assert!(matches!(h.how, HeapFrom::MaxRam { .. }));
        assert_eq!(o.scaled_heap(GI), None);
        // Without container support the node's memory counts: unknown.
        let o = read(&[(
            &["-XX:-UseContainerSupport", "-XX:MaxRAMPercentage=90"],
            "args",
            true,
        )]);
        assert_eq!(o.heap(Some(GI)), None);
    }

    #[test]
    fn non_heap_counts_what_is_set() {
        let o = read(&[(&["-Xmx2g"], "args", true)]);
        assert_eq!(o.non_heap(2 * GI), 512 * MI);
        assert_eq!(o.non_heap(128 * MI), 64 * MI);
        let o = read(&[(
            &[
                "-Xmx1g",
                "-XX:MaxMetaspaceSize=512m",
                "-XX:MaxDirectMemorySize=256m",
                "-Xss2m",
            ],
            "args",
            true,
        )]);
        assert_eq!(o.non_heap(GI), (576 + 256 + 250) * MI);
    }
}
