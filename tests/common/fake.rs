//! Misbehaving HTTP servers on loopback for fault tests, and a switchable TCP proxy.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How the fake server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Accepts connections and never answers.
    Hang,
    /// HTTP 500 with a plain-text body.
    Status500,
    /// HTTP 200, JSON content type, body that is not JSON.
    Garbage,
    /// A valid empty Prometheus answer (vector for /query, matrix for /query_range), after `delay`.
    EmptyOk { delay_ms: u64 },
}

pub struct FakeServer {
    pub url: String,
    pub requests: Arc<AtomicUsize>,
    mode: Arc<Mutex<Mode>>,
    /// Authorization headers received, in order.
    pub auth: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeServer {
    pub async fn start(mode: Mode) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let mode = Arc::new(Mutex::new(mode));
        let auth = Arc::new(Mutex::new(Vec::new()));
        let state = (requests.clone(), mode.clone(), auth.clone());
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                conns.spawn(serve(stream, state.clone()));
            }
        });
        FakeServer {
            url,
            requests,
            mode,
            auth,
            task,
        }
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Reads one HTTP request (headers + Content-Length body); returns its path and
/// Authorization header.
async fn read_request(stream: &mut TcpStream) -> Option<(String, Option<String>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < header_end + len {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let auth = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("authorization")
            .then(|| v.trim().to_string())
    });
    Some((head.split_whitespace().nth(1)?.to_string(), auth))
}

type State = (Arc<AtomicUsize>, Arc<Mutex<Mode>>, Arc<Mutex<Vec<String>>>);

async fn serve(mut stream: TcpStream, (counter, mode, auths): State) {
    loop {
        let Some((path, auth)) = read_request(&mut stream).await else {
            return;
        };
        counter.fetch_add(1, Ordering::SeqCst);
        if let Some(a) = auth {
            auths.lock().unwrap().push(a);
        }
        let mode = *mode.lock().unwrap();
        let (status, ctype, body) = match mode {
            Mode::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Mode::Status500 => (
                "500 Internal Server Error",
                "text/plain",
                "internal error".to_string(),
            ),
            Mode::Garbage => (
                "200 OK",
                "application/json",
                "{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[{\"metric\":".to_string(),
            ),
            Mode::EmptyOk { delay_ms } => {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                let kind = if path.contains("query_range") { "matrix" } else { "vector" };
                (
                    "200 OK",
                    "application/json",
                    format!("{{\"status\":\"success\",\"data\":{{\"resultType\":\"{kind}\",\"result\":[]}}}}"),
                )
            }
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// A TCP proxy to `target` that can be switched off (listener closed, connections cut), to
/// take a real Prometheus "down" from the client's point of view.
pub struct Proxy {
    pub url: String,
    pub connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        let task = tokio::spawn(async move {
            // Dropping the JoinSet (when this task is aborted) aborts every connection.
            let mut tasks = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tasks.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target_port)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Proxy {
            url,
            connections,
            task,
        }
    }

    /// Closes the listener and cuts every connection: further connects are refused.
    pub async fn stop(&self) {
        self.task.abort();
        // Give the runtime a moment to drop the aborted task (and the JoinSet it owns).
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
