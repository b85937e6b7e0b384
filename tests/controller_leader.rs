//! Leader election on a Lease against the fake API server: one leader
//! among candidates, take-over when the leader stops renewing, release on
//! shutdown, stepping down when renewals fail, and leader-only writers in
//! the `Controller` while every replica keeps its watches.

mod fake_apiserver;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use fake_apiserver::{FakeApiServer, Gvr, cluster_policy, eventually, within};
use http::Method;
use imagegate::controller::{
    CompileReport, Controller, ControllerConfig, DocumentCompiler, LeaderElection, LeaseConfig,
    PolicyDocumentSource,
};
use serde_json::{Value, json};

const NS: &str = "imagegate-system";
const LEASE_PATH: &str =
    "/apis/coordination.k8s.io/v1/namespaces/imagegate-system/leases/imagegate-leader";

fn lease_config(identity: &str) -> LeaseConfig {
    LeaseConfig::new(NS, "imagegate-leader", identity, Duration::from_secs(1))
}

fn lease(fake: &FakeApiServer) -> Value {
    fake.get(&Gvr::leases(), Some(NS), "imagegate-leader")
        .unwrap_or(Value::Null)
}

fn holder(fake: &FakeApiServer) -> Option<String> {
    lease(fake)["spec"]["holderIdentity"]
        .as_str()
        .map(String::from)
}

/// Waits until the Lease's renewTime has changed `n` times.
async fn renewals(fake: &FakeApiServer, n: usize) {
    let mut seen = lease(fake)["spec"]["renewTime"].clone();
    for _ in 0..n {
        let before = seen.clone();
        eventually("a lease renewal", || {
            seen = lease(fake)["spec"]["renewTime"].clone();
            seen != before
        })
        .await;
    }
}

