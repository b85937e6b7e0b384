//! The fake API server itself, driven by the real `kube` client. It stays
//! only for faults a real kube-apiserver cannot be made to produce on
//! demand (410 Gone, cut watches, garbage or truncated answers, hung
//! connections, conflicts at an exact moment); what it answers for the
//! calls those tests make must be what a real apiserver answers, or they
//! prove nothing.

mod fake_apiserver;

use fake_apiserver::{FakeApiServer, Gvr, cluster_policy, within};
use futures::{StreamExt, TryStreamExt};
use imagegate::crd::ClusterImagePolicy;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{
    DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::{Api, ResourceExt};
use serde_json::json;

fn cm(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": {"k": value},
    }))
    .unwrap()
}

#[tokio::test]
async fn crud_with_status_errors() {
    let fake = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "ns");

    let created = api
        .create(&PostParams::default(), &cm("a", "1"))
        .await
        .unwrap();
    assert_eq!(created.namespace().as_deref(), Some("ns"));
    assert!(created.uid().is_some());
    assert_eq!(created.metadata.generation, Some(1));
    let rv1 = created.resource_version().unwrap();

    let err = api
        .create(&PostParams::default(), &cm("a", "1"))
        .await
        .unwrap_err();
    let kube::Error::Api(s) = err else {
        panic!("{err}")
    };
    assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(s.message, "configmaps \"a\" already exists");

    let err = api.get("missing").await.unwrap_err();
    let kube::Error::Api(s) = err else {
        panic!("{err}")
    };
    assert_eq!((s.code, s.reason.as_str()), (404, "NotFound"));
    assert_eq!(api.get_opt("missing").await.unwrap(), None);

    // Replace guarded by resourceVersion.
    let mut next = created.clone();
    next.data = Some([("k".to_string(), "2".to_string())].into());
    let replaced = api
        .replace("a", &PostParams::default(), &next)
        .await
        .unwrap();
    assert_ne!(replaced.resource_version().unwrap(), rv1);
    assert_eq!(replaced.metadata.generation, Some(2));
    let err = api
        .replace("a", &PostParams::default(), &next)
        .await
        .unwrap_err();
    let kube::Error::Api(s) = err else {
        panic!("{err}")
    };
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));

    // A write that changes nothing keeps the resourceVersion.
    let same = api
        .replace("a", &PostParams::default(), &replaced)
        .await
        .unwrap();
    assert_eq!(same.resource_version(), replaced.resource_version());

    // Merge, JSON and apply patches; strategic merge is refused.
    let merged = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"extra": "x"}})),
        )
        .await
        .unwrap();
    assert_eq!(merged.data.as_ref().unwrap()["extra"], "x");
    assert_eq!(merged.data.as_ref().unwrap()["k"], "2");
    let patched = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(json!([{"op": "remove", "path": "/data/extra"}])).unwrap(),
            ),
        )
        .await
        .unwrap();
    assert!(!patched.data.as_ref().unwrap().contains_key("extra"));
    let applied = api
        .patch(
            "b",
            &PatchParams::apply("test").force(),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}, "data": {"k": "ssa"}})),
        )
        .await
        .unwrap();
    assert_eq!(applied.data.unwrap()["k"], "ssa");
    let err = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Strategic(json!({"data": {}})),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(s) = err else {
        panic!("{err}")
    };
    assert_eq!(s.code, 415);

    // List with resourceVersion, field selector.
    let list = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 2);
    assert_eq!(
        list.metadata.resource_version,
        Some(fake.resource_version().to_string())
    );
    let one = api
        .list(&ListParams::default().fields("metadata.name=b"))
        .await
        .unwrap();
    assert_eq!(one.items.len(), 1);

    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert_eq!(api.get_opt("a").await.unwrap(), None);
    let err = api.delete("a", &DeleteParams::default()).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 404));
}

#[tokio::test]
async fn status_subresource_separates_spec_and_status() {
    let fake = FakeApiServer::start().await;
    let obj = fake.insert(
        &Gvr::cluster_image_policies(),
        cluster_policy("p", json!({"default": []})),
    );
    assert_eq!(obj["metadata"]["generation"], 1);
    let api: Api<ClusterImagePolicy> = Api::all(fake.client());

    let p = api
        .patch_status(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"observedGeneration": 1}, "spec": {"mode": "Warn"}})),
        )
        .await
        .unwrap();
    assert_eq!(p.status.unwrap().observed_generation, Some(1));
    assert_eq!(
        p.spec.mode,
        imagegate::engine::Mode::Enforce,
        "a status write leaves spec alone"
    );
    assert_eq!(
        p.metadata.generation,
        Some(1),
        "status writes do not bump generation"
    );

    let p = api
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"mode": "Audit"}, "status": null})),
        )
        .await
        .unwrap();
    assert_eq!(p.spec.mode, imagegate::engine::Mode::Audit);
    assert_eq!(p.metadata.generation, Some(2));
    assert_eq!(
        p.status.unwrap().observed_generation,
        Some(1),
        "an object write leaves status alone"
    );
}

#[tokio::test]
async fn watch_replays_from_a_resource_version_and_answers_410_when_compacted() {
    let fake = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(fake.client(), "ns");
    let a = api
        .create(&PostParams::default(), &cm("a", "1"))
        .await
        .unwrap();
    let rv = a.resource_version().unwrap();
    api.create(&PostParams::default(), &cm("b", "1"))
        .await
        .unwrap();
    api.delete("a", &DeleteParams::default()).await.unwrap();

    let events: Vec<_> = within(
        "replayed events",
        api.watch(&WatchParams::default().timeout(1), &rv)
            .await
            .unwrap()
            .take(2)
            .try_collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    assert!(matches!(&events[0], WatchEvent::Added(o) if o.name_any() == "b"));
    assert!(matches!(&events[1], WatchEvent::Deleted(o) if o.name_any() == "a"));

    // Live events after the replay; bookmarks when asked for.
    let mut stream = api
        .watch(
            &WatchParams::default().timeout(10),
            &fake.resource_version().to_string(),
        )
        .await
        .unwrap()
        .boxed();
    api.create(&PostParams::default(), &cm("c", "1"))
        .await
        .unwrap();
    let ev = within("live event", stream.next()).await.unwrap().unwrap();
    assert!(matches!(ev, WatchEvent::Added(o) if o.name_any() == "c"));
    fake.bookmark();
    let ev = within("bookmark", stream.next()).await.unwrap().unwrap();
    assert!(
        matches!(ev, WatchEvent::Bookmark(b) if b.metadata.resource_version == fake.resource_version().to_string())
    );

    // Dropped connections end the stream with an error.
    fake.drop_watches();
    let next = within("stream end", stream.next()).await;
    assert!(matches!(next, Some(Err(_)) | None), "{next:?}");

    fake.compact();
    let mut stream = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    match within("410", stream.next()).await {
        Some(Ok(WatchEvent::Error(s))) => {
            assert_eq!((s.code, s.reason.as_str()), (410, "Expired"));
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    assert_eq!(fake.gone_answers(), 1);
}
