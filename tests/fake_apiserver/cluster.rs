//! imagegate's cluster side wired as `imagegate serve` wires it, against
//! the fake API server: the controller (no Lease: the tests are the only
//! replica), an engine reaching the registry over plain HTTP, the policy
//! sets the controller's snapshots compile to, and the webhook's verifier.
//! Suites that decide images "in a cluster" start it here rather than each
//! repeating the wiring.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use imagegate::admission::review::{ImageVerifier, RequestContext};
use imagegate::admission::verifier::{CredentialProvider, EngineVerifier, StaticCredentials};
use imagegate::controller::policies::{PolicyCompiler, spawn_policy_sets};
use imagegate::controller::{Controller, ControllerConfig};
use imagegate::engine::{CacheSettings, Engine, EngineConfig, ImageVerdict};
use imagegate::policy::FilesystemKeyResolver;
use imagegate::policyset::PolicySet;
use imagegate::registry::{Anonymous, RegistryOptions};
use tokio::sync::watch;

use super::{FakeApiServer, eventually};

/// What [`ClusterVerifier::start`] can vary.
pub struct ClusterOptions {
    /// imagegate's namespace (keyRefs of cluster documents, own secrets).
    pub namespace: String,
    pub caches: CacheSettings,
    /// Registry credentials per review (default: anonymous).
    pub credentials: Arc<dyn CredentialProvider>,
    /// The verifier's deadline for one review.
    pub timeout: Duration,
    /// How often keyRef keys are re-read.
    pub key_refresh: Duration,
}

impl ClusterOptions {
    pub fn new(namespace: &str) -> ClusterOptions {
        ClusterOptions {
            namespace: namespace.into(),
            caches: CacheSettings::default(),
            credentials: Arc::new(StaticCredentials(Arc::new(Anonymous))),
            timeout: Duration::from_secs(5),
            key_refresh: Duration::from_millis(500),
        }
    }
}

pub struct ClusterVerifier {
    pub controller: Controller,
    pub engine: Arc<Engine>,
    pub policies: watch::Receiver<Arc<PolicySet>>,
    pub verifier: EngineVerifier,
}

impl ClusterVerifier {
    /// Starts everything and waits until the first policy set is built from
    /// a synced snapshot.
    pub async fn start(fake: &FakeApiServer, options: ClusterOptions) -> ClusterVerifier {
        let mut config = ControllerConfig::new(&options.namespace, "imagegate-0");
        config.lease = None;
        let controller = Controller::start(fake.client(), config, Arc::new(PolicyCompiler));
        let engine = Arc::new(
            Engine::new(
                EngineConfig {
                    registry: RegistryOptions {
                        tls_verify: false,
                        ..RegistryOptions::default()
                    },
                    caches: options.caches,
                    ..EngineConfig::default()
                },
                None,
            )
            .expect("engine"),
        );
        let ready = Arc::new(AtomicBool::new(false));
        let policies = spawn_policy_sets(
            fake.client(),
            options.namespace.clone(),
            controller.subscribe(),
            engine.clone(),
            None,
            ready.clone(),
            options.key_refresh,
        );
        eventually("the policy set is built from a synced snapshot", || {
            ready.load(Ordering::Acquire)
        })
        .await;
        let verifier = EngineVerifier {
            engine: engine.clone(),
            policies: policies.clone(),
            keys: Arc::new(FilesystemKeyResolver::new()),
            credentials: options.credentials,
            timeout: options.timeout,
        };
        ClusterVerifier {
            controller,
            engine,
            policies,
            verifier,
        }
    }

    /// The webhook verifier's verdicts for `images` in `context`.
    pub async fn verify(&self, images: &[String], context: &RequestContext) -> Vec<ImageVerdict> {
        self.verifier.verify(images, context).await
    }

    pub async fn shutdown(self) {
        self.controller.shutdown().await;
    }
}
