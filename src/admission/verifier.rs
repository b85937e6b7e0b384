//! The production [`ImageVerifier`]: the engine, over the policy set in
//! force when the review arrives, within the admission deadline.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::admission::review::{ImageVerifier, RequestContext};
use crate::engine::{Engine, ImageVerdict, VerifyContext};
use crate::policy::KeyResolver;
use crate::policyset::PolicySet;
use crate::registry::CredentialSource;

/// Supplies registry credentials for one request (the pod's pull secrets,
/// its service account's, then imagegate's own; see the controller).
pub trait CredentialProvider: Send + Sync {
    fn credentials_for<'a>(
        &'a self,
        context: &'a RequestContext,
        images: &'a [String],
    ) -> Pin<Box<dyn Future<Output = Arc<dyn CredentialSource>> + Send + 'a>>;
}

/// The same credentials for every request (`--authfile`).
pub struct StaticCredentials(pub Arc<dyn CredentialSource>);

impl CredentialProvider for StaticCredentials {
    fn credentials_for<'a>(
        &'a self,
        _context: &'a RequestContext,
        _images: &'a [String],
    ) -> Pin<Box<dyn Future<Output = Arc<dyn CredentialSource>> + Send + 'a>> {
        let c = self.0.clone();
        Box::pin(async move { c })
    }
}

/// Verifies with the engine against the current policy set.
pub struct EngineVerifier {
    pub engine: Arc<Engine>,
    pub policies: watch::Receiver<Arc<PolicySet>>,
    pub keys: Arc<dyn KeyResolver>,
    pub credentials: Arc<dyn CredentialProvider>,
    /// Budget for all registry and lookaside work of one review.
    pub timeout: Duration,
}

impl ImageVerifier for EngineVerifier {
    fn verify<'a>(
        &'a self,
        images: &'a [String],
        context: &'a RequestContext,
    ) -> Pin<Box<dyn Future<Output = Vec<ImageVerdict>> + Send + 'a>> {
        Box::pin(async move {
            let deadline = Instant::now() + self.timeout;
            // One consistent set for the whole review, even if it changes meanwhile.
            let set = self.policies.borrow().clone();
            let documents = set.documents_for(context.namespace.as_deref());
            let credentials = self.credentials.credentials_for(context, images).await;
            let ctx = VerifyContext {
                registries_d: &set.registries_d,
                keys: self.keys.as_ref(),
                credentials: credentials.as_ref(),
                deadline: Some(deadline),
            };
            // Images of one object are verified concurrently; each shares
            // the engine's caches and in-flight requests.
            let checks = images
                .iter()
                .map(|image| self.engine.verify_image(image, &documents, &ctx));
            futures::future::join_all(checks).await
        })
    }
}
