//! From the cluster's documents to what admission reads (DESIGN: the
//! controller compiles documents with `policy` into the policy set):
//!
//! - [`PolicyCompiler`]: the [`DocumentCompiler`] behind status, using the
//!   same strict parser as admission, reporting keys and lint warnings;
//! - [`spawn_policy_sets`]: a task that rebuilds the [`PolicySet`] on every
//!   snapshot (and periodically, so `keyRef` keys are re-read), resolving
//!   `keyRef` keys from ConfigMaps and Secrets, and keeps the engine's node
//!   platforms current;
//! - [`ClusterCredentials`]: registry credentials from pull secrets.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};
use tokio::sync::watch;

use super::pull_secrets::{PodPullContext, PullSecretResolver};
use super::status::{CompileReport, DocumentCompiler};
use super::watch::{ClusterSnapshot, DocumentKind, PolicyDocumentSource};
use crate::admission::review::RequestContext;
use crate::admission::verifier::CredentialProvider;
use crate::crd::TrustedKey;
use crate::engine::Engine;
use crate::policy::{KeyRef, KeyRefKind, KeySource, ParseOptions, Policy, Requirement};
use crate::policyset::{DocumentId, LoadedDocument, PolicySet, compile};
use crate::reference::Named;
use crate::registry::{CredentialSource, Credentials};
use crate::signature::mechanism::Keyring;

/// A key expiring within this is a status warning.
const KEY_EXPIRY_WARNING: Duration = Duration::from_secs(30 * 86400);

fn id_of(doc: &PolicyDocumentSource) -> DocumentId {
    doc.id.to_string()
}

/// Where a document's `keyRef`s are read: imagegate's namespace for
/// cluster documents, the document's own for namespaced ones.
fn key_namespace<'a>(doc: &'a PolicyDocumentSource, own: &'a str) -> &'a str {
    match doc.id.kind {
        DocumentKind::Cluster => own,
        DocumentKind::Namespaced => doc.id.namespace.as_deref().unwrap_or(own),
    }
}

/// Compiles documents for status with the parser admission uses.
#[derive(Default)]
pub struct PolicyCompiler;

impl DocumentCompiler for PolicyCompiler {
    fn compile(&self, doc: &PolicyDocumentSource) -> CompileReport {
        let policy_json = doc.policy.to_string();
        let policy = match Policy::parse(policy_json.as_bytes(), ParseOptions::KUBERNETES) {
            Ok(p) => p,
            Err(e) => {
                let path = format!("spec.policy{}", e.path.trim_start_matches('$'));
                return CompileReport::invalid(path, e.message);
            }
        };
        if let Some(l) = &doc.lookaside
            && let Err(e) = crate::signature::registries_d::RegistryConfiguration::from_yaml(
                l.to_string().as_bytes(),
            )
        {
            return CompileReport::invalid("spec.lookaside", e);
        }
        let mut warnings: Vec<String> = crate::policy::lint(&policy)
            .iter()
            .map(|w| w.to_string())
            .collect();
        let mut keys = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        let mut add = |blobs: Vec<Vec<u8>>, warnings: &mut Vec<String>| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            for k in Keyring::from_blobs(&blobs).key_info() {
                if !seen.insert(k.fingerprint.clone()) {
                    continue;
                }
                if let Some(exp) = k.expires {
                    if exp <= now {
                        warnings.push(format!(
                            "key {} expired; signatures by it are rejected",
                            k.fingerprint
                        ));
                    } else if exp - now < KEY_EXPIRY_WARNING.as_secs() as i64 {
                        warnings.push(format!("key {} expires within 30 days", k.fingerprint));
                    }
                }
                if k.revoked {
                    warnings.push(format!(
                        "key {} is revoked; signatures by it are rejected",
                        k.fingerprint
                    ));
                }
                keys.push(TrustedKey {
                    fingerprint: k.fingerprint,
                    user_ids: k.user_ids,
                    algorithm: k.algorithm,
                    expires: k.expires.map(|e| {
                        humantime::format_rfc3339(
                            std::time::UNIX_EPOCH + Duration::from_secs(e.max(0) as u64),
                        )
                        .to_string()
                    }),
                });
            }
        };
        let mut policy = policy;
        let _ = policy.try_for_each_requirement_mut(|r| -> Result<(), ()> {
            if let Requirement::SignedBy(sb) = r {
                match &sb.keys {
                    KeySource::Data(d) => add(vec![d.clone()], &mut warnings),
                    KeySource::Path(p) => match std::fs::read(p) {
                        Ok(b) => add(vec![b], &mut warnings),
                        Err(e) => {
                            warnings.push(format!("key file {p} is not readable by imagegate: {e}"))
                        }
                    },
                    KeySource::Paths(ps) => {
                        for p in ps {
                            match std::fs::read(p) {
                                Ok(b) => add(vec![b], &mut warnings),
                                Err(e) => warnings.push(format!(
                                    "key file {p} is not readable by imagegate: {e}"
                                )),
                            }
                        }
                    }
                    // Resolved when the policy set is built; its errors make
                    // that version invalid there.
                    KeySource::Ref(_) => {}
                }
            }
            Ok(())
        });
        CompileReport::valid(keys, warnings)
    }
}

