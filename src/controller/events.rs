//! Kubernetes Events on workloads for denials and warnings, so `kubectl
//! describe` and event-based alerting show what imagegate refused, not
//! only the client that applied the object.

use kube::Client;
use kube::core::DynamicObject;
use kube::core::admission::AdmissionRequest;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use crate::admission::review::{DecisionObserver, ReviewSummary};

/// Publishes one Event per denied or warned review (dry runs excepted).
pub struct WorkloadEvents {
    recorder: Recorder,
}

impl WorkloadEvents {
    pub fn new(client: Client, instance: &str) -> WorkloadEvents {
        WorkloadEvents {
            recorder: Recorder::new(
                client,
                Reporter {
                    controller: "imagegate".into(),
                    instance: Some(instance.to_string()),
                },
            ),
        }
    }
}

/// The Event for a review's outcome, if it deserves one.
pub fn event_for(summary: &ReviewSummary) -> Option<Event> {
    let (type_, reason) = match summary.decision {
        "denied" => (EventType::Warning, "ImageRejected"),
        "warned" => (EventType::Warning, "ImagePolicyWarning"),
        _ => return None,
    };
    let note = summary.reason.clone().unwrap_or_default();
    Some(Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1024).collect()),
        action: "Admit".into(),
        secondary: None,
    })
}

impl DecisionObserver for WorkloadEvents {
    fn observe(&self, request: &AdmissionRequest<DynamicObject>, summary: &ReviewSummary) {
        if request.dry_run || request.name.is_empty() {
            // A dry run changes nothing; an object with a generated name has
            // no name yet to attach the Event to.
            return;
        }
        let Some(event) = event_for(summary) else {
            return;
        };
        let api_version = if request.kind.group.is_empty() {
            request.kind.version.clone()
        } else {
            format!("{}/{}", request.kind.group, request.kind.version)
        };
        let regarding = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some(api_version),
            kind: Some(request.kind.kind.clone()),
            name: Some(request.name.clone()),
            namespace: request.namespace.clone(),
            ..Default::default()
        };
        let recorder = self.recorder.clone();
        // Never delay the answer to the API server for an Event.
        tokio::spawn(async move {
            if let Err(e) = recorder.publish(&event, &regarding).await {
                tracing::warn!(error = %e, "recording an admission event failed");
            }
        });
    }
}
