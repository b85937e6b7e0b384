//! Registry access: tag to digest resolution, exact manifest bytes,
//! credentials from auth files, and the registry signature API extension.
//!
//! - [`client`]: [`RegistryClient`], which fetches manifests as c/image's
//!   `docker` transport does (same `Accept` list, exact bytes, media type,
//!   size cap, digest checks);
//! - [`auth`]: credentials ([`Credentials`]), auth-file parsing
//!   ([`AuthFile`]) and the per-request [`CredentialSource`];
//! - [`extension`]: `X-Registry-Supports-Signatures` detection and
//!   `GET /extensions/v2/…/signatures/…` (semantics §6.1);
//! - `transport` (private): the distribution v2 HTTP conversation (ping,
//!   `Basic`/`Bearer` challenges, token cache, error bodies).
//!
//! Why not `oci_client::Client` for the requests: its manifest pull hands back
//! the exact bytes but not the `Content-Type`, which c/image uses to decide
//! whether a manifest is a list; it reads bodies without a size limit; its
//! credential store is keyed by registry with the first credentials winning
//! and its token cache is keyed without credentials, so one pod's pull
//! secret would serve another pod's request; and its scheme is fixed per
//! client, while c/image tries HTTPS and falls back to HTTP only for insecure
//! registries. Those are the properties this module exists to get right, so
//! it speaks the protocol with `reqwest` directly.

use std::fmt;

pub mod auth;
pub mod client;
pub mod extension;
mod transport;

#[cfg(test)]
pub(crate) mod testserver;

pub use auth::{Anonymous, AuthError, AuthFile, CredentialChain, CredentialSource, Credentials};
pub use client::{FetchedManifest, RegistryClient, RegistryOptions};

/// c/image's `iolimits.MaxManifestBodySize`: 4 MiB.
pub const MAX_MANIFEST_BODY_SIZE: usize = 4 << 20;
/// c/image's `iolimits.MaxSignatureListBodySize`: 4 MiB.
pub const MAX_SIGNATURE_LIST_BODY_SIZE: usize = 4 << 20;
/// c/image's `iolimits.MaxAuthTokenBodySize`: 1 MiB.
pub const MAX_AUTH_TOKEN_BODY_SIZE: usize = 1 << 20;

/// What kind of failure a [`RegistryError`] is, for callers that react
/// differently (caching, retries, denial wording).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegistryErrorKind {
    /// 404, `MANIFEST_UNKNOWN`, `NAME_UNKNOWN` and the like.
    NotFound,
    /// 401 from the registry or the token server.
    Unauthorized,
    /// 403 or `DENIED`.
    Denied,
    /// 429.
    TooManyRequests,
    /// Any other 4xx.
    Http,
    /// 5xx and other unexpected statuses.
    Server,
    /// The connect or request timeout expired.
    Timeout,
    /// Connection, TLS or protocol failure.
    Network,
    /// A body over its size limit.
    TooLarge,
    /// Bytes that do not hash to the digest they were requested by.
    DigestMismatch,
    /// A response that could not be understood (token JSON, challenges).
    InvalidResponse,
    /// Credentials could not be looked up.
    Credentials,
    /// Client configuration (certificates, TLS setup).
    Config,
}

/// A registry failure, with c/image's wording where it has one
/// (`reading manifest v1 in quay.io/ns/app: manifest unknown: manifest unknown`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RegistryError {
    kind: RegistryErrorKind,
    message: String,
}

impl RegistryError {
    pub fn new(kind: RegistryErrorKind, message: impl Into<String>) -> RegistryError {
        RegistryError {
            kind,
            message: message.into(),
        }
    }

    pub fn kind(&self) -> RegistryErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same error with `prefix: ` in front, as Go's `%w` wrapping reads.
    pub(crate) fn context(self, prefix: impl fmt::Display) -> RegistryError {
        RegistryError {
            kind: self.kind,
            message: format!("{prefix}: {}", self.message),
        }
    }
}
