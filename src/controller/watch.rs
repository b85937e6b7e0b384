//! The cluster state imagegate reacts to, kept current by kube-runtime
//! reflectors: every ClusterImagePolicy, every ImagePolicy (all
//! namespaces) and the platforms of the Nodes (DESIGN decisions 2 and 5).
//!
//! Every replica runs these watches (admission needs them, leader or not).
//! The admission side reads a [`ClusterSnapshot`]: an immutable value
//! behind an `Arc`, replaced atomically and announced on a
//! `tokio::sync::watch` channel the moment a watch event changes it. Status
//! churn (imagegate's own status writes) changes no snapshot: a snapshot
//! holds only what admission uses (documents as written, platforms).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::crd::{ClusterImagePolicy, ImagePolicy};
use crate::engine::Mode;

/// A platform whose manifest-list instance admission must verify (the
/// manifest module's type, so node platforms feed instance selection as is).
pub use crate::manifest::list::Platform;

/// The label the kubelet sets for the OS (also in `status.nodeInfo`).
pub const LABEL_OS: &str = "kubernetes.io/os";
/// The label the kubelet sets for the architecture (also in `status.nodeInfo`).
pub const LABEL_ARCH: &str = "kubernetes.io/arch";
/// A label some distributions set for the CPU variant (`v7`, `v8`); the
/// kubelet reports no variant anywhere else.
pub const LABEL_ARCH_VARIANT: &str = "kubernetes.io/arch-variant";

/// The platform of a Node: OS and architecture as the kubelet reports
/// them in `status.nodeInfo`, falling back to the well-known labels (a
/// node whose status is not yet posted); the variant from
/// [`LABEL_ARCH_VARIANT`]. `None` when OS or architecture is unknown.
pub fn node_platform(node: &Node) -> Option<Platform> {
    let info = node.status.as_ref().and_then(|s| s.node_info.as_ref());
    let labels = node.labels();
    let pick = |reported: Option<&String>, label: &str| -> Option<String> {
        reported
            .filter(|v| !v.is_empty())
            .or_else(|| labels.get(label).filter(|v| !v.is_empty()))
            .cloned()
    };
    let os = pick(info.map(|i| &i.operating_system), LABEL_OS)?;
    let architecture = pick(info.map(|i| &i.architecture), LABEL_ARCH)?;
    let variant = labels
        .get(LABEL_ARCH_VARIANT)
        .filter(|v| !v.is_empty())
        .cloned();
    Some(Platform {
        os,
        architecture,
        variant,
    })
}

/// Which kind of policy document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DocumentKind {
    Cluster,
    Namespaced,
}

/// Names a policy document: `ClusterImagePolicy/NAME` or
/// `ImagePolicy/NAMESPACE/NAME` (the form used in messages).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DocumentId {
    pub kind: DocumentKind,
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.kind, &self.namespace) {
            (DocumentKind::Cluster, _) => write!(f, "ClusterImagePolicy/{}", self.name),
            (DocumentKind::Namespaced, ns) => write!(
                f,
                "ImagePolicy/{}/{}",
                ns.as_deref().unwrap_or(""),
                self.name
            ),
        }
    }
}

/// One policy document as written in the cluster, before compilation.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyDocumentSource {
    pub id: DocumentId,
    pub uid: Option<String>,
    /// `metadata.generation`: bumped by the API server on every spec change.
    pub generation: Option<i64>,
    /// `spec.policy`, a containers-policy.json document.
    pub policy: serde_json::Value,
    /// `spec.lookaside` (ClusterImagePolicy only), a registries.d document.
    pub lookaside: Option<serde_json::Value>,
    pub mode: Mode,
}

