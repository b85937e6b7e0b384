//! One image through policy, registry and signatures to a verdict: the
//! code the CLI, the webhook and the tests share (DESIGN decision 12).
//!
//! Order matters (DESIGN decision 4): every document's scope is looked up
//! first, and only if one of them needs signatures is the registry or a
//! lookaside contacted. Each document is then evaluated on its own with
//! c/image's semantics against every instance a node could pull; the image
//! is allowed when every document accepts (decision 3). An instance's
//! signatures are read only when some document has no cached verdict for
//! it: a warm review resolves the tag and reads no signature list.

pub mod fetch;
pub mod verdict;

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use fetch::CacheSettings;
use fetch::{Fetcher, Instance};
pub use verdict::{
    DocumentVerdict, ImageVerdict, InstanceVerdict, MatchedScope, Mode, RequirementReport,
    SignatureReport,
};

use crate::cache::Cache;
use crate::manifest::list::Platform;
use crate::metrics::Metrics;
use crate::policy::{self, ImageMaterial, KeyResolver, Policy, SignatureOutcome};
use crate::reference::ImageReference;
use crate::registry::{CredentialSource, RegistryClient, RegistryOptions};
use crate::signature::lookaside::ReadLimits;
use crate::signature::registries_d::RegistryConfiguration;
use crate::signature::registries_d::go_url::GoUrl;

/// A compiled policy document.
#[derive(Debug, Clone)]
pub struct PolicyDocument {
    /// How verdicts name it: `policy.json`, `ClusterImagePolicy/prod`, `ImagePolicy/ns/name`.
    pub name: String,
    /// Changes whenever the document or anything it depends on (key
    /// material) changes; part of the verdict cache key.
    pub generation: u64,
    pub mode: Mode,
    /// `None` for a document whose every version failed to load: it denies
    /// every image in its reach, naming itself (never a silent allow).
    pub policy: Result<Policy, String>,
}

/// Engine configuration.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub registry: RegistryOptions,
    pub lookaside: ReadLimits,
    /// The lookaside used when registries.d configures none (c/image's
    /// built-in default is a directory on the node).
    pub builtin_lookaside: String,
    /// The platforms whose manifest-list instances must be verified.
    pub platforms: Vec<Platform>,
    pub caches: CacheSettings,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            registry: RegistryOptions::default(),
            lookaside: ReadLimits::default(),
            builtin_lookaside: crate::signature::registries_d::BUILTIN_ROOT_LOOKASIDE.to_string(),
            platforms: vec![Platform::current()],
            caches: CacheSettings::default(),
        }
    }
}

/// What one verification may use besides the documents.
pub struct VerifyContext<'a> {
    pub registries_d: &'a RegistryConfiguration,
    pub keys: &'a dyn KeyResolver,
    pub credentials: &'a dyn CredentialSource,
    /// All registry and lookaside work ends here (DESIGN decision 8).
    pub deadline: Option<Instant>,
}

/// The verification engine. Cheap to share (`Arc`); its caches are shared
/// by every verification.
pub struct Engine {
    fetcher: Fetcher,
    /// Replaced when the cluster's nodes change (see `set_platforms`).
    platforms: std::sync::RwLock<Arc<Vec<Platform>>>,
    accepted: Cache<VerdictKey, Arc<InstanceVerdict>>,
    rejected: Cache<VerdictKey, Arc<InstanceVerdict>>,
    /// One copy of each distinct verdict (all the tags of one image
    /// usually share theirs), keyed by a hash of its content.
    interned: Cache<VerdictKey, Arc<InstanceVerdict>>,
    /// Pod image strings already parsed: parsing (c/image's reference
    /// grammar, a regex) was a twentieth of a warm review. Bounded well
    /// below the other caches: a cluster runs far fewer distinct images
    /// than reviews, and a miss only costs the parse.
    references: Cache<String, Arc<ImageReference>>,
    metrics: Option<Arc<Metrics>>,
}

