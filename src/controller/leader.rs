//! Leader election on a `coordination.k8s.io/v1` Lease (DESIGN decision
//! 11): every replica serves admission; only the leader writes status and
//! rotates certificates.
//!
//! kube-runtime 5 has no leader election, so this is client-go's
//! algorithm (`tools/leaderelection` with a `LeaseLock`), small:
//! - a candidate reads the Lease; when it is absent, it creates it;
//! - a Lease held by someone else counts as expired when its record has
//!   not changed for `lease_duration` *as observed locally* (the
//!   `renewTime` written by another machine's clock is never compared with
//!   ours, so clock skew does not matter);
//! - taking or renewing is a resourceVersion-guarded update: of two
//!   candidates racing for an expired Lease, one gets 409 and stays follower;
//! - the leader renews every `renew_interval`; when it cannot renew for
//!   `renew_deadline` (shorter than the Lease duration, so nobody else can
//!   have taken over yet) it steps down;
//! - on clean shutdown the leader releases the Lease (empty holder), so a
//!   successor need not wait for expiry.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Lease parameters.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// The Lease's name, in imagegate's namespace.
    pub name: String,
    pub namespace: String,
    /// This replica's identity (its pod name): the Lease's holderIdentity.
    pub identity: String,
    /// How long a Lease lasts without renewal (whole seconds in the API;
    /// rounded up, at least 1 s).
    pub lease_duration: Duration,
    /// How often the leader renews (client-go's default ratio: a third of
    /// the duration).
    pub renew_interval: Duration,
    /// How long the leader keeps trying to renew before stepping down.
    pub renew_deadline: Duration,
    /// How often a follower checks whether it can take over.
    pub retry_interval: Duration,
}

impl LeaseConfig {
    /// A configuration with client-go's proportions for `lease_duration`:
    /// renew every third of it, give up after two thirds.
    pub fn new(
        namespace: &str,
        name: &str,
        identity: &str,
        lease_duration: Duration,
    ) -> LeaseConfig {
        LeaseConfig {
            name: name.into(),
            namespace: namespace.into(),
            identity: identity.into(),
            lease_duration,
            renew_interval: lease_duration / 3,
            renew_deadline: lease_duration * 2 / 3,
            retry_interval: lease_duration / 3,
        }
    }

    fn duration_seconds(&self) -> i32 {
        let secs =
            self.lease_duration.as_secs() + u64::from(self.lease_duration.subsec_nanos() > 0);
        secs.clamp(1, i32::MAX as u64) as i32
    }
}

/// The last Lease record seen and when it was seen to change.
struct Observed {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    transitions: Option<i32>,
    at: Instant,
    duration: Duration,
}

/// Why an attempt to take or renew the Lease did not succeed.
#[derive(Debug)]
enum Attempt {
    /// Held by someone else, not expired.
    HeldBy(String),
    /// Someone else wrote first (409).
    Conflict,
    Failed(kube::Error),
    /// No answer in time.
    TimedOut,
}

struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    observed: Option<Observed>,
}

impl Elector {
    fn now_micro() -> MicroTime {
        MicroTime(Timestamp::now())
    }

