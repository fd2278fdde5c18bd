//! The serving certificate: rustls (TLS 1.2 and 1.3, ring), re-read when the files change.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate; pass the serving certificate (e.g. certs/tls.crt from `oomguard certs`)")]
    NoCertificate { path: String },
    #[error("{path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1); pass e.g. certs/tls.key")]
    NoKey { path: String },
    #[error("{path}: bad PEM: {message}")]
    Pem { path: String, message: String },
    #[error("certificate and key do not fit together: {0}")]
    Rustls(#[from] rustls::Error),
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// Reads both files and builds a server configuration (HTTP/1.1 by ALPN).
    pub fn load(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let certs = read_certs(&self.cert)?;
        let key = read_key(&self.key)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// The serving certificate as axum-server's config, re-read whenever the files change (a renewed
/// Secret). `on_reload` hears each reload's result (metrics); a failed reload keeps the previous
/// certificate in use. Shared by the webhook and the API listener.
pub fn reloading_config(
    files: &TlsFiles,
    on_reload: impl Fn(Result<(), &TlsError>) + Send + 'static,
) -> anyhow::Result<axum_server::tls_rustls::RustlsConfig> {
    let config = axum_server::tls_rustls::RustlsConfig::from_config(files.load()?);
    let cert_watch = super::watch::watch(
        &[files.cert.clone(), files.key.clone()],
        Duration::from_millis(300),
    )?;
    let (files, reload) = (files.clone(), config.clone());
    tokio::spawn(async move {
        // The whole Watch moves here: the watcher stops when it is dropped.
        let mut watch = cert_watch;
        while watch.changes.recv().await.is_some() {
            match files.load() {
                Ok(cfg) => {
                    reload.reload_from_config(cfg);
                    on_reload(Ok(()));
                    tracing::info!(cert = %files.cert.display(), "serving certificate reloaded");
                }
                Err(e) => {
                    on_reload(Err(&e));
                    tracing::error!(error = %e, "serving certificate not reloaded; the previous one stays in use");
                }
            }
        }
    });
    Ok(config)
}

/// How long a connection may wait for a request's headers, and (hyper uses one timer for both)
/// how long an idle keep-alive connection stays open between requests. Closing an idle connection
/// is race-free only when the client closes first: kube-apiserver's webhook client keeps idle
/// connections for 90 s (Go's `IdleConnTimeout`) and may send the next review on one the server is
/// just closing, which then fails as an EOF. With 10 s this happened (a Python client in the suite
/// saw it too), so the server now waits longer than the clients. A client that sends nothing at
/// all is still dropped after axum-server's 10-s TLS handshake timeout.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// An HTTPS listener as oomguard runs them: HTTP/1.1 only, [`IDLE_TIMEOUT`] for the headers and
/// between requests.
pub fn bind(
    addr: SocketAddr,
    config: axum_server::tls_rustls::RustlsConfig,
    handle: axum_server::Handle<SocketAddr>,
) -> axum_server::Server<SocketAddr, axum_server::tls_rustls::RustlsAcceptor> {
    let mut server = axum_server::bind_rustls(addr, config)
        .handle(handle)
        .http1_only();
    server
        .http_builder()
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(IDLE_TIMEOUT);
    server
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut bytes.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.display().to_string(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    rustls_pemfile::private_key(&mut bytes.as_slice())
        .map_err(|e| TlsError::Pem {
            path: path.display().to_string(),
            message: e.to_string(),
        })?
        .ok_or_else(|| TlsError::NoKey {
            path: path.display().to_string(),
        })
}