impl Engine {
    pub fn new(config: EngineConfig, metrics: Option<Arc<Metrics>>) -> crate::Result<Engine> {
        let registry = RegistryClient::new(config.registry.clone())
            .map_err(|e| crate::Error::Config(e.to_string()))?;
        let mut lookaside = crate::signature::lookaside::client_builder();
        for pem in &config.registry.extra_root_certificates {
            let cert = reqwest::Certificate::from_pem(pem)
                .map_err(|e| crate::Error::Config(format!("CA certificate: {e}")))?;
            lookaside = lookaside.add_root_certificate(cert);
        }
        if !config.registry.tls_verify {
            lookaside = lookaside.tls_danger_accept_invalid_certs(true);
        }
        let lookaside = lookaside
            .build()
            .map_err(|e| crate::Error::Config(format!("lookaside client: {e}")))?;
        let builtin = GoUrl::parse(&config.builtin_lookaside).map_err(|e| {
            crate::Error::Config(format!(
                "built-in lookaside {}: {e}",
                config.builtin_lookaside
            ))
        })?;
        let fetcher = Fetcher::new(
            registry,
            lookaside,
            config.lookaside.clone(),
            builtin,
            &config.caches,
            metrics.clone(),
        );
        Ok(Engine {
            fetcher,
            platforms: std::sync::RwLock::new(Arc::new(config.platforms)),
            accepted: Cache::new(config.caches.max_entries, Some(config.caches.verdict_ttl)),
            rejected: Cache::new(config.caches.max_entries, Some(config.caches.negative_ttl)),
            interned: Cache::new(config.caches.max_entries, Some(config.caches.verdict_ttl)),
            references: Cache::new(config.caches.max_entries.min(REFERENCE_MEMO_ENTRIES), None),
            metrics,
        })
    }

    /// The platforms whose list instances are verified.
    pub fn platforms(&self) -> Arc<Vec<Platform>> {
        self.platforms.read().map(|p| p.clone()).unwrap_or_default()
    }

    /// Replaces the platforms (the controller calls this when nodes change).
    pub fn set_platforms(&self, platforms: Vec<Platform>) {
        if let Ok(mut p) = self.platforms.write()
            && **p != platforms
        {
            tracing::info!(platforms = ?platforms.iter().map(|p| p.to_string()).collect::<Vec<_>>(), "verifying list instances for these platforms");
            *p = Arc::new(platforms);
        }
    }

    /// `ImageReference::from_pod_image`, remembered. Invalid references
    /// are not remembered (they are rare and their error is worded anew).
    fn parse_pod_image(
        &self,
        image: &str,
    ) -> Result<Arc<ImageReference>, crate::reference::ReferenceError> {
        if let Some(parsed) = self.references.get(image) {
            return Ok(parsed);
        }
        let parsed = Arc::new(ImageReference::from_pod_image(image)?);
        self.references.insert(image.to_string(), parsed.clone());
        Ok(parsed)
    }

    /// Decides one image (as written in a pod) against `documents`.
    pub async fn verify_image(
        &self,
        image: &str,
        documents: &[Arc<PolicyDocument>],
        ctx: &VerifyContext<'_>,
    ) -> ImageVerdict {
        let verdict = self.verify_image_inner(image, documents, ctx).await;
        if let Some(m) = &self.metrics {
            let (result, reason) = if verdict.allowed() {
                ("allowed", "accepted")
            } else {
                ("rejected", reason_class(&verdict))
            };
            m.image_verifications
                .get_or_create(&crate::metrics::VerificationLabels { result, reason })
                .inc();
        }
        verdict
    }

