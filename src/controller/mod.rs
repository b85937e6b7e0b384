//! The Kubernetes side of imagegate (DESIGN decisions 2, 5, 10, 11): the
//! watches that feed admission, status and Events of policy documents,
//! pull credentials, self-managed certificates and leader election.
//!
//! - [`watch`]: reflectors on ClusterImagePolicy, ImagePolicy and Node; a
//!   snapshot of documents and node platforms on a `watch` channel;
//! - [`status`]: status subresource and Events, from a [`DocumentCompiler`];
//! - [`pull_secrets`]: registry credentials from pull secrets, kubelet-style;
//! - [`certs`]: CA and serving certificate in a Secret, caBundle patching;
//! - [`leader`]: Lease-based leader election.
//!
//! Every replica runs the watches, the pull-secret resolver and the
//! certificate file sync (it serves admission); only the leader writes
//! status and rotates certificates. Losing the lease stops those writers,
//! never the webhook.

pub mod certs;
pub mod events;
pub mod leader;
pub mod policies;
pub mod pull_secrets;
pub mod status;
pub mod watch;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use tokio::sync::watch as channel;
use tokio::task::JoinHandle;

pub use certs::{CertConfig, CertManager};
pub use leader::{LeaderElection, LeaderHandle, LeaseConfig};
pub use pull_secrets::{PodPullContext, PullCredential, PullSecretResolver, PullSecretsConfig};
pub use status::{CompileError, CompileReport, DocumentCompiler, StatusConfig, StatusWriter};
pub use watch::{
    ClusterSnapshot, DocumentId, DocumentKind, Platform, PolicyDocumentSource, PolicyWatch,
    WatchConfig,
};

/// An error of the Kubernetes side.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("certificates: {0}")]
    Certificate(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("gave up on {what} after {attempts} conflicting updates")]
    Conflict { what: String, attempts: usize },
}

/// Everything the controller needs to know.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// imagegate's own namespace: its Lease, certificate Secret and
    /// configured pull secrets live there.
    pub namespace: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// Platforms to verify instead of the Nodes' (`--platform`).
    pub platforms: Option<Vec<Platform>>,
    pub pull_secrets: PullSecretsConfig,
    /// Leader election; `None` makes this replica always the leader (a
    /// single replica).
    pub lease: Option<LeaseConfig>,
    pub status: StatusConfig,
    /// Self-managed certificates; `None` when they come from files
    /// (cert-manager), in which case caBundle is not touched.
    pub certs: Option<CertConfig>,
}

impl ControllerConfig {
    /// Defaults for `namespace` and `identity`: a 15 s Lease named
    /// `imagegate-leader`, default status and pull-secret settings, no
    /// certificate management.
    pub fn new(namespace: &str, identity: &str) -> ControllerConfig {
        ControllerConfig {
            namespace: namespace.into(),
            identity: identity.into(),
            platforms: None,
            pull_secrets: PullSecretsConfig::default(),
            lease: Some(LeaseConfig::new(
                namespace,
                "imagegate-leader",
                identity,
                Duration::from_secs(15),
            )),
            status: StatusConfig::default(),
            certs: None,
        }
    }
}