/// Reads `keyRef` keys from the API.
struct KeyRefReader {
    client: Client,
}

impl KeyRefReader {
    async fn read(&self, namespace: &str, r: &KeyRef) -> Result<Vec<u8>, String> {
        let what = format!(
            "keyRef {} {}/{} key {:?}",
            r.kind.json_key(),
            namespace,
            r.name,
            r.key
        );
        match r.kind {
            KeyRefKind::ConfigMap => {
                let cm = Api::<ConfigMap>::namespaced(self.client.clone(), namespace)
                    .get(&r.name)
                    .await
                    .map_err(|e| format!("{what}: {e}"))?;
                if let Some(v) = cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                    return Ok(v.as_bytes().to_vec());
                }
                cm.binary_data
                    .as_ref()
                    .and_then(|d| d.get(&r.key))
                    .map(|b| b.0.clone())
                    .ok_or_else(|| format!("{what}: no such key"))
            }
            KeyRefKind::Secret => {
                let s = Api::<Secret>::namespaced(self.client.clone(), namespace)
                    .get(&r.name)
                    .await
                    .map_err(|e| format!("{what}: {e}"))?;
                s.data
                    .as_ref()
                    .and_then(|d| d.get(&r.key))
                    .map(|b| b.0.clone())
                    .ok_or_else(|| format!("{what}: no such key"))
            }
        }
    }
}