    async fn verify_image_inner(
        &self,
        image: &str,
        documents: &[Arc<PolicyDocument>],
        ctx: &VerifyContext<'_>,
    ) -> ImageVerdict {
        let reference = match self.parse_pod_image(image) {
            Ok(r) => r,
            Err(e) => {
                // Nothing can pull it; every document rejects it.
                let reason = format!("invalid image reference {image:?}: {e}");
                return ImageVerdict {
                    image: image.to_string(),
                    reference: None,
                    digest: None,
                    documents: documents
                        .iter()
                        .map(|d| rejected_document(d, None, reason.clone()))
                        .collect(),
                };
            }
        };

        // 1. Scope lookup in every document; no network yet.
        let mut lookups = Vec::with_capacity(documents.len());
        let mut needs_material = false;
        for doc in documents {
            let lookup = match &doc.policy {
                Err(e) => Lookup::Broken(e.clone()),
                Ok(policy) => match policy.requirements_for(&reference) {
                    None => Lookup::NoOpinion,
                    Some(m) => {
                        needs_material |= policy::needs_image_material(m.requirements);
                        Lookup::Scope(matched_scope(&m.scope), m.requirements)
                    }
                },
            };
            lookups.push(lookup);
        }

        // 2. Only if some document needs signatures: resolve. Signatures
        //    are read later, and only for an instance some document has no
        //    cached verdict for.
        let mut digest = None;
        let mut fetched: Result<Vec<FetchedInstance>, String> = Ok(Vec::new());
        if needs_material {
            let platforms = self.platforms();
            let work = self
                .fetcher
                .resolve(&reference, &platforms, ctx.credentials);
            let outcome = within_deadline(ctx.deadline, work, || {
                format!(
                    "registry {} (manifest of {reference})",
                    reference.docker_reference().domain()
                )
            })
            .await;
            fetched = outcome.map(|resolved| {
                digest = Some(resolved.digest);
                resolved
                    .instances
                    .into_iter()
                    .map(|instance| FetchedInstance {
                        instance,
                        signatures: tokio::sync::OnceCell::new(),
                    })
                    .collect()
            });
        }

        // 3. Evaluate each document against each instance.
        let mut verdicts = Vec::with_capacity(documents.len());
        for (doc, lookup) in documents.iter().zip(lookups) {
            let verdict = match lookup {
                Lookup::Broken(e) => rejected_document(
                    doc,
                    None,
                    format!(
                        "policy document {} failed to load and has no valid version: {e}",
                        doc.name
                    ),
                ),
                Lookup::NoOpinion => DocumentVerdict {
                    document: doc.name.clone(),
                    mode: doc.mode,
                    scope: None,
                    allowed: true,
                    reason: None,
                    instances: vec![],
                },
                Lookup::Scope(scope, requirements) => {
                    self.evaluate_document(doc, scope, requirements, &reference, &fetched, ctx)
                        .await
                }
            };
            verdicts.push(verdict);
        }
        ImageVerdict {
            image: image.to_string(),
            reference: Some(reference.identity().to_string()),
            digest: digest.map(|d| d.to_string()),
            documents: verdicts,
        }
    }