/// The running controller.
pub struct Controller {
    watch: Arc<PolicyWatch>,
    election: Option<LeaderElection>,
    leader: LeaderHandle,
    pull_secrets: Arc<PullSecretResolver>,
    certs_ready: channel::Receiver<bool>,
    stop_tx: channel::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Controller {
    /// Starts the watches, the election and the writers.
    pub fn start(
        client: Client,
        config: ControllerConfig,
        compiler: Arc<dyn DocumentCompiler>,
    ) -> Controller {
        let (stop_tx, stop_rx) = channel::channel(false);
        let watch = Arc::new(PolicyWatch::spawn(
            client.clone(),
            WatchConfig {
                platforms: config.platforms.clone(),
            },
        ));
        let election = config
            .lease
            .clone()
            .map(|l| LeaderElection::spawn(client.clone(), l));
        let leader = election
            .as_ref()
            .map_or_else(LeaderHandle::always, LeaderElection::handle);
        let pull_secrets = Arc::new(PullSecretResolver::new(
            client.clone(),
            &config.namespace,
            config.pull_secrets.clone(),
        ));
        let mut tasks = Vec::new();

        // Status: leader only. The writer's memory (last valid generation
        // per document) outlives a lost term.
        let writer = Arc::new(tokio::sync::Mutex::new(StatusWriter::new(
            client.clone(),
            compiler,
            config.status.clone(),
            config.identity.clone(),
        )));
        {
            let leader = leader.clone();
            let watch = watch.clone();
            let stop = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                leader
                    .run_while_leader(
                        |term_stop| {
                            let writer = writer.clone();
                            let watch = watch.clone();
                            async move {
                                let mut w = writer.lock().await;
                                if let Err(e) = w.run(&watch, term_stop).await {
                                    tracing::warn!(error = %e, "status writer stopped");
                                }
                            }
                        },
                        stop,
                    )
                    .await
            }));
        }

        // Certificates: every replica syncs files; the leader reconciles.
        let (certs_ready_tx, certs_ready) = channel::channel(config.certs.is_none());
        if let Some(cert_config) = config.certs.clone() {
            let manager = CertManager::new(client.clone(), &config.namespace, cert_config);
            let certs_ready_tx = Arc::new(certs_ready_tx);
            {
                let manager = manager.clone();
                let ready = certs_ready_tx.clone();
                let mut stop = stop_rx.clone();
                tasks.push(tokio::spawn(async move {
                    loop {
                        match manager.sync_files().await {
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "syncing certificate files failed")
                            }
                        }
                        if files_present(&manager.config().dir) {
                            ready.send_replace(true);
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(manager.config().sync_interval) => {}
                            _ = stop.wait_for(|s| *s) => return,
                        }
                    }
                }));
            }
            let leader = leader.clone();
            let stop = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                leader
                    .run_while_leader(
                        |mut term_stop| {
                            let manager = manager.clone();
                            let ready = certs_ready_tx.clone();
                            async move {
                                loop {
                                    let wait = match manager.reconcile().await {
                                        Ok(report) => {
                                            tracing::debug!(?report, "certificates reconciled");
                                            ready.send_replace(true);
                                            manager.config().check_interval
                                        }
                                        Err(e) => {
                                            tracing::warn!(error = %e, "certificate reconcile failed; retrying");
                                            manager.config().sync_interval.min(manager.config().check_interval)
                                        }
                                    };
                                    tokio::select! {
                                        _ = tokio::time::sleep(wait) => {}
                                        _ = term_stop.wait_for(|s| *s) => return,
                                    }
                                }
                            }
                        },
                        stop,
                    )
                    .await
            }));
        }

        Controller {
            watch,
            election,
            leader,
            pull_secrets,
            certs_ready,
            stop_tx,
            tasks,
        }
    }

    /// The current documents and platforms.
    pub fn snapshot(&self) -> Arc<ClusterSnapshot> {
        self.watch.snapshot()
    }

    /// Notified on every new snapshot.
    pub fn subscribe(&self) -> channel::Receiver<Arc<ClusterSnapshot>> {
        self.watch.subscribe()
    }

    pub fn watches(&self) -> &Arc<PolicyWatch> {
        &self.watch
    }

    pub fn is_leader(&self) -> bool {
        self.leader.is_leader()
    }

    pub fn leadership(&self) -> LeaderHandle {
        self.leader.clone()
    }

    pub fn pull_secrets(&self) -> &Arc<PullSecretResolver> {
        &self.pull_secrets
    }

    /// Waits until the certificate files exist (immediately when
    /// certificates are not self-managed).
    pub async fn wait_certificates(&self) {
        let mut rx = self.certs_ready.clone();
        let _ = rx.wait_for(|r| *r).await;
    }

    /// Stops the writers and the watches, and releases the Lease.
    pub async fn shutdown(self) {
        self.stop_tx.send_replace(true);
        for t in self.tasks {
            let _ = t.await;
        }
        if let Some(e) = self.election {
            e.shutdown().await;
        }
        self.watch.stop();
    }
}

fn files_present(dir: &std::path::Path) -> bool {
    [certs::KEY_TLS_CRT, certs::KEY_TLS_KEY]
        .iter()
        .all(|f| dir.join(f).is_file())
}
