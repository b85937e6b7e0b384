//! Getting what a signature check needs: manifests from the registry and
//! signatures from the lookaside (or the registry's signature API), with
//! caches that also coalesce concurrent requests for the same object
//! (`Cache::try_get_with` runs one initialiser per key; everyone else
//! waits for its result).

use std::sync::Arc;
use std::time::Duration;

use crate::cache::Cache;
use crate::manifest::list::{Platform, instances_for_platforms};
use crate::metrics::Metrics;
use crate::reference::{Digest, ImageReference, Named};
use crate::registry::{CredentialSource, FetchedManifest, RegistryClient};
use crate::signature::blob::{StoredSignature, from_blob};
use crate::signature::lookaside::{ReadLimits, read_signatures};
use crate::signature::registries_d::RegistryConfiguration;
use crate::signature::registries_d::go_url::GoUrl;

/// Cache sizes and lifetimes (DESIGN decision 9).
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// Tag → manifest (the tag may move): short.
    pub digest_ttl: Duration,
    /// Signatures of a digest. New ones may be added at any time, so this
    /// is short (as short as a rejection is remembered): it serves to share
    /// one read between concurrent and back-to-back reviews, while accepted
    /// verdicts have their own, longer cache.
    pub signature_ttl: Duration,
    /// Accepted verdicts.
    pub verdict_ttl: Duration,
    /// Rejected verdicts: short, so a fix (a new signature) is seen soon.
    pub negative_ttl: Duration,
    /// Entries per cache.
    pub max_entries: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            digest_ttl: Duration::from_secs(60),
            signature_ttl: Duration::from_secs(30),
            verdict_ttl: Duration::from_secs(600),
            negative_ttl: Duration::from_secs(30),
            max_entries: 100_000,
        }
    }
}

/// One manifest that must be verified: the image itself, or one instance
/// of its list per node platform.
#[derive(Debug, Clone)]
pub struct Instance {
    pub digest: Digest,
    /// The platforms that select this instance (empty for a single image).
    pub platforms: Vec<String>,
    pub manifest: FetchedManifest,
}

/// What the image resolved to.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The digest of the top-level manifest (the list's, for a list).
    pub digest: Digest,
    pub instances: Vec<Instance>,
}

/// Registry and lookaside access with caches.
pub struct Fetcher {
    registry: RegistryClient,
    lookaside: reqwest::Client,
    limits: ReadLimits,
    builtin_lookaside: GoUrl,
    metrics: Option<Arc<Metrics>>,
    // Errors are shared as strings: the caches hold values by clone.
    by_tag: Cache<String, Arc<FetchedManifest>>,
    by_digest: Cache<String, Arc<FetchedManifest>>,
    signatures: Cache<String, Arc<Vec<(String, StoredSignature)>>>,
}

impl Fetcher {
    pub fn new(
        registry: RegistryClient,
        lookaside: reqwest::Client,
        limits: ReadLimits,
        builtin_lookaside: GoUrl,
        caches: &CacheSettings,
        metrics: Option<Arc<Metrics>>,
    ) -> Fetcher {
        Fetcher {
            registry,
            lookaside,
            limits,
            builtin_lookaside,
            metrics,
            by_tag: Cache::new(caches.max_entries, Some(caches.digest_ttl)),
            // Content-addressed: valid as long as it is remembered.
            by_digest: Cache::new(caches.max_entries, None),
            signatures: Cache::new(caches.max_entries, Some(caches.signature_ttl)),
        }
    }

    fn count_cache(&self, cache: &'static str, hit: bool) {
        if let Some(m) = &self.metrics {
            m.count_cache(cache, hit);
        }
    }

    /// The top-level manifest `image` names (by tag or digest).
    pub async fn resolve_top(
        &self,
        image: &ImageReference,
        credentials: &dyn CredentialSource,
    ) -> Result<Arc<FetchedManifest>, String> {
        let named = image.docker_reference();
        let by_digest_key;
        let (cache, key) = match named.digest() {
            Some(d) => {
                by_digest_key = format!("{}@{d}", named.name());
                (&self.by_digest, by_digest_key.as_str())
            }
            None => (&self.by_tag, image.identity()),
        };
        let mut initialised = false;
        let result = cache
            .try_get_with(key, async {
                initialised = true;
                let fetched = self.registry.resolve(named, credentials).await;
                self.count_registry(named, fetched.as_ref().err().map(|e| e.kind()));
                let fetched = fetched.map_err(|e| e.to_string())?;
                // Every tag of one manifest shares the by-digest entry, so
                // many tags of one image hold its bytes once.
                let by_digest = format!("{}@{}", named.name(), fetched.digest);
                match self.by_digest.get(&by_digest) {
                    Some(cached) if cached.media_type == fetched.media_type => Ok(cached),
                    // c/image decides the type from each response: the same
                    // bytes served now under another Content-Type (a list
                    // rather than a manifest) are that type from now on.
                    _ => {
                        let fetched = Arc::new(fetched);
                        self.by_digest.insert(by_digest, fetched.clone());
                        Ok(fetched)
                    }
                }
            })
            .await
            .map_err(|e: Arc<String>| e.as_ref().clone());
        self.count_cache("manifest", !initialised);
        result
    }

