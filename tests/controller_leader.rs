//! Leader election faults a real kube-apiserver cannot be made to produce
//! on demand, against `tests/fake_apiserver/`: renewals failing (the
//! apiserver answering errors) and the clean release on shutdown observed
//! between two calls. Take-over when the holder dies and status written by
//! the holder only are tested through kube-apiserver in
//! `tests/kube_lifecycle.rs`.

mod fake_apiserver;

use std::time::Duration;

use fake_apiserver::{FakeApiServer, Gvr, eventually, within};
use http::Method;
use imagegate::controller::{LeaderElection, LeaseConfig};
use serde_json::Value;

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
