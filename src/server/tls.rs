//! Serving certificates from files, re-read when they change, so a rotated
//! Secret (or cert-manager renewal) takes effect without a restart.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use sha2::{Digest, Sha256};

/// The certificate chain and key files (PEM).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// A hash of both files' contents: the change detector. Contents, not
    /// modification times, because Kubernetes updates mounted Secrets by
    /// swapping a symlink, which leaves the old files' times untouched.
    fn fingerprint(&self) -> std::io::Result<[u8; 32]> {
        let mut h = Sha256::new();
        h.update(std::fs::read(&self.cert)?);
        h.update([0]);
        h.update(std::fs::read(&self.key)?);
        Ok(h.finalize().into())
    }
}

/// Loads the files into a rustls configuration.
pub async fn load(files: &TlsFiles) -> crate::Result<RustlsConfig> {
    crate::ensure_crypto_provider();
    RustlsConfig::from_pem_file(&files.cert, &files.key)
        .await
        .map_err(|e| tls_error(files, e))
}

fn tls_error(files: &TlsFiles, e: std::io::Error) -> crate::Error {
    crate::Error::Config(format!(
        "loading TLS certificate {} and key {}: {e}",
        path_str(&files.cert),
        path_str(&files.key)
    ))
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// Polls the files every `interval` and reloads `config` when their
/// contents change. A pair that fails to load (say, the certificate was
/// written before the key) keeps the previous one serving and is retried.
pub fn spawn_reloader(
    config: RustlsConfig,
    files: TlsFiles,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut current = files.fingerprint().ok();
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let Ok(now) = files.fingerprint() else {
                continue;
            };
            if Some(now) == current {
                continue;
            }
            match config.reload_from_pem_file(&files.cert, &files.key).await {
                Ok(()) => {
                    tracing::info!(cert = %path_str(&files.cert), "reloaded TLS certificate");
                    current = Some(now);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "new TLS certificate not loaded yet; still serving the previous one")
                }
            }
        }
    })
}
