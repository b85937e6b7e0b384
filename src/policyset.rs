//! The compiled policy set the admission side reads: every
//! ClusterImagePolicy, the ImagePolicies of each namespace, and the
//! registries.d configuration merged from the cluster documents. It is
//! built from Kubernetes objects (the controller) or from YAML files
//! (`serve --policies DIR`), and replaced atomically on every change.
//!
//! A document whose new version is invalid keeps serving its last valid
//! version; one that was never valid denies every image in its reach,
//! naming itself (never a silent allow).

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::crd::{ClusterImagePolicy, ClusterImagePolicySpec, ImagePolicy, ImagePolicySpec};
use crate::engine::{Mode, PolicyDocument};
use crate::policy::{ParseOptions, Policy};
use crate::signature::registries_d::RegistryConfiguration;

/// Identifies a document across versions: `ClusterImagePolicy/name` or
/// `ImagePolicy/namespace/name`.
pub type DocumentId = String;

/// One document as loaded, valid or not.
#[derive(Debug, Clone)]
pub struct LoadedDocument {
    pub id: DocumentId,
    /// `None` for cluster documents.
    pub namespace: Option<String>,
    pub mode: Mode,
    /// The compiled policy, or why this version is invalid.
    pub policy: Result<Policy, String>,
    /// The registries.d part (ClusterImagePolicy only), verbatim.
    pub lookaside: Option<serde_json::Value>,
    /// A hash of the source, to tell versions apart.
    pub fingerprint: u64,
}

/// The policy set served to admission.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    cluster: Vec<Arc<PolicyDocument>>,
    namespaced: HashMap<String, Vec<Arc<PolicyDocument>>>,
    pub registries_d: Arc<RegistryConfiguration>,
    /// Problems found while building this set (also reported in logs,
    /// metrics and, in a cluster, status).
    pub errors: Vec<(DocumentId, String)>,
}

impl PolicySet {
    /// The documents that apply to an object in `namespace` (every cluster
    /// document, then that namespace's documents).
    pub fn documents_for(&self, namespace: Option<&str>) -> Vec<Arc<PolicyDocument>> {
        let mut docs = self.cluster.clone();
        if let Some(ns) = namespace
            && let Some(extra) = self.namespaced.get(ns)
        {
            docs.extend(extra.iter().cloned());
        }
        docs
    }

    pub fn document_count(&self) -> usize {
        self.cluster.len() + self.namespaced.values().map(Vec::len).sum::<usize>()
    }

    /// Builds the set from the current versions of every document, using
    /// `last_good` for documents whose current version is invalid.
    /// `last_good` is updated with every valid current version.
    pub fn build(
        current: &[LoadedDocument],
        last_good: &mut HashMap<DocumentId, LoadedDocument>,
    ) -> PolicySet {
        let mut set = PolicySet::default();
        let mut lookasides = Vec::new();
        let mut ids: Vec<&LoadedDocument> = current.iter().collect();
        ids.sort_by(|a, b| a.id.cmp(&b.id));
        for doc in ids {
            let served = match &doc.policy {
                Ok(_) => {
                    last_good.insert(doc.id.clone(), doc.clone());
                    doc.clone()
                }
                Err(e) => {
                    set.errors.push((doc.id.clone(), e.clone()));
                    match last_good.get(&doc.id) {
                        Some(previous) => previous.clone(),
                        None => doc.clone(),
                    }
                }
            };
            if let Some(l) = &served.lookaside {
                lookasides.push((served.id.clone(), l.clone()));
            }
            let compiled = Arc::new(PolicyDocument {
                name: served.id.clone(),
                generation: served.fingerprint,
                mode: served.mode,
                policy: served.policy.clone(),
            });
            match &served.namespace {
                None => set.cluster.push(compiled),
                Some(ns) => set.namespaced.entry(ns.clone()).or_default().push(compiled),
            }
        }
        // Forget documents that no longer exist.
        last_good.retain(|id, _| current.iter().any(|d| &d.id == id));
        let mut merger = crate::signature::registries_d::ConfigMerger::new();
        for (id, value) in &lookasides {
            let yaml = serde_json::to_vec(value).unwrap_or_default();
            if let Err(e) = merger.add_yaml(id, &yaml) {
                set.errors
                    .push((id.clone(), format!("spec.lookaside: {e}")));
            }
        }
        set.registries_d = Arc::new(merger.finish());
        set
    }
}