    /// The signatures of one instance, read once per verification (every
    /// document that needs them shares the read) within the deadline.
    async fn signatures_of<'f>(
        &self,
        reference: &ImageReference,
        fetched: &'f FetchedInstance,
        ctx: &VerifyContext<'_>,
    ) -> &'f Result<Signatures, String> {
        let digest = &fetched.instance.digest;
        fetched
            .signatures
            .get_or_init(|| {
                let read =
                    self.fetcher
                        .signatures(reference, digest, ctx.registries_d, ctx.credentials);
                within_deadline(ctx.deadline, read, || format!("signatures of {digest}"))
            })
            .await
    }

    async fn evaluate_document(
        &self,
        doc: &PolicyDocument,
        scope: MatchedScope,
        requirements: &[policy::Requirement],
        reference: &ImageReference,
        fetched: &Result<Vec<FetchedInstance>, String>,
        ctx: &VerifyContext<'_>,
    ) -> DocumentVerdict {
        let mut instances = Vec::new();
        if !policy::needs_image_material(requirements) {
            // reject / insecureAcceptAnything: decided without the image.
            let material = ImageMaterial::unfetched(reference.clone());
            instances.push(instance_verdict(
                None,
                &[],
                None,
                policy::is_running_image_allowed(requirements, &material, ctx.keys),
            ));
        } else {
            match fetched {
                Err(e) => {
                    return rejected_document(doc, Some(scope), e.clone());
                }
                Ok(list) => {
                    for f in list {
                        instances.push(
                            self.evaluate_instance(doc, requirements, reference, f, ctx)
                                .await,
                        );
                    }
                }
            }
        }
        let multi = instances.len() > 1;
        let failed = instances.iter().find(|i| !i.allowed);
        let reason = failed.map(|i| match (&i.platform, multi) {
            (Some(p), true) => format!(
                "instance {} ({p}): {}",
                i.digest.as_deref().unwrap_or("?"),
                i.reason.clone().unwrap_or_default()
            ),
            _ => i.reason.clone().unwrap_or_default(),
        });
        DocumentVerdict {
            document: doc.name.clone(),
            mode: doc.mode,
            scope: Some(scope),
            allowed: failed.is_none(),
            reason,
            instances,
        }
    }

    /// A remembered verdict for `key` (accepted or rejected), counted as a hit.
    fn cached_verdict(&self, key: &VerdictKey) -> Option<InstanceVerdict> {
        let v = self.accepted.get(key).or_else(|| self.rejected.get(key))?;
        if let Some(m) = &self.metrics {
            m.count_cache("verdict", true);
        }
        Some((*v).clone())
    }

    async fn evaluate_instance(
        &self,
        doc: &PolicyDocument,
        requirements: &[policy::Requirement],
        reference: &ImageReference,
        fetched: &FetchedInstance,
        ctx: &VerifyContext<'_>,
    ) -> InstanceVerdict {
        let digest = &fetched.instance.digest;
        let key = verdict_key(&[
            doc.name.as_bytes(),
            &doc.generation.to_le_bytes(),
            digest.algorithm().as_bytes(),
            digest.encoded().as_bytes(),
            reference.identity().as_bytes(),
        ]);
        if let Some(v) = self.cached_verdict(&key) {
            return v;
        }
        let read = self.signatures_of(reference, fetched, ctx).await;
        // Concurrent reviews of a new image all wait for the same signature
        // read and wake together: the first to get here computes the
        // verdict, the others find it.
        if let Some(v) = self.cached_verdict(&key) {
            return v;
        }
        if let Some(m) = &self.metrics {
            m.count_cache("verdict", false);
        }
        let (sources, signatures): (Vec<String>, Result<Vec<_>, String>) = match read {
            Ok(list) => (
                list.iter().map(|(s, _)| s.clone()).collect(),
                Ok(list.iter().map(|(_, b)| b.clone()).collect()),
            ),
            Err(e) => (vec![], Err(e.clone())),
        };
        let material = ImageMaterial::new(
            reference.clone(),
            Ok(fetched.instance.manifest.bytes.to_vec()),
            signatures,
        );
        let verdict = policy::is_running_image_allowed(requirements, &material, ctx.keys);
        let platform =
            (!fetched.instance.platforms.is_empty()).then(|| fetched.instance.platforms.join(", "));
        let v = instance_verdict(
            Some(fetched.instance.digest.to_string()),
            &sources,
            platform,
            verdict,
        );
        // Signature read failures are transient: never cache them.
        if read.is_ok() {
            let cache = if v.allowed {
                &self.accepted
            } else {
                &self.rejected
            };
            let content = verdict_key(&[serde_json::to_string(&v).unwrap_or_default().as_bytes()]);
            let shared = self
                .interned
                .get_with(&content, async { Arc::new(v.clone()) })
                .await;
            cache.insert(key, shared);
        }
        v
    }
}

/// A fixed-size cache key: 128 bits of SHA-256 over length-prefixed
/// parts (collisions are out of reach; a formatted string key would cost
/// far more memory per cached verdict).
type VerdictKey = [u8; 16];

