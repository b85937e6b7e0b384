//! The HTTPS server: `POST /validate` and `/mutate` (AdmissionReview v1),
//! `GET /healthz` and `/readyz`, and `/metrics` on a separate plain-HTTP
//! port. TLS files are reloaded when they change; shutdown drains
//! in-flight reviews.

pub mod handlers;
pub mod state;
pub mod tls;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

pub use state::AppState;
pub use tls::TlsFiles;

/// Kubernetes caps request bodies at 3 MiB; a review can hardly be larger.
pub const DEFAULT_BODY_LIMIT: usize = 3 * 1024 * 1024;

/// Where and how to serve.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub tls: TlsFiles,
    pub body_limit: usize,
    /// How often certificate files are checked for changes.
    pub tls_reload_interval: Duration,
    /// How long in-flight reviews may take to finish on shutdown.
    pub shutdown_grace: Duration,
}

/// The admission router (HTTPS port).
pub fn admission_router(state: AppState, body_limit: usize) -> Router {
    Router::new()
        .route("/validate", post(handlers::validate))
        .route("/mutate", post(handlers::mutate))
        .route("/healthz", get(handlers::healthz))
        .route("/readyz", get(handlers::readyz))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// The metrics router (plain-HTTP port).
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(handlers::metrics))
        .route("/healthz", get(handlers::healthz))
        .with_state(state)
}

/// A running server: its bound addresses, and a way to stop it.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    handle: axum_server::Handle<SocketAddr>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    metrics_task: tokio::task::JoinHandle<()>,
    reloader: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    /// Stops accepting, lets in-flight reviews finish within the grace
    /// period, and waits for the server to end.
    pub async fn shutdown(self, grace: Duration) -> crate::Result<()> {
        self.handle.graceful_shutdown(Some(grace));
        self.reloader.abort();
        self.metrics_task.abort();
        match self.task.await {
            Ok(r) => r.map_err(crate::Error::Io),
            Err(e) => Err(crate::Error::Config(format!("server task failed: {e}"))),
        }
    }
}

/// Binds both ports and starts serving in the background.
pub async fn start(state: AppState, config: &ServerConfig) -> crate::Result<RunningServer> {
    let rustls = tls::load(&config.tls).await?;
    let reloader = tls::spawn_reloader(
        rustls.clone(),
        config.tls.clone(),
        config.tls_reload_interval,
    );
    let metrics_listener = tokio::net::TcpListener::bind(config.metrics_listen)
        .await
        .map_err(|e| {
            crate::Error::Config(format!(
                "binding metrics port {}: {e}",
                config.metrics_listen
            ))
        })?;
    let metrics_addr = metrics_listener.local_addr()?;
    let metrics_app = metrics_router(state.clone());
    let metrics_task = tokio::spawn(async move {
        if let Err(e) = axum::serve(metrics_listener, metrics_app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    let listener = std::net::TcpListener::bind(config.listen)
        .map_err(|e| crate::Error::Config(format!("binding {}: {e}", config.listen)))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let handle = axum_server::Handle::new();
    let app = admission_router(state, config.body_limit);
    let server = axum_server::from_tcp_rustls(listener, rustls)?.handle(handle.clone());
    let task = tokio::spawn(async move { server.serve(app.into_make_service()).await });
    Ok(RunningServer {
        addr,
        metrics_addr,
        handle,
        task,
        metrics_task,
        reloader,
    })
}