    fn observe(&mut self, lease: &Lease) {
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.filter(|h| !h.is_empty());
        let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64);
        let changed = match &self.observed {
            None => true,
            Some(o) => {
                o.holder != holder
                    || o.renew_time != spec.renew_time
                    || o.transitions != spec.lease_transitions
            }
        };
        if changed {
            self.observed = Some(Observed {
                holder,
                renew_time: spec.renew_time,
                transitions: spec.lease_transitions,
                at: Instant::now(),
                duration,
            });
        }
    }

    fn spec(&self, acquire_time: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(self.config.duration_seconds()),
            acquire_time: acquire_time.or_else(|| Some(Self::now_micro())),
            renew_time: Some(Self::now_micro()),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// One try to become or stay the holder.
    async fn try_acquire_or_renew(&mut self) -> Result<(), Attempt> {
        let name = self.config.name.clone();
        let name = &name;
        let current = self.api.get_opt(name).await.map_err(Attempt::Failed)?;
        let Some(mut lease) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(None, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observe(&created);
                    Ok(())
                }
                Err(kube::Error::Api(s)) if s.code == 409 => Err(Attempt::Conflict),
                Err(e) => Err(Attempt::Failed(e)),
            };
        };
        self.observe(&lease);
        let observed = self.observed.as_ref().expect("observed just now");
        let spec = lease.spec.clone().unwrap_or_default();
        let ours = observed.holder.as_deref() == Some(self.config.identity.as_str());
        if let Some(holder) = &observed.holder
            && !ours
            && observed.at.elapsed() < observed.duration
        {
            return Err(Attempt::HeldBy(holder.clone()));
        }
        let transitions = spec.lease_transitions.unwrap_or(0);
        lease.spec = Some(if ours {
            self.spec(spec.acquire_time, transitions)
        } else {
            self.spec(None, transitions + 1)
        });
        // The resourceVersion read above guards the update.
        match self.api.replace(name, &PostParams::default(), &lease).await {
            Ok(updated) => {
                self.observe(&updated);
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Err(Attempt::Conflict),
            Err(e) => Err(Attempt::Failed(e)),
        }
    }

    /// Gives the Lease up if this replica holds it.
    async fn release(&mut self) {
        let name = &self.config.name;
        let Ok(Some(mut lease)) = self.api.get_opt(name).await else {
            return;
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(Self::now_micro());
        lease.spec = Some(spec);
        match self.api.replace(name, &PostParams::default(), &lease).await {
            Ok(_) => tracing::info!(lease = %name, "released leadership"),
            Err(e) => tracing::warn!(lease = %name, error = %e, "could not release the lease"),
        }
    }

    /// One attempt bounded by `limit`: the client retries some failures
    /// (503, 429) on its own with growing delays, and a leader must not
    /// wait past its renew deadline for an answer.
    async fn attempt(&mut self, limit: Duration) -> Result<(), Attempt> {
        match tokio::time::timeout(limit, self.try_acquire_or_renew()).await {
            Ok(r) => r,
            Err(_) => Err(Attempt::TimedOut),
        }
    }

    async fn run(mut self, leader_tx: watch::Sender<bool>, mut stop: watch::Receiver<bool>) {
        let mut last_renew = Instant::now();
        loop {
            let leading = *leader_tx.borrow();
            let wait = if leading {
                let left = self
                    .config
                    .renew_deadline
                    .saturating_sub(last_renew.elapsed());
                match self.attempt(left).await {
                    Ok(()) => {
                        last_renew = Instant::now();
                        self.config.renew_interval
                    }
                    Err(Attempt::HeldBy(h)) => {
                        tracing::warn!(lease = %self.config.name, holder = %h, "lost the lease; stepping down");
                        leader_tx.send_replace(false);
                        self.config.retry_interval
                    }
                    Err(e) => {
                        if last_renew.elapsed() >= self.config.renew_deadline
                            || matches!(e, Attempt::Conflict)
                        {
                            tracing::warn!(lease = %self.config.name, error = ?e, "could not renew the lease; stepping down");
                            leader_tx.send_replace(false);
                            self.config.retry_interval
                        } else {
                            tracing::debug!(lease = %self.config.name, error = ?e, "lease renewal failed; retrying");
                            self.config.retry_interval.min(self.config.renew_interval)
                        }
                    }
                }
            } else {
                match self.attempt(self.config.lease_duration).await {
                    Ok(()) => {
                        tracing::info!(lease = %self.config.name, identity = %self.config.identity, "became leader");
                        last_renew = Instant::now();
                        leader_tx.send_replace(true);
                        self.config.renew_interval
                    }
                    Err(Attempt::Failed(e)) => {
                        tracing::debug!(lease = %self.config.name, error = %e, "lease not acquired");
                        self.config.retry_interval
                    }
                    Err(_) => self.config.retry_interval,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        if *leader_tx.borrow() {
            leader_tx.send_replace(false);
            let _ = tokio::time::timeout(self.config.renew_deadline, self.release()).await;
        }
    }
}

/// A running election. Cheap to share via [`LeaderHandle::subscribe`].
pub struct LeaderElection {
    leader_rx: watch::Receiver<bool>,
    stop_tx: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl LeaderElection {
    /// Starts campaigning.
    pub fn spawn(client: Client, config: LeaseConfig) -> LeaderElection {
        let (leader_tx, leader_rx) = watch::channel(false);
        let (stop_tx, stop_rx) = watch::channel(false);
        let elector = Elector {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
        };
        let task = tokio::spawn(elector.run(leader_tx, stop_rx));
        LeaderElection {
            leader_rx,
            stop_tx,
            task: Some(task),
        }
    }

    /// Whether this replica leads now.
    pub fn is_leader(&self) -> bool {
        *self.leader_rx.borrow()
    }

    /// A handle to watch leadership and run work while leading.
    pub fn handle(&self) -> LeaderHandle {
        LeaderHandle {
            rx: self.leader_rx.clone(),
        }
    }

    /// Stops campaigning; a leader releases the Lease first.
    pub async fn shutdown(mut self) {
        self.stop_tx.send_replace(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    /// Stops without releasing the Lease, as a crashed replica would:
    /// others take over once it expires.
    pub fn abandon(mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl Drop for LeaderElection {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Watches leadership.
#[derive(Clone)]
pub struct LeaderHandle {
    rx: watch::Receiver<bool>,
}

impl LeaderHandle {
    /// A handle that always leads (a single replica without election).
    pub fn always() -> LeaderHandle {
        let (tx, rx) = watch::channel(true);
        // The receiver keeps the value; the sender is not needed.
        drop(tx);
        LeaderHandle { rx }
    }

    pub fn is_leader(&self) -> bool {
        *self.rx.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.rx.clone()
    }

    /// Runs `work` each time this replica becomes leader, and cancels it
    /// (drops the future) as soon as leadership is lost; returns when
    /// `stop` turns true or the election ends. `work` gets a receiver that
    /// turns true when it should wind down.
    pub async fn run_while_leader<F, Fut>(&self, mut work: F, mut stop: watch::Receiver<bool>)
    where
        F: FnMut(watch::Receiver<bool>) -> Fut,
        Fut: Future<Output = ()>,
    {
        let mut rx = self.rx.clone();
        loop {
            tokio::select! {
                // A closed election that never made us leader never will.
                r = rx.wait_for(|l| *l) => if r.is_err() { return },
                _ = stop.wait_for(|s| *s) => return,
            }
            let fut = work(stop.clone());
            let mut lost_rx = rx.clone();
            let lost = async move {
                // A closed election keeps its last value: leadership stays.
                if lost_rx.wait_for(|l| !*l).await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = fut => {}
                _ = lost => continue,
                _ = stop.wait_for(|s| *s) => return,
            }
            // The work finished on its own: wait for the next term.
            tokio::select! {
                r = rx.wait_for(|l| !*l) => if r.is_err() { return },
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}