fn verdict_key(parts: &[&[u8]]) -> VerdictKey {
    use sha2::{Digest as _, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let mut key = [0u8; 16];
    key.copy_from_slice(&h.finalize()[..16]);
    key
}

/// Distinct pod image strings whose parsed reference is remembered.
const REFERENCE_MEMO_ENTRIES: u64 = 10_000;

type Signatures = Arc<Vec<(String, crate::signature::blob::StoredSignature)>>;

/// One resolved instance, and its signatures once some document needs them.
struct FetchedInstance {
    instance: Instance,
    signatures: tokio::sync::OnceCell<Result<Signatures, String>>,
}

enum Lookup<'a> {
    Broken(String),
    NoOpinion,
    Scope(MatchedScope, &'a [policy::Requirement]),
}

fn matched_scope(s: &policy::MatchedScope) -> MatchedScope {
    match s {
        policy::MatchedScope::Scope(k) => MatchedScope::Scope(k.clone()),
        policy::MatchedScope::TransportDefault => MatchedScope::TransportDefault,
        policy::MatchedScope::Default => MatchedScope::Default,
    }
}

fn rejected_document(
    doc: &PolicyDocument,
    scope: Option<MatchedScope>,
    reason: String,
) -> DocumentVerdict {
    DocumentVerdict {
        document: doc.name.clone(),
        mode: doc.mode,
        scope,
        allowed: false,
        reason: Some(reason),
        instances: vec![],
    }
}

/// Converts the policy module's report into the engine's.
fn instance_verdict(
    digest: Option<String>,
    sources: &[String],
    platform: Option<String>,
    verdict: policy::Verdict,
) -> InstanceVerdict {
    let requirements = verdict
        .requirements
        .iter()
        .map(|r| RequirementReport {
            requirement: r.requirement.to_string(),
            passed: matches!(r.outcome, policy::RequirementOutcome::Allowed),
            reason: match &r.outcome {
                policy::RequirementOutcome::Denied(why) => Some(why.clone()),
                policy::RequirementOutcome::NotEvaluated => {
                    Some("not evaluated: an earlier requirement failed".into())
                }
                policy::RequirementOutcome::Allowed => None,
            },
            signatures: r
                .signatures
                .iter()
                .map(|s| {
                    let source = sources
                        .get(s.number.saturating_sub(1))
                        .cloned()
                        .unwrap_or_else(|| format!("signature-{}", s.number));
                    let (accepted, detail) = match &s.outcome {
                        SignatureOutcome::Accepted(a) => (
                            true,
                            format!(
                                "signed by {} for {}",
                                a.signer.primary_fingerprint, a.docker_reference
                            ),
                        ),
                        SignatureOutcome::Rejected(rej) => (false, rej.reason.clone()),
                        SignatureOutcome::Ignored(why) => (false, format!("ignored: {why}")),
                        SignatureOutcome::NotChecked => (false, "not checked".into()),
                    };
                    SignatureReport {
                        source,
                        accepted,
                        detail,
                    }
                })
                .collect(),
        })
        .collect();
    InstanceVerdict {
        digest,
        platform,
        allowed: verdict.allowed,
        reason: verdict.reason,
        requirements,
    }
}

/// A coarse, bounded label for the metrics of a rejection.
fn reason_class(v: &ImageVerdict) -> &'static str {
    let reason = v
        .documents
        .iter()
        .find(|d| !d.allowed)
        .and_then(|d| d.reason.as_deref())
        .unwrap_or("");
    if reason.contains("is rejected by policy") {
        "reject"
    } else if reason.contains("no signature exists") {
        "unsigned"
    } else if reason.contains("deadline") {
        "deadline"
    } else if reason.contains("invalid image reference") {
        "reference"
    } else if reason.contains("failed to load") {
        "policy"
    } else if reason.contains("reading")
        || reason.contains("manifest")
        || reason.contains("signature storage")
    {
        "fetch"
    } else {
        "signature"
    }
}

