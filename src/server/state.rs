//! What every request handler shares.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::admission::review::{DecisionObserver, ImageVerifier, ReviewOptions};
use crate::metrics::Metrics;

/// The server's shared state.
#[derive(Clone)]
pub struct AppState {
    pub verifier: Arc<dyn ImageVerifier>,
    pub options: Arc<ReviewOptions>,
    pub metrics: Arc<Metrics>,
    /// Set once policies are loaded; `/readyz` answers 503 until then.
    pub ready: Arc<AtomicBool>,
    /// Told about every answered review (Kubernetes Events in a cluster).
    pub observer: Option<Arc<dyn DecisionObserver>>,
}
