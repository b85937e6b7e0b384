//! The status of policy documents (DESIGN decision 2, issue 3 §3): a
//! `Ready` condition, `observedGeneration`, `servedGeneration`, the trusted
//! keys and warnings, written with a merge patch on the status subresource
//! only when it differs from what the object already says, and a Warning
//! Event on the document when a generation is refused.
//!
//! What a document means (is it valid, which keys, which warnings) is not
//! decided here: a [`DocumentCompiler`] provided by the policy side says so.
//! Only the leader runs a [`StatusWriter`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::{Value, json};

use super::ControllerError;
use super::watch::{PolicyDocumentSource, PolicyWatch};
use crate::crd::{ClusterImagePolicy, Condition, ImagePolicy, PolicyStatus, TrustedKey};

/// Why a document version cannot be served, with the JSON path of the
/// offending value (`$.transports.docker["a/b"][0]`), empty for the whole document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for CompileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// What compiling one document found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CompileReport {
    /// `None` when the document is valid.
    pub error: Option<CompileError>,
    /// The keys the document trusts.
    pub keys: Vec<TrustedKey>,
    /// Problems that do not make the document invalid.
    pub warnings: Vec<String>,
}

impl CompileReport {
    pub fn valid(keys: Vec<TrustedKey>, warnings: Vec<String>) -> CompileReport {
        CompileReport {
            error: None,
            keys,
            warnings,
        }
    }

    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> CompileReport {
        CompileReport {
            error: Some(CompileError {
                path: path.into(),
                message: message.into(),
            }),
            keys: Vec::new(),
            warnings: Vec::new(),
        }
    }

    pub fn is_valid(&self) -> bool {
        self.error.is_none()
    }
}

/// Compiles a policy document the way admission will: the single source
/// of truth for whether a document is valid.
pub trait DocumentCompiler: Send + Sync {
    fn compile(&self, doc: &PolicyDocumentSource) -> CompileReport;
}

/// The `Ready` condition type.
pub const CONDITION_READY: &str = "Ready";
/// Reason of `Ready=True`.
pub const REASON_VALID: &str = "Valid";
/// Reason of `Ready=False` and of the Warning event.
pub const REASON_INVALID: &str = "InvalidPolicy";

/// The status a document should have, given its compile report and the
/// last generation that compiled (`served`). `previous` is the status the
/// object has now: an unchanged condition keeps its `lastTransitionTime`.
pub fn desired_status(
    doc: &PolicyDocumentSource,
    report: &CompileReport,
    served: Option<i64>,
    previous: Option<&PolicyStatus>,
    now: &str,
) -> PolicyStatus {
    let generation = doc.generation;
    let gen_text = generation.map_or_else(
        || "the current version".to_string(),
        |g| format!("generation {g}"),
    );
    let (cond_status, reason, message) = match &report.error {
        None => (
            "True",
            REASON_VALID,
            format!("{gen_text} is valid and served"),
        ),
        Some(err) => {
            let tail = match served {
                Some(s) => format!("generation {s} is still served"),
                None => format!(
                    "no valid generation: images in the scopes of {} are denied",
                    doc.id
                ),
            };
            (
                "False",
                REASON_INVALID,
                format!("{gen_text} is refused: {err}; {tail}"),
            )
        }
    };
    let last_transition_time = previous
        .and_then(|p| p.conditions.iter().find(|c| c.type_ == CONDITION_READY))
        .filter(|c| c.status == cond_status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.to_string());
    PolicyStatus {
        observed_generation: generation,
        served_generation: served,
        conditions: vec![Condition {
            type_: CONDITION_READY.into(),
            status: cond_status.into(),
            reason: reason.into(),
            message,
            last_transition_time: Some(last_transition_time),
            observed_generation: generation,
        }],
        keys: if report.is_valid() {
            report.keys.clone()
        } else {
            Vec::new()
        },
        warnings: report.warnings.clone(),
    }
}

