//! `imagegate serve`: the admission webhook process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Args;

use crate::Error;
use crate::admission::review::ReviewOptions;
use crate::admission::verifier::{CredentialProvider, EngineVerifier, StaticCredentials};
use crate::controller::policies::{ClusterCredentials, PolicyCompiler, spawn_policy_sets};
use crate::controller::{CertConfig, Controller, ControllerConfig, LeaseConfig};
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
    /// objects (no cluster needed); watched for changes. Without it,
    /// imagegate runs in the cluster: it watches the policy CRDs and Nodes.
    #[arg(long, env = "IMAGEGATE_POLICIES")]
    pub policies: Option<PathBuf>,
    /// Serving certificate chain (PEM), e.g. from cert-manager; re-read when
    /// it changes. Without it, `--cert-secret` (self-managed certificates).
    #[arg(long, env = "IMAGEGATE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Serving key (PEM); re-read when it changes.
    #[arg(long, env = "IMAGEGATE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// imagegate's namespace (its Lease, certificate Secret, configured pull
    /// secrets, and the keyRefs of cluster documents).
    #[arg(long, env = "IMAGEGATE_NAMESPACE", default_value = "imagegate")]
    pub namespace: String,
    /// This replica's name (the Lease holder identity).
    #[arg(long, env = "IMAGEGATE_POD_NAME")]
    pub pod_name: Option<String>,
    /// The Service the API server reaches the webhook through (the serving
    /// certificate's names).
    #[arg(long, env = "IMAGEGATE_SERVICE_NAME", default_value = "imagegate")]
    pub service_name: String,
    /// Self-managed certificates: the Secret (in `--namespace`) holding the
    /// CA and serving certificate, created and rotated by the leader.
    #[arg(long, env = "IMAGEGATE_CERT_SECRET", conflicts_with = "tls_cert")]
    pub cert_secret: Option<String>,
    /// The Validating/MutatingWebhookConfiguration whose caBundle is kept current.
    #[arg(long, env = "IMAGEGATE_WEBHOOK_NAME", default_value = "imagegate")]
    pub webhook_name: String,
    /// Where self-managed certificate files are written for the server.
    #[arg(long, env = "IMAGEGATE_CERT_DIR", default_value = "/tmp/imagegate-tls")]
    pub cert_dir: PathBuf,
    /// Self-managed certificates: lifetime of the serving certificate.
    #[arg(long, env = "IMAGEGATE_CERT_VALIDITY", default_value = "365d", value_parser = humantime::parse_duration)]
    pub cert_validity: Duration,
    /// Self-managed certificates: lifetime of the CA.
    #[arg(long, env = "IMAGEGATE_CA_VALIDITY", default_value = "3650d", value_parser = humantime::parse_duration)]
    pub ca_validity: Duration,
    /// Self-managed certificates: a certificate (or CA) expiring within this
    /// is replaced; the old CA stays in caBundle until it expires.
    #[arg(long, env = "IMAGEGATE_CERT_RENEW_BEFORE", default_value = "30d", value_parser = humantime::parse_duration)]
    pub cert_renew_before: Duration,
    /// Self-managed certificates: how often the leader checks them.
    #[arg(long, env = "IMAGEGATE_CERT_CHECK_INTERVAL", default_value = "1h", value_parser = humantime::parse_duration)]
    pub cert_check_interval: Duration,
    /// The coordination.k8s.io Lease used for leader election.
    #[arg(
        long,
        env = "IMAGEGATE_LEADER_ELECTION_LEASE",
        default_value = "imagegate-leader"
    )]
    pub leader_election_lease: String,
    /// Pull secrets in `--namespace` used after the pod's and its
    /// ServiceAccount's (repeatable).
    #[arg(long, env = "IMAGEGATE_PULL_SECRET", value_delimiter = ',')]
    pub pull_secret: Vec<String>,
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
    let authfile: Arc<dyn crate::registry::CredentialSource> = match &a.authfile {
        Some(p) => {
            Arc::new(crate::registry::AuthFile::load(p).map_err(|e| Error::Config(e.to_string()))?)
        }
        None => Arc::new(crate::registry::Anonymous),
    };
    let ready = Arc::new(AtomicBool::new(false));
    let mut controller = None;
    let mut observer: Option<Arc<dyn crate::admission::review::DecisionObserver>> = None;
    let (policies, credentials, tls): (_, Arc<dyn CredentialProvider>, TlsFiles) = match &a.policies
    {
        Some(dir) => {
            let policies = crate::policyset::watch_directory(
                dir.clone(),
                Duration::from_secs(1),
                Some(metrics.clone()),
            )
            .map_err(Error::Config)?;
            ready.store(true, Ordering::Release);
            (
                policies,
                Arc::new(StaticCredentials(authfile)),
                tls_files(&a)?,
            )
        }
        None => {
            let client = kube::Client::try_default().await.map_err(|e| {
                Error::Config(format!(
                    "no --policies directory and no Kubernetes API to watch: {e}"
                ))
            })?;
            let identity = a
                .pod_name
                .clone()
                .or_else(|| std::env::var("HOSTNAME").ok())
                .unwrap_or_else(|| "imagegate".to_string());
            let mut config = ControllerConfig::new(&a.namespace, &identity);
            config.lease = Some(LeaseConfig::new(
                &a.namespace,
                &a.leader_election_lease,
                &identity,
                Duration::from_secs(15),
            ));
            config.pull_secrets.secret_names = a.pull_secret.clone();
            if !a.platform.is_empty() {
                config.platforms = Some(platforms(&a.platform)?);
            }
            let tls = match &a.cert_secret {
                Some(secret) => {
                    if a.cert_renew_before >= a.cert_validity.min(a.ca_validity) {
                        return Err(Error::Config(format!(
                            "--cert-renew-before ({}) must be shorter than --cert-validity ({}) and --ca-validity ({}), or certificates would be replaced without end",
                            humantime::format_duration(a.cert_renew_before),
                            humantime::format_duration(a.cert_validity),
                            humantime::format_duration(a.ca_validity)
                        )));
                    }
                    let mut certs = CertConfig::new(secret, &a.service_name, &a.cert_dir);
                    certs.validating_webhook = Some(a.webhook_name.clone());
                    certs.mutating_webhook = Some(a.webhook_name.clone());
                    certs.cert_validity = a.cert_validity;
                    certs.ca_validity = a.ca_validity;
                    certs.renew_before = a.cert_renew_before;
                    certs.check_interval = a.cert_check_interval;
                    // Followers pick up a rotation within a sync interval;
                    // never slower than the leader rotates.
                    certs.sync_interval = certs.sync_interval.min(a.cert_check_interval);
                    config.certs = Some(certs);
                    TlsFiles {
                        cert: a.cert_dir.join(crate::controller::certs::KEY_TLS_CRT),
                        key: a.cert_dir.join(crate::controller::certs::KEY_TLS_KEY),
                    }
                }
                None => tls_files(&a)?,
            };
            observer = Some(Arc::new(crate::controller::events::WorkloadEvents::new(
                client.clone(),
                &identity,
            )));
            let started = Controller::start(client.clone(), config, Arc::new(PolicyCompiler));
            let policies = spawn_policy_sets(
                client,
                a.namespace.clone(),
                started.subscribe(),
                engine.clone(),
                Some(metrics.clone()),
                ready.clone(),
                Duration::from_secs(30),
            );
            let credentials = Arc::new(ClusterCredentials {
                resolver: started.pull_secrets().clone(),
                fallback: authfile,
            });
            tracing::info!("waiting for the serving certificate");
            started.wait_certificates().await;
            controller = Some(started);
            (policies, credentials as Arc<dyn CredentialProvider>, tls)
        }
    };
    let verifier = EngineVerifier {
        engine,
        policies,
        keys: Arc::new(FilesystemKeyResolver::new()),
        credentials,
        timeout: a.admission_timeout,
    };
    let state = AppState {
        verifier: Arc::new(verifier),
        options: Arc::new(ReviewOptions {
            mutate_kinds: a.mutate_kinds.clone(),
        }),
        metrics,
        ready: ready.clone(),
        observer,
    };
    let server_config = ServerConfig {
        listen: a.listen,
        metrics_listen: a.metrics_listen,
        tls,
        body_limit: server::DEFAULT_BODY_LIMIT,
        tls_reload_interval: Duration::from_secs(2),
        shutdown_grace: Duration::from_secs(25),
    };
    let running = server::start(state, &server_config).await?;
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
    if let Some(c) = controller {
        c.shutdown().await;
    }
    Ok(0)
}

fn tls_files(a: &ServeArgs) -> Result<TlsFiles, Error> {
    match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => Ok(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => Err(Error::Config(
            "serving certificates: give --tls-cert and --tls-key, or --cert-secret (in a cluster)"
                .into(),
        )),
    }
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