impl PolicyDocumentSource {
    pub fn from_cluster_policy(p: &ClusterImagePolicy) -> PolicyDocumentSource {
        PolicyDocumentSource {
            id: DocumentId {
                kind: DocumentKind::Cluster,
                namespace: None,
                name: p.name_any(),
            },
            uid: p.uid(),
            generation: p.metadata.generation,
            policy: p.spec.policy.clone(),
            lookaside: p.spec.lookaside.clone(),
            mode: p.spec.mode,
        }
    }

    pub fn from_image_policy(p: &ImagePolicy) -> PolicyDocumentSource {
        PolicyDocumentSource {
            id: DocumentId {
                kind: DocumentKind::Namespaced,
                namespace: p.namespace(),
                name: p.name_any(),
            },
            uid: p.uid(),
            generation: p.metadata.generation,
            policy: p.spec.policy.clone(),
            lookaside: None,
            mode: p.spec.mode,
        }
    }
}

/// What admission needs from the cluster, at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterSnapshot {
    /// Increases with every published change.
    pub version: u64,
    /// Every document, cluster documents first, each group sorted by name.
    pub documents: Vec<Arc<PolicyDocumentSource>>,
    /// The platforms to verify, sorted and without duplicates.
    pub platforms: Vec<Platform>,
    /// Whether `platforms` comes from configuration rather than Nodes.
    pub platforms_overridden: bool,
    /// Whether every watch has completed its initial list. Before that,
    /// the document set may be incomplete and admission should not trust it.
    pub synced: bool,
}

impl ClusterSnapshot {
    /// The ClusterImagePolicy documents.
    pub fn cluster_documents(&self) -> impl Iterator<Item = &Arc<PolicyDocumentSource>> {
        self.documents
            .iter()
            .filter(|d| d.id.kind == DocumentKind::Cluster)
    }

    /// The documents that apply in `namespace`: every cluster document,
    /// then that namespace's ImagePolicies.
    pub fn documents_for(&self, namespace: &str) -> Vec<Arc<PolicyDocumentSource>> {
        self.documents
            .iter()
            .filter(|d| match d.id.kind {
                DocumentKind::Cluster => true,
                DocumentKind::Namespaced => d.id.namespace.as_deref() == Some(namespace),
            })
            .cloned()
            .collect()
    }

    /// Equal content, ignoring `version`.
    fn same_content(&self, other: &ClusterSnapshot) -> bool {
        self.documents == other.documents
            && self.platforms == other.platforms
            && self.platforms_overridden == other.platforms_overridden
            && self.synced == other.synced
    }
}

/// How the watches are set up.
#[derive(Clone, Debug, Default)]
pub struct WatchConfig {
    /// Platforms to verify instead of those of the Nodes (`--platform`);
    /// with an override, Nodes are not watched at all.
    pub platforms: Option<Vec<Platform>>,
}

/// The three reflector stores and the channel announcing their changes.
struct Publisher {
    cluster: Store<ClusterImagePolicy>,
    namespaced: Store<ImagePolicy>,
    nodes: Option<Store<Node>>,
    platform_override: Option<Vec<Platform>>,
    synced: [AtomicBool; 3],
    snapshot_tx: watch::Sender<Arc<ClusterSnapshot>>,
    /// Bumped on every watch event, status-only changes included (the
    /// status writer listens to this).
    events_tx: watch::Sender<u64>,
    /// Serialises rebuilds so a stale view never replaces a newer one.
    rebuild_lock: Mutex<()>,
}