fn fingerprint(parts: &[&str]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

/// Compiles a ClusterImagePolicy.
pub fn load_cluster_policy(name: &str, spec: &ClusterImagePolicySpec) -> LoadedDocument {
    compile(
        format!("ClusterImagePolicy/{name}"),
        None,
        spec.mode,
        &spec.policy,
        spec.lookaside.clone(),
    )
}

/// Compiles an ImagePolicy.
pub fn load_namespaced_policy(
    namespace: &str,
    name: &str,
    spec: &ImagePolicySpec,
) -> LoadedDocument {
    compile(
        format!("ImagePolicy/{namespace}/{name}"),
        Some(namespace.to_string()),
        spec.mode,
        &spec.policy,
        None,
    )
}

/// Compiles one document's spec (strict policy parse, registries.d check).
pub fn compile(
    id: DocumentId,
    namespace: Option<String>,
    mode: Mode,
    policy: &serde_json::Value,
    lookaside: Option<serde_json::Value>,
) -> LoadedDocument {
    let policy_json = serde_json::to_string(policy).unwrap_or_default();
    let lookaside_json = lookaside
        .as_ref()
        .map(|l| l.to_string())
        .unwrap_or_default();
    let compiled = Policy::parse(policy_json.as_bytes(), ParseOptions::KUBERNETES)
        .map_err(|e| format!("spec.policy: {}", e.with_path()))
        .and_then(|p| match &lookaside {
            Some(l) => RegistryConfiguration::from_yaml(&serde_json::to_vec(l).unwrap_or_default())
                .map(|_| p)
                .map_err(|e| format!("spec.lookaside: {e}")),
            None => Ok(p),
        });
    LoadedDocument {
        fingerprint: fingerprint(&[&id, mode.as_str(), &policy_json, &lookaside_json]),
        id,
        namespace,
        mode,
        policy: compiled,
        lookaside,
    }
}

/// A document's header, read before the typed parse so that a document
/// with an invalid spec still has a name.
#[derive(Deserialize)]
struct Header {
    #[serde(rename = "apiVersion", default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: HeaderMeta,
}

#[derive(Deserialize, Default)]
struct HeaderMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

/// A file of a policy directory and the documents it held (or why it could not be read).
pub type FileLoad = (PathBuf, Result<Vec<LoadedDocument>, String>);

/// Reads every `*.yaml`/`*.yml`/`*.json` file in `dir` (sorted by name),
/// each holding one or more ClusterImagePolicy / ImagePolicy objects.
/// A file that cannot be read or parsed at all yields a document named
/// after the file: it denies everything until fixed, unless a previous
/// load had its documents (see [`DirectoryLoader`]).
pub fn load_directory(dir: &Path) -> Result<Vec<FileLoad>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("reading policy directory {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml" | "json")
                )
                && !p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    files.sort();
    Ok(files
        .into_iter()
        .map(|f| {
            let docs = load_file(&f);
            (f, docs)
        })
        .collect())
}

/// The ClusterImagePolicy / ImagePolicy objects of one YAML (or JSON) file.
pub fn load_file(path: &Path) -> Result<Vec<LoadedDocument>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let values: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text)
        .map_err(|e| format!("parsing {}: {e}", path.display()))?;
    let mut docs = Vec::new();
    for value in values.into_iter().filter(|v| !v.is_null()) {
        docs.push(load_object(path, value)?);
    }
    Ok(docs)
}

fn load_object(path: &Path, value: serde_json::Value) -> Result<LoadedDocument, String> {
    let header: Header =
        serde_json::from_value(value.clone()).map_err(|e| format!("{}: {e}", path.display()))?;
    if header.api_version != "imagegate.dev/v1alpha1" {
        return Err(format!(
            "{}: apiVersion {:?} is not imagegate.dev/v1alpha1",
            path.display(),
            header.api_version
        ));
    }
    if header.metadata.name.is_empty() {
        return Err(format!(
            "{}: {} without metadata.name",
            path.display(),
            header.kind
        ));
    }
    let name = header.metadata.name;
    match header.kind.as_str() {
        "ClusterImagePolicy" => Ok(match serde_json::from_value::<ClusterImagePolicy>(value) {
            Ok(obj) => load_cluster_policy(&name, &obj.spec),
            Err(e) => invalid(
                format!("ClusterImagePolicy/{name}"),
                None,
                format!("spec: {e}"),
            ),
        }),
        "ImagePolicy" => {
            let ns = header
                .metadata
                .namespace
                .unwrap_or_else(|| "default".to_string());
            Ok(match serde_json::from_value::<ImagePolicy>(value) {
                Ok(obj) => load_namespaced_policy(&ns, &name, &obj.spec),
                Err(e) => invalid(
                    format!("ImagePolicy/{ns}/{name}"),
                    Some(ns),
                    format!("spec: {e}"),
                ),
            })
        }
        other => Err(format!(
            "{}: kind {other:?} is neither ClusterImagePolicy nor ImagePolicy",
            path.display()
        )),
    }
}

