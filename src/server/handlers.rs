//! HTTP handlers: the two admission endpoints, health and readiness.

use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionReview, Operation};

use crate::admission::review::{Endpoint, review};
use crate::metrics::AdmissionLabels;
use crate::server::state::AppState;

const ADMISSION_API_VERSION: &str = "admission.k8s.io/v1";

pub async fn validate(State(state): State<AppState>, body: Bytes) -> Response {
    handle(state, body, Endpoint::Validate).await
}

pub async fn mutate(State(state): State<AppState>, body: Bytes) -> Response {
    handle(state, body, Endpoint::Mutate).await
}

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(state): State<AppState>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        "ok".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "policies not loaded yet").into_response()
    }
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

/// Parses the review; a body that is not an AdmissionReview v1 with a
/// request is a client error (400), never a verdict.
fn parse_review(body: &[u8]) -> Result<AdmissionRequest<DynamicObject>, String> {
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_slice(body).map_err(|e| format!("malformed AdmissionReview: {e}"))?;
    if review.types.api_version != ADMISSION_API_VERSION || review.types.kind != "AdmissionReview" {
        return Err(format!(
            "unsupported review type {}/{}: imagegate speaks {ADMISSION_API_VERSION} AdmissionReview",
            review.types.api_version, review.types.kind
        ));
    }
    review
        .try_into()
        .map_err(|_| "AdmissionReview has no request".to_string())
}

async fn handle(state: AppState, body: Bytes, endpoint: Endpoint) -> Response {
    let started = Instant::now();
    let request = match parse_review(&body) {
        Ok(r) => r,
        Err(message) => {
            tracing::warn!(%message, "bad admission request");
            return (StatusCode::BAD_REQUEST, message).into_response();
        }
    };
    let (response, summary) =
        review(&request, endpoint, state.verifier.as_ref(), &state.options).await;
    if let Some(observer) = &state.observer {
        observer.observe(&request, &summary);
    }
    let elapsed = started.elapsed();
    state
        .metrics
        .admission_duration
        .observe(elapsed.as_secs_f64());
    state
        .metrics
        .admission_requests
        .get_or_create(&AdmissionLabels {
            kind: request.kind.kind.clone(),
            operation: operation_label(&request.operation),
            decision: summary.decision,
        })
        .inc();
    tracing::info!(
        target: "imagegate::decision",
        // Strings rather than `%` values: recorded without formatting.
        uid = request.uid.as_str(),
        endpoint = endpoint.as_str(),
        namespace = request.namespace.as_deref().unwrap_or(""),
        kind = request.kind.kind.as_str(),
        name = request.name.as_str(),
        // Comma-separated: an image reference has no commas.
        images = summary.images.join(",").as_str(),
        decision = summary.decision,
        reason = summary.reason.as_deref().unwrap_or(""),
        dry_run = request.dry_run,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        "admission decision"
    );
    // Only a patched response needs the detour through a JSON value (see
    // base64_patch); every other one is written out directly.
    let has_patch = response.patch.is_some();
    let review = response.into_review();
    let body = if has_patch {
        serde_json::to_value(review).and_then(|mut body| {
            base64_patch(&mut body);
            serde_json::to_vec(&body)
        })
    } else {
        serde_json::to_vec(&review)
    };
    match body {
        Ok(body) => (
            [(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot serialise the response: {e}"),
        )
            .into_response(),
    }
}

/// The operation as the API server spells it.
fn operation_label(operation: &Operation) -> &'static str {
    match operation {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

/// kube-core serialises `response.patch` (`Vec<u8>`) as a JSON array of
/// numbers; the API server's Go type is `[]byte`, whose JSON form is a
/// base64 string (what every other webhook sends). Rewrite it in place.
fn base64_patch(review: &mut serde_json::Value) {
    use base64::Engine as _;
    let Some(patch) = review.pointer_mut("/response/patch") else {
        return;
    };
    let Some(items) = patch.as_array() else {
        return;
    };
    let bytes: Option<Vec<u8>> = items
        .iter()
        .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
        .collect();
    if let Some(bytes) = bytes {
        *patch = serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
}
