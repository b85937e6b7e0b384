//! Watch faults a real kube-apiserver cannot be made to produce on demand,
//! against `tests/fake_apiserver/`: watch connections cut mid-stream,
//! `410 Gone`, status-only changes (no new snapshot), and node platforms
//! with and without the override. Documents following adds, changes and
//! deletes, and re-listing after etcd and apiserver restarts, are tested
//! through kube-apiserver in `tests/kube_admission.rs` and
//! `tests/kube_lifecycle.rs`.

mod fake_apiserver;

use fake_apiserver::{FakeApiServer, Gvr, cluster_policy, eventually, image_policy, node, within};
use imagegate::controller::watch::{ClusterSnapshot, Platform, PolicyWatch, WatchConfig};
use serde_json::json;
use std::sync::Arc;

fn reject() -> serde_json::Value {
    json!({"default": [{"type": "reject"}]})
}

fn names(s: &ClusterSnapshot) -> Vec<String> {
    s.documents.iter().map(|d| d.id.to_string()).collect()
}

fn platforms(s: &ClusterSnapshot) -> Vec<String> {
    s.platforms.iter().map(|p| p.to_string()).collect()
}

#[tokio::test]
async fn status_only_changes_publish_no_snapshot() {
    let fake = FakeApiServer::start().await;
    fake.insert(
        &Gvr::cluster_image_policies(),
        cluster_policy("base", reject()),
    );
    let watch = PolicyWatch::spawn(fake.client(), WatchConfig::default());
    within("initial list", watch.wait_synced()).await;
    let version = watch.snapshot().version;
    let mut events = watch.object_events();
    events.mark_unchanged();
    fake.modify(&Gvr::cluster_image_policies(), None, "base", |o| {
        o["status"] = json!({"observedGeneration": 1});
    });
    within("a watch event", events.changed()).await.unwrap();
    eventually("the store sees the status", || {
        watch.cluster_policy("base").is_some_and(|p| {
            p.status
                .as_ref()
                .is_some_and(|s| s.observed_generation == Some(1))
        })
    })
    .await;
    assert_eq!(watch.snapshot().version, version);
}

#[tokio::test]
async fn recovers_after_watch_connections_drop() {
    let fake = FakeApiServer::start().await;
    let watch = PolicyWatch::spawn(fake.client(), WatchConfig::default());
    within("initial list", watch.wait_synced()).await;
    let mut rx = watch.subscribe();

    fake.drop_watches();
    // Written while no watch is connected: the re-watch from the last
    // resourceVersion replays it.
    fake.insert(
        &Gvr::cluster_image_policies(),
        cluster_policy("during", reject()),
    );
    within("snapshot", rx.wait_for(|s| s.documents.len() == 1))
        .await
        .unwrap();

    fake.drop_watches();
    fake.remove(&Gvr::cluster_image_policies(), None, "during");
    fake.insert(
        &Gvr::image_policies(),
        image_policy("ns", "after", reject()),
    );
    within(
        "snapshot",
        rx.wait_for(|s| names(s) == ["ImagePolicy/ns/after"]),
    )
    .await
    .unwrap();
    assert_eq!(fake.gone_answers(), 0);
}

#[tokio::test]
async fn relists_after_410_gone() {
    let fake = FakeApiServer::start().await;
    fake.insert(
        &Gvr::cluster_image_policies(),
        cluster_policy("old", reject()),
    );
    let watch = PolicyWatch::spawn(fake.client(), WatchConfig::default());
    within("initial list", watch.wait_synced()).await;
    let lists_before = fake
        .requests_to(
            &http::Method::GET,
            "/apis/imagegate.dev/v1alpha1/clusterimagepolicies",
        )
        .iter()
        .filter(|r| !r.is_watch())
        .count();

    let mut rx = watch.subscribe();
    fake.drop_watches();
    fake.remove(&Gvr::cluster_image_policies(), None, "old");
    fake.insert(
        &Gvr::cluster_image_policies(),
        cluster_policy("new", reject()),
    );
    // The history the reflectors would resume from is gone.
    fake.compact();
    within(
        "snapshot",
        rx.wait_for(|s| names(s) == ["ClusterImagePolicy/new"]),
    )
    .await
    .unwrap();
    assert!(fake.gone_answers() >= 1, "the re-watch was answered 410");
    let lists_after = fake
        .requests_to(
            &http::Method::GET,
            "/apis/imagegate.dev/v1alpha1/clusterimagepolicies",
        )
        .iter()
        .filter(|r| !r.is_watch())
        .count();
    assert!(lists_after > lists_before, "410 led to a fresh list");

    // And it keeps watching after the re-list.
    fake.insert(
        &Gvr::cluster_image_policies(),
        cluster_policy("later", reject()),
    );
    within("snapshot", rx.wait_for(|s| s.documents.len() == 2))
        .await
        .unwrap();
}

#[tokio::test]
async fn platforms_from_nodes() {
    let fake = FakeApiServer::start().await;
    fake.insert(&Gvr::nodes(), node("a", "linux", "amd64", None));
    fake.insert(&Gvr::nodes(), node("b", "linux", "amd64", None));
    fake.insert(&Gvr::nodes(), node("c", "linux", "arm", Some("v7")));
    let watch = PolicyWatch::spawn(fake.client(), WatchConfig::default());
    within("initial list", watch.wait_synced()).await;
    assert_eq!(
        platforms(&watch.snapshot()),
        ["linux/amd64", "linux/arm/v7"],
        "deduplicated, sorted"
    );
    assert!(!watch.snapshot().platforms_overridden);

    let mut rx = watch.subscribe();
    fake.insert(&Gvr::nodes(), node("d", "linux", "arm64", None));
    within("snapshot", rx.wait_for(|s| s.platforms.len() == 3))
        .await
        .unwrap();
    fake.remove(&Gvr::nodes(), None, "c");
    within(
        "snapshot",
        rx.wait_for(|s| platforms(s) == ["linux/amd64", "linux/arm64"]),
    )
    .await
    .unwrap();
    // A node that changes architecture (re-imaged under the same name).
    fake.modify(&Gvr::nodes(), None, "d", |n| {
        n["status"]["nodeInfo"]["architecture"] = json!("s390x");
        n["metadata"]["labels"]["kubernetes.io/arch"] = json!("s390x");
    });
    within(
        "snapshot",
        rx.wait_for(|s| platforms(s) == ["linux/amd64", "linux/s390x"]),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn platform_override_ignores_nodes() {
    let fake = FakeApiServer::start().await;
    fake.insert(&Gvr::nodes(), node("a", "linux", "amd64", None));
    let platforms_cfg: Vec<Platform> = vec![
        "linux/arm64".parse().unwrap(),
        "linux/arm64".parse().unwrap(),
    ];
    let watch = PolicyWatch::spawn(
        fake.client(),
        WatchConfig {
            platforms: Some(platforms_cfg),
        },
    );
    within("initial list", watch.wait_synced()).await;
    let snap: Arc<ClusterSnapshot> = watch.snapshot();
    assert_eq!(platforms(&snap), ["linux/arm64"]);
    assert!(snap.platforms_overridden);
    assert!(
        fake.requests()
            .iter()
            .all(|r| !r.path.starts_with("/api/v1/nodes")),
        "no Node watch with an override"
    );
}