/// The merge patch that makes an object's status exactly `status`: fields
/// that are empty now are sent as `null`, so stale values are removed.
pub fn status_patch(status: &PolicyStatus) -> Value {
    let mut body = serde_json::to_value(status).unwrap_or_else(|_| json!({}));
    let obj = body
        .as_object_mut()
        .expect("status serialises to an object");
    for field in [
        "observedGeneration",
        "servedGeneration",
        "conditions",
        "keys",
        "warnings",
    ] {
        obj.entry(field).or_insert(Value::Null);
    }
    json!({ "status": body })
}

/// How the status writer behaves.
#[derive(Clone, Debug)]
pub struct StatusConfig {
    /// Recompile every document this often even without changes (key
    /// expiry warnings depend on time, key files on disk may change).
    pub resync_interval: Duration,
    /// Delay before retrying after a failed API call.
    pub retry_interval: Duration,
    /// `reportingController` of Events.
    pub controller_name: String,
}

impl Default for StatusConfig {
    fn default() -> StatusConfig {
        StatusConfig {
            resync_interval: Duration::from_secs(300),
            retry_interval: Duration::from_secs(2),
            controller_name: "imagegate.dev/controller".into(),
        }
    }
}

/// One document's bookkeeping across reconciles.
#[derive(Default)]
struct DocState {
    /// The last generation that compiled, in this process.
    served: Option<i64>,
    /// The compile report for a generation (cleared on resync).
    report: Option<(Option<i64>, Arc<CompileReport>)>,
    /// What this writer last wrote, and the resourceVersion it wrote over:
    /// while the store still shows that version, the write's echo has not
    /// arrived and writing again would only repeat it.
    written: Option<(String, PolicyStatus)>,
    /// Generations whose refusal was already announced by an Event.
    reported: HashSet<Option<i64>>,
}

/// Writes the status of every policy document and records Events.
pub struct StatusWriter {
    client: Client,
    compiler: Arc<dyn DocumentCompiler>,
    recorder: Recorder,
    config: StatusConfig,
    docs: HashMap<String, DocState>,
}

/// What one reconcile pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReconcileSummary {
    pub written: usize,
    pub events: usize,
    pub failures: usize,
}