fn invalid(id: DocumentId, namespace: Option<String>, error: String) -> LoadedDocument {
    LoadedDocument {
        fingerprint: fingerprint(&[&id, &error]),
        id,
        namespace,
        mode: Mode::Enforce,
        policy: Err(error),
        lookaside: None,
    }
}

/// Loads a policy directory repeatedly, remembering each file's last good
/// documents and each document's last good version.
#[derive(Default)]
pub struct DirectoryLoader {
    last_good_files: BTreeMap<PathBuf, Vec<LoadedDocument>>,
    last_good_documents: HashMap<DocumentId, LoadedDocument>,
}

impl DirectoryLoader {
    /// Reads `dir` and builds the set. File-level failures are in the
    /// set's `errors`, named `file <path>`.
    pub fn load(&mut self, dir: &Path) -> Result<PolicySet, String> {
        let files = load_directory(dir)?;
        let mut current = Vec::new();
        let mut file_errors = Vec::new();
        for (path, result) in &files {
            match result {
                Ok(docs) => {
                    self.last_good_files.insert(path.clone(), docs.clone());
                    current.extend(docs.iter().cloned());
                }
                Err(e) => {
                    file_errors.push((format!("file {}", path.display()), e.clone()));
                    match self.last_good_files.get(path) {
                        Some(previous) => current.extend(previous.iter().cloned()),
                        None => current.push(invalid(
                            format!("file {}", path.display()),
                            None,
                            e.clone(),
                        )),
                    }
                }
            }
        }
        self.last_good_files
            .retain(|p, _| files.iter().any(|(f, _)| f == p));
        let mut set = PolicySet::build(&current, &mut self.last_good_documents);
        for e in file_errors {
            if !set.errors.contains(&e) {
                set.errors.push(e);
            }
        }
        Ok(set)
    }
}

/// A hash of every policy file's name and contents: the change detector
/// for [`watch_directory`] (contents, because a mounted ConfigMap changes
/// by swapping a symlink).
fn directory_fingerprint(dir: &Path) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    if let Ok(files) = load_file_list(dir) {
        for f in files {
            f.hash(&mut h);
            std::fs::read(&f).unwrap_or_default().hash(&mut h);
        }
    }
    h.finish()
}

fn load_file_list(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    Ok(files)
}

/// Loads `dir` now, then polls it every `interval` and publishes a new set
/// (atomically, through the channel) whenever a file changes. Load
/// problems are logged and counted in `imagegate_policy_load_errors`.
pub fn watch_directory(
    dir: PathBuf,
    interval: std::time::Duration,
    metrics: Option<Arc<crate::metrics::Metrics>>,
) -> Result<tokio::sync::watch::Receiver<Arc<PolicySet>>, String> {
    let mut loader = DirectoryLoader::default();
    let report = move |set: &PolicySet, metrics: &Option<Arc<crate::metrics::Metrics>>| {
        for (id, e) in &set.errors {
            tracing::error!(document = %id, error = %e, "policy document not loaded; its last valid version (if any) is served");
        }
        if let Some(m) = metrics {
            m.policy_load_errors.clear();
            for (id, _) in &set.errors {
                m.policy_load_errors
                    .get_or_create(&crate::metrics::DocumentLabels {
                        document: id.clone(),
                    })
                    .set(1);
            }
        }
        tracing::info!(
            documents = set.document_count(),
            errors = set.errors.len(),
            "policy set loaded"
        );
    };
    let first = loader.load(&dir)?;
    report(&first, &metrics);
    let (tx, rx) = tokio::sync::watch::channel(Arc::new(first));
    let mut seen = directory_fingerprint(&dir);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if tx.is_closed() {
                return;
            }
            let now = directory_fingerprint(&dir);
            if now == seen {
                continue;
            }
            seen = now;
            match loader.load(&dir) {
                Ok(set) => {
                    report(&set, &metrics);
                    let _ = tx.send(Arc::new(set));
                }
                Err(e) => {
                    tracing::error!(error = %e, "policy directory unreadable; previous policy set kept")
                }
            }
        }
    });
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::ImageReference;

    const CLUSTER: &str = r#"
