//! imagegate: containers-policy.json image signature policy, enforced at
//! Kubernetes admission with the verdicts CRI-O gives at pull time.
//!
//! One module per concern (see DESIGN.md):
//! - [`reference`]: docker reference parsing and normalisation;
//! - [`strictjson`]: c/image's paranoid JSON object parsing;
//! - [`manifest`]: manifest digests and manifest-list instance selection;
//! - [`signature`]: simple-signing payloads, OpenPGP, registries.d, lookaside;
//! - [`policy`]: policy documents, scope lookup, identity matching, requirements;
//! - [`registry`]: digest resolution and manifest fetching, credentials;
//! - [`engine`]: one image through policy, registry and signatures to a verdict;
//! - [`cache`]: the bounded, expiring, coalescing cache all of them use;
//! - [`cli`]: the `imagegate` command line;
//! - [`logging`]: text or batched JSON log lines on stderr.

pub mod admission;
pub mod cache;
pub mod certs;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod engine;
pub mod gofmt;
pub mod logging;
pub mod manifest;
pub mod metrics;
pub mod policy;
pub mod policyset;
pub mod reference;
pub mod registry;
pub mod server;
pub mod signature;
pub mod strictjson;

/// The crate's error type for operations that are not verdicts: a verdict
/// (an image rejected by policy) is a value, not an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Reference(#[from] reference::ReferenceError),
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Other(#[from] anyhow::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Makes rustls's `ring` provider the process default unless one is already
/// installed. imagegate uses `ring` only (no aws-lc), and reqwest and
/// axum-server built without a provider panic when none is installed, so
/// every place that builds a TLS client or server calls this first: the
/// library works for embedders and tests that did not set one up.
pub fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another thread installing one is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