impl StatusWriter {
    pub fn new(
        client: Client,
        compiler: Arc<dyn DocumentCompiler>,
        config: StatusConfig,
        instance: String,
    ) -> StatusWriter {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: config.controller_name.clone(),
                instance: Some(instance),
            },
        );
        StatusWriter {
            client,
            compiler,
            recorder,
            config,
            docs: HashMap::new(),
        }
    }

    /// Forgets cached compile reports, so the next pass recompiles all.
    pub fn invalidate_reports(&mut self) {
        for d in self.docs.values_mut() {
            d.report = None;
        }
    }

    /// Reconciles every document the watches know, once.
    pub async fn reconcile_all(&mut self, watch: &PolicyWatch) -> ReconcileSummary {
        let mut summary = ReconcileSummary::default();
        let mut live: HashSet<String> = HashSet::new();
        for p in watch.cluster_policies() {
            let doc = PolicyDocumentSource::from_cluster_policy(&p);
            let key = doc_key(&doc);
            live.insert(key.clone());
            let api: Api<ClusterImagePolicy> = Api::all(self.client.clone());
            self.reconcile_one(&api, p.as_ref(), &doc, key, &mut summary)
                .await;
        }
        for p in watch.image_policies() {
            let doc = PolicyDocumentSource::from_image_policy(&p);
            let key = doc_key(&doc);
            live.insert(key.clone());
            let api: Api<ImagePolicy> =
                Api::namespaced(self.client.clone(), &p.namespace().unwrap_or_default());
            self.reconcile_one(&api, p.as_ref(), &doc, key, &mut summary)
                .await;
        }
        self.docs.retain(|k, _| live.contains(k));
        summary
    }

    async fn reconcile_one<K>(
        &mut self,
        api: &Api<K>,
        obj: &K,
        doc: &PolicyDocumentSource,
        key: String,
        summary: &mut ReconcileSummary,
    ) where
        K: Resource<DynamicType = ()>
            + HasPolicyStatus
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let compiler = self.compiler.clone();
        let state = self.docs.entry(key).or_default();
        let report = match &state.report {
            Some((g, r)) if *g == doc.generation && doc.generation.is_some() => r.clone(),
            _ => {
                let r = Arc::new(compiler.compile(doc));
                state.report = Some((doc.generation, r.clone()));
                r
            }
        };
        if report.is_valid() {
            state.served = doc.generation.or(state.served);
        }
        let current = obj.policy_status();
        let desired = desired_status(doc, &report, state.served, current, &now_rfc3339());
        let rv = obj.resource_version().unwrap_or_default();
        let unchanged = current == Some(&desired)
            || state
                .written
                .as_ref()
                .is_some_and(|(w_rv, w)| *w_rv == rv && *w == desired);
        if !unchanged {
            let name = obj.name_any();
            match api
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(status_patch(&desired)),
                )
                .await
            {
                Ok(_) => {
                    summary.written += 1;
                    state.written = Some((rv, desired.clone()));
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    summary.failures += 1;
                    tracing::warn!(document = %doc.id, error = %e, "status update failed");
                }
            }
        }
        if let Some(err) = &report.error
            && !state.reported.contains(&doc.generation)
        {
            let event = Event {
                type_: EventType::Warning,
                reason: REASON_INVALID.into(),
                note: Some(truncate(
                    &format!(
                        "{} of {} is refused: {err}",
                        doc.generation.map_or_else(
                            || "the current version".into(),
                            |g| format!("generation {g}")
                        ),
                        doc.id
                    ),
                    1024,
                )),
                action: "Validate".into(),
                secondary: None,
            };
            // The version in the reference keeps the Events of successive
            // refused generations apart (the recorder would otherwise fold
            // them into one series carrying the first message).
            let mut regarding = obj.object_ref(&());
            regarding.resource_version = obj.resource_version();
            match self.recorder.publish(&event, &regarding).await {
                Ok(()) => {
                    summary.events += 1;
                    state.reported.insert(doc.generation);
                }
                Err(e) => {
                    summary.failures += 1;
                    tracing::warn!(document = %doc.id, error = %e, "recording an event failed");
                }
            }
        }
    }

    /// Keeps status current until `stop` turns true: reconciles on every
    /// watch event, after failures (with a delay) and on every resync.
    pub async fn run(
        &mut self,
        watch: &PolicyWatch,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), ControllerError> {
        let mut events = watch.object_events();
        let mut resync = tokio::time::interval(self.config.resync_interval);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        resync.tick().await;
        watch.wait_synced().await;
        loop {
            events.mark_unchanged();
            let summary = self.reconcile_all(watch).await;
            let retry = async {
                if summary.failures > 0 {
                    tokio::time::sleep(self.config.retry_interval).await
                } else {
                    std::future::pending::<()>().await
                }
            };
            tokio::select! {
                r = events.changed() => if r.is_err() { return Ok(()) },
                _ = resync.tick() => self.invalidate_reports(),
                _ = retry => {}
                _ = stop.wait_for(|s| *s) => return Ok(()),
            }
        }
    }
}

/// Access to the status of either policy kind.
pub trait HasPolicyStatus {
    fn policy_status(&self) -> Option<&PolicyStatus>;
}

impl HasPolicyStatus for ClusterImagePolicy {
    fn policy_status(&self) -> Option<&PolicyStatus> {
        self.status.as_ref()
    }
}

impl HasPolicyStatus for ImagePolicy {
    fn policy_status(&self) -> Option<&PolicyStatus> {
        self.status.as_ref()
    }
}