impl Publisher {
    fn rebuild(&self) {
        let _guard = self.rebuild_lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut cluster: Vec<Arc<PolicyDocumentSource>> = self
            .cluster
            .state()
            .iter()
            .map(|p| Arc::new(PolicyDocumentSource::from_cluster_policy(p)))
            .collect();
        cluster.sort_by(|a, b| a.id.cmp(&b.id));
        let mut namespaced: Vec<Arc<PolicyDocumentSource>> = self
            .namespaced
            .state()
            .iter()
            .map(|p| Arc::new(PolicyDocumentSource::from_image_policy(p)))
            .collect();
        namespaced.sort_by(|a, b| a.id.cmp(&b.id));
        cluster.extend(namespaced);

        let (platforms, overridden) = match (&self.platform_override, &self.nodes) {
            (Some(p), _) => (p.clone(), true),
            (None, Some(nodes)) => (
                nodes
                    .state()
                    .iter()
                    .filter_map(|n| node_platform(n))
                    .collect(),
                false,
            ),
            (None, None) => (Vec::new(), false),
        };
        let platforms: Vec<Platform> = platforms
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let synced = self.synced.iter().all(|s| s.load(Ordering::SeqCst));
        let mut next = ClusterSnapshot {
            version: 0,
            documents: cluster,
            platforms,
            platforms_overridden: overridden,
            synced,
        };
        self.snapshot_tx.send_if_modified(|current| {
            if current.same_content(&next) {
                return false;
            }
            next.version = current.version + 1;
            *current = Arc::new(std::mem::take(&mut next));
            true
        });
        self.events_tx.send_modify(|n| *n += 1);
    }
}

/// The running watches. Dropping it stops them.
pub struct PolicyWatch {
    publisher: Arc<Publisher>,
    tasks: Vec<JoinHandle<()>>,
}

impl PolicyWatch {
    /// Starts the reflectors. They list, then watch, and recover on their
    /// own from dropped connections and `410 Gone` (a fresh list, swapped
    /// in atomically when complete), with kube-runtime's default backoff.
    pub fn spawn(client: Client, config: WatchConfig) -> PolicyWatch {
        let (cluster_store, cluster_writer) = reflector::store::<ClusterImagePolicy>();
        let (ns_store, ns_writer) = reflector::store::<ImagePolicy>();
        let (node_store, node_writer) = if config.platforms.is_none() {
            let (s, w) = reflector::store::<Node>();
            (Some(s), Some(w))
        } else {
            (None, None)
        };
        let (snapshot_tx, _) = watch::channel(Arc::new(ClusterSnapshot::default()));
        let (events_tx, _) = watch::channel(0u64);
        let publisher = Arc::new(Publisher {
            cluster: cluster_store,
            namespaced: ns_store,
            nodes: node_store,
            platform_override: config.platforms.clone(),
            synced: [
                AtomicBool::new(false),
                AtomicBool::new(false),
                // Without a Node watch there is nothing to wait for.
                AtomicBool::new(node_writer.is_none()),
            ],
            snapshot_tx,
            events_tx,
            rebuild_lock: Mutex::new(()),
        });
        publisher.rebuild();

        let mut tasks = vec![
            spawn_reflector(
                Api::<ClusterImagePolicy>::all(client.clone()),
                cluster_writer,
                publisher.clone(),
                0,
            ),
            spawn_reflector(
                Api::<ImagePolicy>::all(client.clone()),
                ns_writer,
                publisher.clone(),
                1,
            ),
        ];
        if let Some(w) = node_writer {
            tasks.push(spawn_reflector(
                Api::<Node>::all(client),
                w,
                publisher.clone(),
                2,
            ));
        }
        PolicyWatch { publisher, tasks }
    }

    /// The current snapshot (an `Arc` clone: cheap).
    pub fn snapshot(&self) -> Arc<ClusterSnapshot> {
        self.publisher.snapshot_tx.borrow().clone()
    }