    fn count_registry(&self, named: &Named, error: Option<crate::registry::RegistryErrorKind>) {
        if let Some(m) = &self.metrics {
            let status = match error {
                None => "200".to_string(),
                Some(kind) => format!("{kind:?}").to_lowercase(),
            };
            m.count_registry(named.domain(), &status);
        }
    }

    /// The manifest `digest` of `image`'s repository (a list instance).
    async fn instance_manifest(
        &self,
        image: &ImageReference,
        digest: &Digest,
        credentials: &dyn CredentialSource,
    ) -> Result<Arc<FetchedManifest>, String> {
        let named = image.docker_reference();
        let key = format!("{}@{digest}", named.name());
        let mut initialised = false;
        let result = self
            .by_digest
            .try_get_with(&key, async {
                initialised = true;
                let fetched = self
                    .registry
                    .fetch_manifest(named, digest, credentials)
                    .await;
                self.count_registry(named, fetched.as_ref().err().map(|e| e.kind()));
                fetched.map(Arc::new).map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.as_ref().clone());
        self.count_cache("manifest", !initialised);
        result
    }

    /// The image and, for a list, each instance a node of `platforms`
    /// could select (DESIGN decision 5).
    pub async fn resolve(
        &self,
        image: &ImageReference,
        platforms: &[Platform],
        credentials: &dyn CredentialSource,
    ) -> Result<Resolved, String> {
        let top = self.resolve_top(image, credentials).await?;
        if !top.is_list() {
            return Ok(Resolved {
                digest: top.digest.clone(),
                instances: vec![Instance {
                    digest: top.digest.clone(),
                    platforms: vec![],
                    manifest: (*top).clone(),
                }],
            });
        }
        let list = top.list().map_err(|e| e.to_string())?;
        let digests = instances_for_platforms(&list, platforms).map_err(|e| e.to_string())?;
        let mut instances = Vec::with_capacity(digests.len());
        for digest in digests {
            let manifest = self.instance_manifest(image, &digest, credentials).await?;
            if manifest.is_list() {
                return Err("Unexpectedly received a manifest list instead of a manifest for a single image".into());
            }
            let selected_by = platforms
                .iter()
                .filter(|p| list.choose_for_platform(p).ok().as_ref() == Some(&digest))
                .map(|p| p.to_string())
                .collect();
            instances.push(Instance {
                digest,
                platforms: selected_by,
                manifest: (*manifest).clone(),
            });
        }
        Ok(Resolved {
            digest: top.digest.clone(),
            instances,
        })
    }

    /// The signatures of `digest` for `image`, from the registry's signature
    /// API when it announces one, else from the lookaside registries.d
    /// names (semantics §5). Each comes with where it was read from.
    pub async fn signatures(
        &self,
        image: &ImageReference,
        digest: &Digest,
        registries_d: &RegistryConfiguration,
        credentials: &dyn CredentialSource,
    ) -> Result<Arc<Vec<(String, StoredSignature)>>, String> {
        let named = image.docker_reference();
        let extension = self
            .registry
            .supports_signatures(named)
            .await
            .map_err(|e| e.to_string())?;
        let base = if extension {
            None
        } else {
            Some(
                registries_d
                    .lookaside_base_url(image, false, &self.builtin_lookaside)
                    .map_err(|e| e.to_string())?,
            )
        };
        let key = match &base {
            Some(b) => format!("lookaside {} {digest}", b.redacted()),
            None => format!("extension {} {digest}", named.name()),
        };
        let mut initialised = false;
        let result = self
            .signatures
            .try_get_with(&key, async {
                initialised = true;
                match &base {
                    Some(base) => self.read_lookaside(base, digest).await,
                    None => self.read_extension(named, digest, credentials).await,
                }
                .map(Arc::new)
            })
            .await
            .map_err(|e| e.as_ref().clone());
        self.count_cache("signatures", !initialised);
        result
    }

    async fn read_lookaside(
        &self,
        base: &GoUrl,
        digest: &Digest,
    ) -> Result<Vec<(String, StoredSignature)>, String> {
        let observer = |host: &str, status: Option<u16>| {
            if let Some(m) = &self.metrics {
                m.count_lookaside(host, &status.map_or("error".to_string(), |s| s.to_string()));
            }
        };
        let blobs = read_signatures(base, digest, &self.lookaside, &self.limits, Some(&observer))
            .await
            .map_err(|e| e.to_string())?;
        blobs
            .into_iter()
            .map(|b| match from_blob(&b.body) {
                Ok(sig) => Ok((b.url.clone(), sig)),
                // One unclassifiable blob fails the whole read, as in c/image.
                Err(e) => Err(b.parse_error(e)),
            })
            .collect()
    }

    async fn read_extension(
        &self,
        named: &Named,
        digest: &Digest,
        credentials: &dyn CredentialSource,
    ) -> Result<Vec<(String, StoredSignature)>, String> {
        let body = self
            .registry
            .extension_signatures(named, digest, credentials)
            .await
            .map_err(|e| e.to_string())?;
        let blobs = crate::signature::lookaside::parse_extension_signatures(&body)
            .map_err(|e| e.to_string())?;
        // The extension's blobs go to the mechanism as they are, without the
        // first-byte classification of lookaside blobs (semantics §6.1).
        Ok(blobs
            .into_iter()
            .enumerate()
            .map(|(i, b)| {
                (
                    format!("registry signature API #{}", i + 1),
                    StoredSignature::SimpleSigning(b),
                )
            })
            .collect())
    }
}