#[tokio::test]
async fn one_leader_and_take_over_after_it_stops_renewing() {
    let fake = FakeApiServer::start().await;
    let a = LeaderElection::spawn(fake.client(), lease_config("pod-a"));
    let b = LeaderElection::spawn(fake.client(), lease_config("pod-b"));
    eventually("a leader", || a.is_leader() || b.is_leader()).await;

    // Never two leaders at once, over several renewals.
    let both = Arc::new(AtomicBool::new(false));
    let (ha, hb) = (a.handle(), b.handle());
    let watcher = {
        let both = both.clone();
        tokio::spawn(async move {
            loop {
                if ha.is_leader() && hb.is_leader() {
                    both.store(true, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    renewals(&fake, 4).await;
    watcher.abort();
    assert!(!both.load(Ordering::SeqCst), "two leaders at once");

    let (leader, follower, follower_id) = if a.is_leader() {
        (a, b, "pod-b")
    } else {
        (b, a, "pod-a")
    };
    assert_ne!(holder(&fake).as_deref(), Some(follower_id));
    assert_eq!(lease(&fake)["spec"]["leaseDurationSeconds"], 1);
    assert_eq!(lease(&fake)["spec"]["leaseTransitions"], 0);

    // The leader dies without releasing: the follower waits out the lease.
    leader.abandon();
    eventually("the follower takes over", || follower.is_leader()).await;
    assert_eq!(holder(&fake).as_deref(), Some(follower_id));
    assert_eq!(lease(&fake)["spec"]["leaseTransitions"], 1);
    follower.shutdown().await;
}

#[tokio::test]
async fn clean_shutdown_releases_the_lease() {
    let fake = FakeApiServer::start().await;
    let a = LeaderElection::spawn(fake.client(), lease_config("pod-a"));
    eventually("a leads", || a.is_leader()).await;
    let b = LeaderElection::spawn(fake.client(), lease_config("pod-b"));
    renewals(&fake, 1).await;
    assert!(!b.is_leader());
    a.shutdown().await;
    assert_eq!(holder(&fake), None, "released");
    eventually("b takes over", || b.is_leader()).await;
    assert_eq!(holder(&fake).as_deref(), Some("pod-b"));
    b.shutdown().await;
}

#[tokio::test]
async fn steps_down_when_renewals_fail() {
    let fake = FakeApiServer::start().await;
    let a = LeaderElection::spawn(fake.client(), lease_config("pod-a"));
    eventually("a leads", || a.is_leader()).await;
    let mut rx = a.handle().subscribe();
    fake.fail_always(Method::GET, LEASE_PATH, 503);
    fake.fail_always(Method::PUT, LEASE_PATH, 503);
    within("a steps down", rx.wait_for(|l| !*l)).await.unwrap();
    fake.clear_outages();
    within("a leads again", rx.wait_for(|l| *l)).await.unwrap();
    a.shutdown().await;
}

#[tokio::test]
async fn work_runs_only_while_leading() {
    let fake = FakeApiServer::start().await;
    let a = LeaderElection::spawn(fake.client(), lease_config("pod-a"));
    let running = Arc::new(AtomicBool::new(false));
    let starts = Arc::new(AtomicUsize::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    struct Flag(Arc<AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(false, Ordering::SeqCst);
        }
    }
    let task = {
        let handle = a.handle();
        let (running, starts) = (running.clone(), starts.clone());
        tokio::spawn(async move {
            handle
                .run_while_leader(
                    move |_stop| {
                        let (running, starts) = (running.clone(), starts.clone());
                        async move {
                            starts.fetch_add(1, Ordering::SeqCst);
                            running.store(true, Ordering::SeqCst);
                            let _flag = Flag(running);
                            std::future::pending::<()>().await
                        }
                    },
                    stop_rx,
                )
                .await
        })
    };
    eventually("work starts", || running.load(Ordering::SeqCst)).await;
    fake.fail_always(Method::GET, LEASE_PATH, 503);
    fake.fail_always(Method::PUT, LEASE_PATH, 503);
    eventually("work is cancelled with leadership", || {
        !running.load(Ordering::SeqCst)
    })
    .await;
    assert!(!a.is_leader());
    fake.clear_outages();
    eventually("work restarts", || running.load(Ordering::SeqCst)).await;
    assert_eq!(starts.load(Ordering::SeqCst), 2);
    stop_tx.send_replace(true);
    within("run_while_leader returns", task).await.unwrap();
    assert!(!running.load(Ordering::SeqCst));
    a.shutdown().await;
}

struct CountingCompiler(AtomicUsize);

impl DocumentCompiler for CountingCompiler {
    fn compile(&self, _doc: &PolicyDocumentSource) -> CompileReport {
        self.0.fetch_add(1, Ordering::SeqCst);
        CompileReport::valid(vec![], vec![])
    }
}

#[tokio::test]
async fn only_the_leader_writes_status_but_every_replica_watches() {
    let fake = FakeApiServer::start().await;
    fake.insert(
        &Gvr::cluster_image_policies(),
        cluster_policy("base", json!({"default": [{"type": "reject"}]})),
    );
    let start = |id: &str| {
        let mut cfg = ControllerConfig::new(NS, id);
        cfg.lease = Some(lease_config(id));
        let compiler = Arc::new(CountingCompiler(AtomicUsize::new(0)));
        (
            Controller::start(fake.client(), cfg, compiler.clone()),
            compiler,
        )
    };
    let (a, ca) = start("pod-a");
    eventually("a leads", || a.is_leader()).await;
    let (b, cb) = start("pod-b");
    within("b synced", b.watches().wait_synced()).await;
    eventually("status written", || {
        fake.get(&Gvr::cluster_image_policies(), None, "base")
            .unwrap()["status"]["observedGeneration"]
            == 1
    })
    .await;
    assert!(ca.0.load(Ordering::SeqCst) >= 1);
    assert_eq!(
        cb.0.load(Ordering::SeqCst),
        0,
        "a follower writes no status"
    );

    // Both replicas see a new document (both serve admission).
    fake.insert(
        &Gvr::cluster_image_policies(),
        cluster_policy("second", json!({"default": [{"type": "reject"}]})),
    );
    eventually("a sees it", || a.snapshot().documents.len() == 2).await;
    eventually("b sees it", || b.snapshot().documents.len() == 2).await;

    a.shutdown().await;
    eventually("b takes over", || b.is_leader()).await;
    fake.insert(
        &Gvr::cluster_image_policies(),
        cluster_policy("third", json!({"default": [{"type": "reject"}]})),
    );
    eventually("b writes status", || {
        fake.get(&Gvr::cluster_image_policies(), None, "third")
            .unwrap()["status"]["observedGeneration"]
            == 1
    })
    .await;
    assert!(cb.0.load(Ordering::SeqCst) >= 1);
    assert!(
        fake.requests_to(
            &Method::PATCH,
            "/apis/imagegate.dev/v1alpha1/clusterimagepolicies/third/status"
        )
        .len()
            == 1
    );
    b.shutdown().await;
}