    /// A receiver that is notified of every new snapshot.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterSnapshot>> {
        self.publisher.snapshot_tx.subscribe()
    }

    /// A receiver notified of every watch event, including changes that do
    /// not alter the snapshot (status updates).
    pub fn object_events(&self) -> watch::Receiver<u64> {
        self.publisher.events_tx.subscribe()
    }

    /// The ClusterImagePolicies as last seen, status included.
    pub fn cluster_policies(&self) -> Vec<Arc<ClusterImagePolicy>> {
        self.publisher.cluster.state()
    }

    /// The ImagePolicies as last seen, status included.
    pub fn image_policies(&self) -> Vec<Arc<ImagePolicy>> {
        self.publisher.namespaced.state()
    }

    pub fn cluster_policy(&self, name: &str) -> Option<Arc<ClusterImagePolicy>> {
        self.publisher.cluster.get(&ObjectRef::new(name))
    }

    pub fn image_policy(&self, namespace: &str, name: &str) -> Option<Arc<ImagePolicy>> {
        self.publisher
            .namespaced
            .get(&ObjectRef::new(name).within(namespace))
    }

    /// Waits until every watch has completed its initial list.
    pub async fn wait_synced(&self) {
        let mut rx = self.subscribe();
        let _ = rx.wait_for(|s| s.synced).await;
    }

    /// Stops the watches.
    pub fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for PolicyWatch {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn_reflector<K>(
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    publisher: Arc<Publisher>,
    index: usize,
) -> JoinHandle<()>
where
    K: Resource + Clone + serde::de::DeserializeOwned + fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let kind = K::kind(&K::DynamicType::default()).to_string();
    tokio::spawn(async move {
        let stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .reflect(writer);
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::InitDone) => {
                    publisher.synced[index].store(true, Ordering::SeqCst);
                    tracing::debug!(%kind, "watch listed");
                }
                // A (re-)list is buffered by the store and swapped in at
                // InitDone: until then nothing visible changed.
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => continue,
                Ok(_) => {}
                Err(e) => {
                    // The watcher recovers by itself (re-watch or re-list).
                    tracing::warn!(%kind, error = %e, "watch interrupted; recovering");
                    continue;
                }
            }
            publisher.rebuild();
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeStatus, NodeSystemInfo};
    use kube::api::ObjectMeta;
    use std::collections::BTreeMap;

    fn node(labels: &[(&str, &str)], info: Option<(&str, &str)>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("n".into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect::<BTreeMap<_, _>>(),
                ),
                ..Default::default()
            },
            status: info.map(|(os, arch)| NodeStatus {
                node_info: Some(NodeSystemInfo {
                    operating_system: os.into(),
                    architecture: arch.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn platform_from_node_info_and_labels() {
        let n = node(
            &[(LABEL_ARCH, "amd64"), (LABEL_OS, "linux")],
            Some(("linux", "arm64")),
        );
        assert_eq!(
            node_platform(&n).unwrap().to_string(),
            "linux/arm64",
            "status.nodeInfo is what the kubelet reports"
        );
        let n = node(
            &[
                (LABEL_ARCH, "arm"),
                (LABEL_OS, "linux"),
                (LABEL_ARCH_VARIANT, "v7"),
            ],
            None,
        );
        assert_eq!(node_platform(&n).unwrap().to_string(), "linux/arm/v7");
        assert_eq!(node_platform(&node(&[(LABEL_OS, "linux")], None)), None);
        assert_eq!(node_platform(&node(&[], Some(("", "")))), None);
    }

    #[test]
    fn platform_parse_and_display() {
        let p: Platform = "linux/arm64/v8".parse().unwrap();
        assert_eq!(p.variant.as_deref(), Some("v8"));
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert_eq!(
            "linux/amd64".parse::<Platform>().unwrap().to_string(),
            "linux/amd64"
        );
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", "linux/arm/"] {
            assert!(bad.parse::<Platform>().is_err(), "{bad}");
        }
    }

    #[test]
    fn document_ids_read_like_kubectl() {
        let id = DocumentId {
            kind: DocumentKind::Namespaced,
            namespace: Some("team".into()),
            name: "strict".into(),
        };
        assert_eq!(id.to_string(), "ImagePolicy/team/strict");
        let id = DocumentId {
            kind: DocumentKind::Cluster,
            namespace: None,
            name: "base".into(),
        };
        assert_eq!(id.to_string(), "ClusterImagePolicy/base");
    }
}
