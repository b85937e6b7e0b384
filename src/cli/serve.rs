//! `imagegate serve`: the admission webhook process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Args;

use crate::Error;
use crate::admission::review::ReviewOptions;
use crate::admission::verifier::{EngineVerifier, StaticCredentials};
use crate::engine::{CacheSettings, Engine, EngineConfig};
use crate::metrics::Metrics;
use crate::policy::FilesystemKeyResolver;
use crate::server::{self, AppState, ServerConfig, TlsFiles};

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// HTTPS address for /validate, /mutate, /healthz, /readyz.
    #[arg(long, env = "IMAGEGATE_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Plain-HTTP address for /metrics.
    #[arg(long, env = "IMAGEGATE_METRICS_LISTEN", default_value = "0.0.0.0:9090")]
    pub metrics_listen: SocketAddr,
    /// Directory of YAML files holding ClusterImagePolicy and ImagePolicy
    /// objects (no cluster needed); watched for changes.
    #[arg(long, env = "IMAGEGATE_POLICIES")]
    pub policies: PathBuf,
    /// Serving certificate chain (PEM); re-read when it changes.
    #[arg(long, env = "IMAGEGATE_TLS_CERT")]
    pub tls_cert: PathBuf,
    /// Serving key (PEM); re-read when it changes.
    #[arg(long, env = "IMAGEGATE_TLS_KEY")]
    pub tls_key: PathBuf,
    /// containers auth file with registry credentials.
    #[arg(long, env = "IMAGEGATE_AUTHFILE")]
    pub authfile: Option<PathBuf>,
    /// `--tls-verify=false` allows plain-HTTP and self-signed registries.
    #[arg(long, env = "IMAGEGATE_TLS_VERIFY", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub tls_verify: bool,
    /// Extra CA certificate (PEM) for registries and lookasides.
    #[arg(long, env = "IMAGEGATE_REGISTRY_CA", value_delimiter = ',')]
    pub registry_ca: Vec<PathBuf>,
    /// Platforms whose list instances are verified, OS/ARCH[/VARIANT] (default: this machine's).
    #[arg(long, env = "IMAGEGATE_PLATFORM", value_delimiter = ',')]
    pub platform: Vec<String>,
    /// Budget for all registry and lookaside work of one review.
    #[arg(long, env = "IMAGEGATE_ADMISSION_TIMEOUT", default_value = "9s", value_parser = humantime::parse_duration)]
    pub admission_timeout: Duration,
    /// How long a tag's digest is remembered.
    #[arg(long, env = "IMAGEGATE_DIGEST_CACHE_TTL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub digest_cache_ttl: Duration,
    /// How long an accepted verdict is remembered.
    #[arg(long, env = "IMAGEGATE_VERDICT_CACHE_TTL", default_value = "10m", value_parser = humantime::parse_duration)]
    pub verdict_cache_ttl: Duration,
    /// How long a rejected verdict (and a digest's signature list) is remembered.
    #[arg(long, env = "IMAGEGATE_NEGATIVE_CACHE_TTL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub negative_cache_ttl: Duration,
    /// Entries per cache.
    #[arg(long, env = "IMAGEGATE_CACHE_ENTRIES", default_value_t = 100_000)]
    pub cache_entries: u64,
    /// Kinds whose verified tags /mutate pins to digests.
    #[arg(
        long,
        env = "IMAGEGATE_MUTATE_KINDS",
        value_delimiter = ',',
        default_value = "Pod"
    )]
    pub mutate_kinds: Vec<String>,
    /// The lookaside used where registries.d configures none.
    #[arg(long, env = "IMAGEGATE_DEFAULT_LOOKASIDE", default_value = crate::signature::registries_d::BUILTIN_ROOT_LOOKASIDE)]
    pub default_lookaside: String,
}

fn platforms(args: &[String]) -> Result<Vec<crate::manifest::list::Platform>, Error> {
    if args.is_empty() {
        return Ok(vec![crate::manifest::list::Platform::current()]);
    }
    args.iter()
        .map(|p| {
            crate::manifest::list::Platform::parse(p)
                .map_err(|e| Error::Config(format!("--platform {p}: {e}")))
        })
        .collect()
}

/// Runs until SIGTERM or Ctrl-C, then drains in-flight reviews.
pub async fn serve(a: ServeArgs) -> Result<u8, Error> {
    let metrics = Arc::new(Metrics::new());
    let mut registry = crate::registry::RegistryOptions {
        tls_verify: a.tls_verify,
        ..Default::default()
    };
    for ca in &a.registry_ca {
        registry.extra_root_certificates.push(
            std::fs::read(ca).map_err(|e| Error::Config(format!("open {}: {e}", ca.display())))?,
        );
    }
    let config = EngineConfig {
        registry,
        platforms: platforms(&a.platform)?,
        builtin_lookaside: a.default_lookaside.clone(),
        caches: CacheSettings {
            digest_ttl: a.digest_cache_ttl,
            signature_ttl: a.negative_cache_ttl,
            verdict_ttl: a.verdict_cache_ttl,
            negative_ttl: a.negative_cache_ttl,
            max_entries: a.cache_entries,
        },
        ..EngineConfig::default()
    };
    let engine = Arc::new(Engine::new(config, Some(metrics.clone()))?);
    let credentials: Arc<dyn crate::registry::CredentialSource> = match &a.authfile {
        Some(p) => {
            Arc::new(crate::registry::AuthFile::load(p).map_err(|e| Error::Config(e.to_string()))?)
        }
        None => Arc::new(crate::registry::Anonymous),
    };
    let policies = crate::policyset::watch_directory(
        a.policies.clone(),
        Duration::from_secs(1),
        Some(metrics.clone()),
    )
    .map_err(Error::Config)?;
    let verifier = EngineVerifier {
        engine,
        policies,
        keys: Arc::new(FilesystemKeyResolver::new()),
        credentials: Arc::new(StaticCredentials(credentials)),
        timeout: a.admission_timeout,
    };
    let ready = Arc::new(AtomicBool::new(false));
    let state = AppState {
        verifier: Arc::new(verifier),
        options: Arc::new(ReviewOptions {
            mutate_kinds: a.mutate_kinds.clone(),
        }),
        metrics,
        ready: ready.clone(),
    };
    let server_config = ServerConfig {
        listen: a.listen,
        metrics_listen: a.metrics_listen,
        tls: TlsFiles {
            cert: a.tls_cert.clone(),
            key: a.tls_key.clone(),
        },
        body_limit: server::DEFAULT_BODY_LIMIT,
        tls_reload_interval: Duration::from_secs(2),
        shutdown_grace: Duration::from_secs(25),
    };
    let running = server::start(state, &server_config).await?;
    ready.store(true, Ordering::Release);
    tracing::info!(listen = %running.addr, metrics = %running.metrics_addr, "imagegate serving");
    // Tests and scripts read the bound addresses from stderr.
    eprintln!(
        "imagegate: serving on https://{} (metrics on http://{})",
        running.addr, running.metrics_addr
    );
    shutdown_signal().await;
    tracing::info!("shutting down: draining in-flight reviews");
    ready.store(false, Ordering::Release);
    running.shutdown(server_config.shutdown_grace).await?;
    Ok(0)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