/// Replaces every `keyRef` of a compiled document with the key's bytes
/// (`keyData`), and folds them into its fingerprint so verdicts cached for
/// the old key are not reused. A key that cannot be read makes this
/// version invalid (its last valid version keeps serving).
pub async fn resolve_key_refs(doc: &mut LoadedDocument, namespace: &str, client: &Client) {
    let reader = KeyRefReader {
        client: client.clone(),
    };
    let Ok(policy) = &mut doc.policy else { return };
    let mut refs = Vec::new();
    let _ = policy.try_for_each_requirement_mut(|r| -> Result<(), ()> {
        if let Requirement::SignedBy(sb) = r
            && let KeySource::Ref(k) = &sb.keys
        {
            refs.push(k.clone());
        }
        Ok(())
    });
    if refs.is_empty() {
        return;
    }
    let mut resolved = HashMap::new();
    for r in refs {
        match reader.read(namespace, &r).await {
            Ok(bytes) => {
                resolved.insert(r, bytes);
            }
            Err(e) => {
                doc.policy = Err(e);
                return;
            }
        }
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    doc.fingerprint.hash(&mut hasher);
    let _ = policy.try_for_each_requirement_mut(|r| -> Result<(), ()> {
        if let Requirement::SignedBy(sb) = r
            && let KeySource::Ref(k) = &sb.keys
            && let Some(bytes) = resolved.get(k)
        {
            bytes.hash(&mut hasher);
            sb.keys = KeySource::Data(bytes.clone());
        }
        Ok(())
    });
    doc.fingerprint = hasher.finish();
}

/// Builds policy sets from snapshots, publishes them, and keeps `engine`'s
/// platforms equal to the nodes'. The receiver's first value is an empty
/// set; `ready` is set once a set built from a fully synced snapshot is out.
pub fn spawn_policy_sets(
    client: Client,
    own_namespace: String,
    mut snapshots: watch::Receiver<Arc<ClusterSnapshot>>,
    engine: Arc<Engine>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    ready: Arc<std::sync::atomic::AtomicBool>,
    refresh: Duration,
) -> watch::Receiver<Arc<PolicySet>> {
    let (tx, rx) = watch::channel(Arc::new(PolicySet::default()));
    tokio::spawn(async move {
        let mut last_good = HashMap::new();
        // The generation served per document (the last that loaded).
        let mut served: HashMap<String, i64> = HashMap::new();
        loop {
            let snapshot = snapshots.borrow_and_update().clone();
            if !snapshot.platforms.is_empty() {
                engine.set_platforms(snapshot.platforms.clone());
            }
            let mut current = Vec::with_capacity(snapshot.documents.len());
            for doc in &snapshot.documents {
                let namespace = match doc.id.kind {
                    DocumentKind::Cluster => None,
                    DocumentKind::Namespaced => doc.id.namespace.clone(),
                };
                let mut loaded = compile(
                    id_of(doc),
                    namespace,
                    doc.mode,
                    &doc.policy,
                    doc.lookaside.clone(),
                );
                resolve_key_refs(&mut loaded, key_namespace(doc, &own_namespace), &client).await;
                current.push(loaded);
            }
            let set = PolicySet::build(&current, &mut last_good);
            served.retain(|id, _| snapshot.documents.iter().any(|d| id_of(d) == *id));
            for doc in &snapshot.documents {
                let id = id_of(doc);
                if !set.errors.iter().any(|(e, _)| *e == id)
                    && let Some(g) = doc.generation
                {
                    served.insert(id, g);
                }
            }
            for (id, e) in &set.errors {
                tracing::warn!(document = %id, error = %e, "policy document version refused; last valid version served");
            }
            let errors = set.errors.clone();
            if tx.send(Arc::new(set)).is_err() {
                return;
            }
            // After the send: a replica shows a generation once it decides
            // with it.
            if let Some(m) = &metrics {
                m.policy_generation.clear();
                for (id, g) in &served {
                    m.policy_generation
                        .get_or_create(&crate::metrics::DocumentLabels {
                            document: id.clone(),
                        })
                        .set(*g);
                }
                m.policy_load_errors.clear();
                for (id, _) in &errors {
                    m.policy_load_errors
                        .get_or_create(&crate::metrics::DocumentLabels {
                            document: id.clone(),
                        })
                        .set(1);
                }
            }
            if snapshot.synced {
                ready.store(true, std::sync::atomic::Ordering::Release);
            }
            tokio::select! {
                changed = snapshots.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(refresh) => {}
            }
        }
    });
    rx
}

/// Registry credentials for one review: for each image, the first pull
/// secret credential that matches it (the pod's, its ServiceAccount's,
/// then imagegate's configured secrets, kubelet-style), then `fallback`
/// (`--authfile`).
pub struct ClusterCredentials {
    pub resolver: Arc<PullSecretResolver>,
    pub fallback: Arc<dyn CredentialSource>,
}

/// Credentials found for the images of one review.
struct PerImage {
    /// Every matching pull-secret credential, in the kubelet's order.
    by_name: HashMap<String, Vec<Credentials>>,
    fallback: Arc<dyn CredentialSource>,
}

impl CredentialSource for PerImage {
    fn lookup(&self, image: &Named) -> Result<Option<Credentials>, crate::registry::AuthError> {
        match self.by_name.get(&image.name()) {
            Some(c) => Ok(c.first().cloned()),
            None => self.fallback.lookup(image),
        }
    }

    fn lookup_all(&self, image: &Named) -> Result<Vec<Credentials>, crate::registry::AuthError> {
        match self.by_name.get(&image.name()) {
            Some(c) => Ok(c.clone()),
            None => self.fallback.lookup_all(image),
        }
    }
}

impl CredentialProvider for ClusterCredentials {
    fn credentials_for<'a>(
        &'a self,
        context: &'a RequestContext,
        images: &'a [String],
    ) -> Pin<Box<dyn Future<Output = Arc<dyn CredentialSource>> + Send + 'a>> {
        Box::pin(async move {
            let Some(namespace) = &context.namespace else {
                return self.fallback.clone();
            };
            let pod = PodPullContext {
                namespace: namespace.clone(),
                image_pull_secrets: context.image_pull_secrets.clone(),
                service_account: context.service_account.clone(),
            };
            let mut by_name = HashMap::new();
            for image in images {
                let Ok(named) = Named::parse_normalized(image) else {
                    continue;
                };
                match self.resolver.credentials(&pod, image).await {
                    Ok(found) if !found.is_empty() => {
                        let all = found
                            .iter()
                            .map(|c| Credentials::basic(&c.username, &c.password))
                            .collect();
                        by_name.insert(named.name(), all);
                    }
                    Ok(_) => {}
                    // The kubelet's pull would fail the same way; the
                    // registry will answer anonymously and the verdict says so.
                    Err(e) => tracing::warn!(%image, error = %e, "pull secrets could not be read"),
                }
            }
            Arc::new(PerImage {
                by_name,
                fallback: self.fallback.clone(),
            }) as Arc<dyn CredentialSource>
        })
    }
}
