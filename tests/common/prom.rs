//! A real Prometheus for tests and benchmarks: backfill OpenMetrics with promtool, start
//! `prometheus` on a free loopback port, wait until the data is queryable, stop it on drop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

const INSTALL: &str = "the Prometheus test harness needs Debian's prometheus package \
     (prometheus and promtool in /usr/bin): run `apt-get install -y prometheus`";

/// Finds a binary or panics with the install instruction (tests must fail, not skip).
pub fn binary(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/bin"] {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("{name} not found: {INSTALL}");
}

/// Real now, minus enough that backfilled data stays out of Prometheus' head block range
/// (promtool refuses nothing, but Prometheus only queries blocks; the head covers the last
/// ~3 hours), rounded down to a 5-minute boundary.
pub fn data_end() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let end = now - 4 * 3600;
    end - end.rem_euclid(300)
}

/// Runs promtool on one OpenMetrics file (which must end with `# EOF`) into `out`.
pub fn create_blocks(input: &Path, out: &Path) {
    std::fs::create_dir_all(out).unwrap();
    let output = Command::new(binary("promtool"))
        .args(["tsdb", "create-blocks-from", "openmetrics", "--quiet"])
        // One block per day instead of per 2 hours: fewer blocks to open and search.
        .arg("--max-block-duration=24h")
        .arg(input)
        .arg(out)
        .output()
        .unwrap_or_else(|e| panic!("cannot run promtool: {e}; {INSTALL}"));
    assert!(
        output.status.success(),
        "promtool failed on {}: {}{}",
        input.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running Prometheus. It runs under a small shell that kills it when our end of its stdin
/// closes, so that it also stops when the test process exits without running destructors
/// (a shared instance in a `static`).
pub struct Prometheus {
    pub url: String,
    pub port: u16,
    shell: Child,
    stdin: Option<ChildStdin>,
    _config_dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus on `data` (a TSDB directory) and waits until it is ready.
    pub fn start(data: &Path, extra_args: &[&str]) -> Prometheus {
        Self::start_on(data, free_port(), extra_args)
    }

    /// The same on a given port (a restart where the old one ran).
    pub fn start_on(data: &Path, port: u16, extra_args: &[&str]) -> Prometheus {
        let prom = binary("prometheus");
        let config_dir = tempfile::tempdir().unwrap();
        let config = config_dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            "global:\n  scrape_interval: 1h\nscrape_configs: []\n",
        )
        .unwrap();
        let mut args: Vec<String> = vec![
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", data.display()),
            "--storage.tsdb.retention.time=10y".into(),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--log.level=warn".into(),
        ];
        args.extend(extra_args.iter().map(|s| s.to_string()));
        let log = config_dir.path().join("prometheus.log");
        let mut shell = Command::new("/bin/sh")
            .arg("-c")
            .arg(r#"log="$1"; shift; "$@" 2>"$log" & p=$!; read _; kill $p; wait $p"#)
            .arg("sh")
            .arg(&log)
            .arg(&prom)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start prometheus: {e}; {INSTALL}"));
        let stdin = shell.stdin.take();
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = shell.try_wait() {
                panic!(
                    "prometheus exited ({status}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if http_get(port, "/-/ready").is_some_and(|(code, _)| code == 200) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready after 60 s: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Prometheus {
            url,
            port,
            shell,
            stdin,
            _config_dir: config_dir,
        }
    }

    /// Waits until an instant query at `at` returns a non-empty result.
    pub fn wait_queryable(&self, query: &str, at: i64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let path = format!("/api/v1/query?query={}&time={at}", urlencode(query));
        loop {
            if let Some((200, body)) = http_get(self.port, &path) {
                if body.contains("\"result\":[{") {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "backfilled data not queryable: {query} at {at}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The pid of the prometheus process itself (the shell's child), for signals.
    pub fn pid(&self) -> u32 {
        let shell = self.shell.id();
        let children =
            std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).unwrap();
        children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .expect("prometheus runs under its shell")
    }

    /// Stops Prometheus and waits for it.
    pub fn stop(&mut self) {
        self.stdin.take();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.shell.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.shell.kill();
        let _ = self.shell.wait();
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A minimal blocking HTTP/1.0 GET on loopback: (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut r = BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status).ok()?;
    let code = status.split_whitespace().nth(1)?.parse().ok()?;
    let mut body = String::new();
    let mut in_body = false;
    for line in r.lines() {
        let line = line.ok()?;
        if in_body {
            body.push_str(&line);
            body.push('\n');
        } else if line.is_empty() {
            in_body = true;
        }
    }
    Some((code, body))
}