/// What a verification is waiting for, so that a deadline denial can say it.
/// Runs registry or lookaside work until `deadline` (DESIGN decision 8);
/// when it strikes, the error says how long was allowed and `waiting_for`
/// what (worded only then: every warm review passes here).
async fn within_deadline<T>(
    deadline: Option<Instant>,
    work: impl Future<Output = Result<T, String>>,
    waiting_for: impl FnOnce() -> String,
) -> Result<T, String> {
    let Some(deadline) = deadline else {
        return work.await;
    };
    let started = Instant::now();
    match tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), work).await {
        Ok(outcome) => outcome,
        Err(_) => {
            let budget = deadline.saturating_duration_since(started);
            Err(format!(
                "verification deadline exceeded after {}: no answer in time from {}",
                humantime::format_duration(Duration::from_millis(budget.as_millis() as u64)),
                waiting_for()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::testserver::{Auth, FakeRegistry};
    use base64::Engine as _;

    fn fixture(path: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/cimage/{path}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    /// The registry signature API (X-Registry-Supports-Signatures: 1)
    /// replaces the lookaside entirely; only `schemaVersion: 2`, `type:
    /// atomic` entries count.
    #[tokio::test]
    async fn registry_signature_extension() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let registry = FakeRegistry::start(Auth::None).await;
        let manifest = fixture("upstream/signature/fixtures/image.manifest.json");
        let digest = crate::reference::Digest::sha256_of(&manifest).to_string();
        registry.put(
            "library/busybox",
            "latest",
            "application/vnd.docker.distribution.manifest.v2+json",
            &manifest,
        );
        registry.put(
            "library/other",
            "latest",
            "application/vnd.docker.distribution.manifest.v2+json",
            &manifest,
        );
        registry.set_supports_signatures("1");
        let signature = base64::engine::general_purpose::STANDARD
            .encode(fixture("generated/gen-busybox.signature"));
        let entry = |version: u32| serde_json::json!({"schemaVersion": version, "name": format!("{digest}@x"), "type": "atomic", "content": signature});
        registry.put_signatures(
            &format!("library/busybox/signatures/{digest}"),
            serde_json::json!({"signatures": [entry(2)]})
                .to_string()
                .as_bytes(),
        );
        registry.put_signatures(
            &format!("library/other/signatures/{digest}"),
            serde_json::json!({"signatures": [entry(1)]})
                .to_string()
                .as_bytes(),
        );
        let key = std::path::PathBuf::from(format!(
            "{}/tests/fixtures/cimage/upstream/signature/fixtures/public-key.gpg",
            env!("CARGO_MANIFEST_DIR")
        ));
        // The fixture signs docker.io/library/busybox:latest; this registry
        // is another host, so trust that exact identity.
        let policy = serde_json::json!({"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": key,
            "signedIdentity": {"type": "exactReference", "dockerReference": "docker.io/library/busybox:latest"}}]});
        let document = Arc::new(PolicyDocument {
            name: "policy.json".into(),
            generation: 0,
            mode: Mode::Enforce,
            policy: Ok(Policy::parse(
                policy.to_string().as_bytes(),
                crate::policy::ParseOptions::POLICY_FILE,
            )
            .unwrap()),
        });
        let engine = Engine::new(
            EngineConfig {
                registry: RegistryOptions {
                    tls_verify: false,
                    ..RegistryOptions::default()
                },
                ..EngineConfig::default()
            },
            None,
        )
        .unwrap();
        // A lookaside that would fail every read: it must not be consulted.
        let registries_d = RegistryConfiguration::from_yaml(
            b"default-docker: {lookaside: 'http://127.0.0.1:9/never'}",
        )
        .unwrap();
        let keys = crate::policy::FilesystemKeyResolver::new();
        let ctx = VerifyContext {
            registries_d: &registries_d,
            keys: &keys,
            credentials: &crate::registry::Anonymous,
            deadline: None,
        };
        let v = engine
            .verify_image(
                &format!("{}/library/busybox:latest", registry.host()),
                std::slice::from_ref(&document),
                &ctx,
            )
            .await;
        assert!(v.allowed(), "{v:?}");
        assert_eq!(
            v.documents[0].instances[0].requirements[0].signatures[0].source,
            "registry signature API #1"
        );
        let v = engine
            .verify_image(
                &format!("{}/library/other:latest", registry.host()),
                &[document],
                &ctx,
            )
            .await;
        assert_eq!(
            v.documents[0].reason.as_deref(),
            Some("A signature was required, but no signature exists")
        );
    }
}