fn doc_key(doc: &PolicyDocumentSource) -> String {
    // The uid tells a re-created document from its predecessor.
    format!("{}#{}", doc.id, doc.uid.as_deref().unwrap_or(""))
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Now as RFC 3339 with second precision (`metav1.Time`).
pub(crate) fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::watch::{DocumentId, DocumentKind};
    use crate::engine::Mode;

    fn doc(generation: i64) -> PolicyDocumentSource {
        PolicyDocumentSource {
            id: DocumentId {
                kind: DocumentKind::Cluster,
                namespace: None,
                name: "base".into(),
            },
            uid: Some("u1".into()),
            generation: Some(generation),
            policy: json!({"default": [{"type": "reject"}]}),
            lookaside: None,
            mode: Mode::Enforce,
        }
    }

    fn key() -> TrustedKey {
        TrustedKey {
            fingerprint: "ABCD".into(),
            user_ids: vec!["Signer <s@example.test>".into()],
            algorithm: "RSA3072".into(),
            expires: None,
        }
    }

    #[test]
    fn valid_document_is_ready() {
        let s = desired_status(
            &doc(3),
            &CompileReport::valid(vec![key()], vec!["w".into()]),
            Some(3),
            None,
            "2026-01-01T00:00:00Z",
        );
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(s.served_generation, Some(3));
        let c = &s.conditions[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", REASON_VALID)
        );
        assert_eq!(c.message, "generation 3 is valid and served");
        assert_eq!(s.keys, vec![key()]);
        assert_eq!(s.warnings, vec!["w".to_string()]);
    }

    #[test]
    fn invalid_document_names_what_is_served() {
        let report = CompileReport::invalid("$.transports.docker", "Unknown key \"x\"");
        let s = desired_status(&doc(4), &report, Some(3), None, "t");
        let c = &s.conditions[0];
        assert_eq!(c.status, "False");
        assert_eq!(c.reason, REASON_INVALID);
        assert_eq!(
            c.message,
            "generation 4 is refused: $.transports.docker: Unknown key \"x\"; generation 3 is still served"
        );
        let s = desired_status(&doc(1), &report, None, None, "t");
        assert!(
            s.conditions[0].message.ends_with(
                "no valid generation: images in the scopes of ClusterImagePolicy/base are denied"
            ),
            "{}",
            s.conditions[0].message
        );
        assert_eq!(s.served_generation, None);
    }

    #[test]
    fn transition_time_kept_while_the_condition_holds() {
        let first = desired_status(
            &doc(1),
            &CompileReport::valid(vec![], vec![]),
            Some(1),
            None,
            "t1",
        );
        let again = desired_status(
            &doc(2),
            &CompileReport::valid(vec![], vec![]),
            Some(2),
            Some(&first),
            "t2",
        );
        assert_eq!(
            again.conditions[0].last_transition_time.as_deref(),
            Some("t1")
        );
        let broken = desired_status(
            &doc(3),
            &CompileReport::invalid("", "bad"),
            Some(2),
            Some(&again),
            "t3",
        );
        assert_eq!(
            broken.conditions[0].last_transition_time.as_deref(),
            Some("t3")
        );
    }

    #[test]
    fn patch_clears_empty_fields() {
        let s = desired_status(&doc(1), &CompileReport::invalid("", "bad"), None, None, "t");
        let p = status_patch(&s);
        assert_eq!(p["status"]["keys"], Value::Null);
        assert_eq!(p["status"]["warnings"], Value::Null);
        assert_eq!(p["status"]["servedGeneration"], Value::Null);
        assert!(p["status"]["keys"].is_null() && p["status"].get("keys").is_some());
        assert_eq!(p["status"]["observedGeneration"], 1);
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("abc", 10), "abc");
        let t = truncate(&"é".repeat(10), 8);
        assert!(t.ends_with("...") && t.len() <= 8, "{t}");
    }
}