apiVersion: imagegate.dev/v1alpha1
kind: ClusterImagePolicy
metadata: {name: base}
spec:
  mode: Enforce
  policy:
    transports:
      docker:
        registry.example.com: [{type: insecureAcceptAnything}]
  lookaside:
    docker:
      registry.example.com: {lookaside: "https://sigs.example.com"}
---
apiVersion: imagegate.dev/v1alpha1
kind: ImagePolicy
metadata: {name: strict, namespace: team}
spec:
  mode: Warn
  policy:
    default: [{type: reject}]
"#;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    fn verdict_scope(set: &PolicySet, ns: Option<&str>) -> Vec<(String, Option<String>)> {
        let image = ImageReference::parse("registry.example.com/app:v1").unwrap();
        set.documents_for(ns)
            .iter()
            .map(|d| {
                let scope = d
                    .policy
                    .as_ref()
                    .ok()
                    .and_then(|p| p.requirements_for(&image))
                    .map(|m| m.scope.to_string());
                (d.name.clone(), scope)
            })
            .collect()
    }

    #[test]
    fn loads_cluster_and_namespaced_documents() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "policies.yaml", CLUSTER);
        let set = DirectoryLoader::default().load(dir.path()).unwrap();
        assert!(set.errors.is_empty(), "{:?}", set.errors);
        assert_eq!(set.document_count(), 2);
        assert_eq!(
            verdict_scope(&set, Some("team")),
            [
                (
                    "ClusterImagePolicy/base".to_string(),
                    Some("scope \"registry.example.com\"".to_string())
                ),
                (
                    "ImagePolicy/team/strict".to_string(),
                    Some("default".to_string())
                ),
            ]
        );
        assert_eq!(set.documents_for(Some("other")).len(), 1);
        assert_eq!(set.documents_for(Some("team"))[1].mode, Mode::Warn);
        let image = ImageReference::parse("registry.example.com/app:v1").unwrap();
        assert_eq!(
            set.registries_d.signature_top_level(&image, false),
            Some("https://sigs.example.com")
        );
    }

    #[test]
    fn invalid_new_version_keeps_the_last_good_one() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "policies.yaml", CLUSTER);
        let mut loader = DirectoryLoader::default();
        let good = loader.load(dir.path()).unwrap();
        // An unknown key inside spec.policy: c/image's strict rules refuse it.
        write(
            dir.path(),
            "policies.yaml",
            &CLUSTER.replace(
                "type: insecureAcceptAnything",
                "type: insecureAcceptAnything, bogus: 1",
            ),
        );
        let set = loader.load(dir.path()).unwrap();
        assert_eq!(set.errors.len(), 1);
        assert!(
            set.errors[0].1.contains("Unknown key \"bogus\""),
            "{:?}",
            set.errors
        );
        assert_eq!(verdict_scope(&set, None), verdict_scope(&good, None));
        // A file that is not YAML at all: both documents keep their last version.
        write(dir.path(), "policies.yaml", "{{{ not yaml");
        let set = loader.load(dir.path()).unwrap();
        assert_eq!(set.document_count(), 2);
        assert!(set.errors.iter().any(|(id, _)| id.starts_with("file ")));
    }

    #[test]
    fn never_valid_documents_deny_naming_themselves() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "broken.yaml", "{{{ not yaml");
        write(
            dir.path(),
            "bad-spec.yaml",
            "apiVersion: imagegate.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {name: bad}\nspec:\n  policy: {default: []}\n",
        );
        let set = DirectoryLoader::default().load(dir.path()).unwrap();
        let docs = set.documents_for(None);
        assert_eq!(docs.len(), 2);
        let bad = docs
            .iter()
            .find(|d| d.name == "ClusterImagePolicy/bad")
            .unwrap();
        assert!(
            bad.policy
                .as_ref()
                .unwrap_err()
                .contains("List of verification policy requirements must not be empty")
        );
        let broken = docs.iter().find(|d| d.name.starts_with("file ")).unwrap();
        assert!(broken.policy.is_err());
    }

    #[test]
    fn wrong_kinds_and_versions_are_file_errors() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
        );
        let set = DirectoryLoader::default().load(dir.path()).unwrap();
        assert!(
            set.errors[0].1.contains("is not imagegate.dev/v1alpha1"),
            "{:?}",
            set.errors
        );
    }
}
