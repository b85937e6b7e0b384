//! The webhook benchmark's helpers (run by `scripts/bench-webhook.sh`, not by
//! `cargo bench` on its own, which only prints this usage):
//!
//! - `floor`: the floor imagegate's throughput and latency are compared
//!   against. The same stack as `imagegate serve` (axum on axum-server with
//!   rustls and ring, tokio's multi-threaded runtime), doing only the part
//!   of a review no webhook can skip: parse the AdmissionReview with kube's
//!   types and answer "allowed". Whatever imagegate costs above this is its
//!   own (policy lookup, caches, verdict, logging, metrics).
//! - `registry`: a tiny distribution-v2 registry serving one manifest under
//!   every tag (and by its digest), so that 100,000 distinct verdicts can
//!   be cached through the real server without pushing 100,000 tags. It
//!   counts the manifest requests it answers (`GET /_bench/stats`).
//! - `drive`: a keep-alive HTTPS client sending AdmissionReviews (one image
//!   per review, from a template), N of them C at a time, over connections
//!   opened beforehand; prints one JSON line (count, statuses, allowed,
//!   rate, latency percentiles). wrk measures throughput; this covers what
//!   wrk cannot: many distinct images, a burst of simultaneous reviews, and
//!   a single cold review on a warm connection.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use sha2::{Digest, Sha256};

#[derive(Parser)]
#[command(about = "imagegate webhook benchmark helpers (see scripts/bench-webhook.sh)")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Subcommand)]
enum Command {
    /// The floor server: parse the review, answer allowed.
    Floor {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        tls_cert: PathBuf,
        #[arg(long)]
        tls_key: PathBuf,
    },
    /// One manifest under every tag of every repository.
    Registry {
        #[arg(long)]
        listen: SocketAddr,
        /// The manifest's bytes.
        #[arg(long)]
        manifest: PathBuf,
        #[arg(long, default_value = "application/vnd.oci.image.manifest.v1+json")]
        media_type: String,
    },
    /// Send AdmissionReviews and report statuses and latencies.
    Drive {
        /// e.g. https://127.0.0.1:8443/validate
        #[arg(long)]
        url: String,
        /// CA certificate (PEM) the server's certificate chains to.
        #[arg(long)]
        ca: PathBuf,
        /// An AdmissionReview whose Pod image is the string `@IMAGE@`.
        #[arg(long)]
        review: PathBuf,
        /// The image; `{}` is replaced by the review's number (0..count).
        #[arg(long)]
        image: String,
        #[arg(long, default_value_t = 1)]
        count: usize,
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// Start numbering images here.
        #[arg(long, default_value_t = 0)]
        first: usize,
    },
}

fn main() -> std::process::ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let Some(command) = cli.command else {
        eprintln!(
            "floor_server: webhook benchmark helpers; run scripts/bench-webhook.sh (see --help)"
        );
        return std::process::ExitCode::SUCCESS;
    };
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let result = runtime.block_on(async move {
        match command {
            Command::Floor {
                listen,
                tls_cert,
                tls_key,
            } => floor(listen, tls_cert, tls_key).await,
            Command::Registry {
                listen,
                manifest,
                media_type,
            } => registry(listen, manifest, media_type).await,
            Command::Drive {
                url,
                ca,
                review,
                image,
                count,
                concurrency,
                first,
            } => drive(url, ca, review, image, count, concurrency, first).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floor_server: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

// --- the floor ----------------------------------------------------------------

async fn floor(listen: SocketAddr, cert: PathBuf, key: PathBuf) -> anyhow::Result<()> {
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key).await?;
    let app = Router::new()
        .route("/validate", post(floor_review))
        .route("/healthz", get(|| async { "ok" }));
    // Bound as imagegate binds (a std listener handed to axum-server).
    let listener = std::net::TcpListener::bind(listen)?;
    listener.set_nonblocking(true)?;
    eprintln!("floor: serving on https://{}", listener.local_addr()?);
    axum_server::from_tcp_rustls(listener, tls)?
        .serve(app.into_make_service())
        .await?;
    Ok(())
}

/// What imagegate's handler does minus the verification: the same parse,
/// the same checks, the same response type serialised the same way.
async fn floor_review(body: Bytes) -> Response {
    let review: AdmissionReview<DynamicObject> = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("malformed: {e}")).into_response(),
    };
    if review.types.api_version != "admission.k8s.io/v1" || review.types.kind != "AdmissionReview" {
        return (StatusCode::BAD_REQUEST, "unsupported review type").into_response();
    }
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(r) => r,
        Err(_) => return (StatusCode::BAD_REQUEST, "no request").into_response(),
    };
    match serde_json::to_value(AdmissionResponse::from(&request).into_review()) {
        Ok(body) => axum::Json(body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

// --- the many-tags registry ---------------------------------------------------

struct Served {
    manifest: Bytes,
    media_type: String,
    digest: String,
    manifest_requests: AtomicU64,
    by_digest: AtomicU64,
}

async fn registry(listen: SocketAddr, manifest: PathBuf, media_type: String) -> anyhow::Result<()> {
    let bytes = std::fs::read(&manifest)?;
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
    let served = Arc::new(Served {
        manifest: Bytes::from(bytes),
        media_type,
        digest,
        manifest_requests: AtomicU64::new(0),
        by_digest: AtomicU64::new(0),
    });
    let app = Router::new()
        .route("/v2/", get(v2_ping))
        .route("/v2/{*rest}", get(v2_manifest).head(v2_manifest))
        .route("/_bench/stats", get(stats))
        .with_state(served.clone());
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!(
        "registry: serving {} ({}) on http://{}",
        served.digest,
        served.media_type,
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}

async fn v2_ping() -> impl IntoResponse {
    ([("Docker-Distribution-API-Version", "registry/2.0")], "{}")
}

async fn stats(State(s): State<Arc<Served>>) -> String {
    serde_json::json!({
        "manifest_requests": s.manifest_requests.load(Ordering::Relaxed),
        "by_digest": s.by_digest.load(Ordering::Relaxed),
        "digest": s.digest,
    })
    .to_string()
}

fn is_tag(s: &str) -> bool {
    // distribution's tag grammar: [\w][\w.-]{0,127}
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with(['.', '-'])
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

async fn v2_manifest(
    State(s): State<Arc<Served>>,
    method: Method,
    Path(rest): Path<String>,
) -> Response {
    let Some((_repo, reference)) = rest.rsplit_once("/manifests/") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    s.manifest_requests.fetch_add(1, Ordering::Relaxed);
    if reference == s.digest {
        s.by_digest.fetch_add(1, Ordering::Relaxed);
    } else if !is_tag(reference) {
        return (
            StatusCode::NOT_FOUND,
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
        )
            .into_response();
    }
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        s.media_type.parse().expect("media type"),
    );
    headers.insert("Docker-Content-Digest", s.digest.parse().expect("digest"));
    if method == Method::HEAD {
        headers.insert(header::CONTENT_LENGTH, s.manifest.len().into());
        return (headers, ()).into_response();
    }
    (headers, s.manifest.clone()).into_response()
}

// --- the driver -----------------------------------------------------------------

async fn drive(
    url: String,
    ca: PathBuf,
    review: PathBuf,
    image: String,
    count: usize,
    concurrency: usize,
    first: usize,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        count > 0 && concurrency > 0,
        "--count and --concurrency must be positive"
    );
    let template = std::fs::read_to_string(&review)?;
    anyhow::ensure!(
        template.contains("@IMAGE@"),
        "{} has no @IMAGE@",
        review.display()
    );
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&ca)?)?;
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .pool_max_idle_per_host(usize::MAX)
        .pool_idle_timeout(Duration::from_secs(600))
        .timeout(Duration::from_secs(60))
        .build()?;
    let healthz = format!(
        "{}/healthz",
        url.rsplit_once('/').map(|(b, _)| b).unwrap_or(&url)
    );
    // Open (and TLS-handshake) every connection first, all at once, so
    // the measured reviews neither pay for handshakes nor trickle in
    // behind them (the burst must reach the server together).
    let opened =
        futures::future::join_all((0..concurrency.min(count)).map(|_| client.get(&healthz).send()))
            .await;
    for r in opened {
        r?.error_for_status()?;
    }
    let bodies: Vec<String> = (first..first + count)
        .map(|i| template.replace("@IMAGE@", &image.replace("{}", &i.to_string())))
        .collect();
    let started = Instant::now();
    let results: Vec<(u16, bool, Duration, Duration)> = futures::stream::iter(bodies)
        .map(|body| {
            let client = &client;
            let url = &url;
            async move {
                let sent = Instant::now();
                let resp = client
                    .post(url)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(body)
                    .send()
                    .await;
                let (status, allowed) = match resp {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let allowed = r
                            .json::<serde_json::Value>()
                            .await
                            .ok()
                            .and_then(|v| v["response"]["allowed"].as_bool())
                            .unwrap_or(false);
                        (status, allowed)
                    }
                    Err(_) => (0, false),
                };
                (status, allowed, sent - started, sent.elapsed())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let mut latencies: Vec<Duration> = results.iter().map(|r| r.3).collect();
    latencies.sort();
    let pct = |p: f64| -> f64 {
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i].as_secs_f64() * 1000.0
    };
    let last_sent = results.iter().map(|r| r.2).max().unwrap_or_default();
    let ok = results.iter().filter(|r| r.0 == 200).count();
    let allowed = results.iter().filter(|r| r.1).count();
    println!(
        "{}",
        serde_json::json!({
            "count": count,
            "concurrency": concurrency,
            "status_200": ok,
            "allowed": allowed,
            "elapsed_s": elapsed.as_secs_f64(),
            "per_second": count as f64 / elapsed.as_secs_f64(),
            "last_sent_ms": last_sent.as_secs_f64() * 1000.0,
            "latency_ms": {
                "min": latencies[0].as_secs_f64() * 1000.0,
                "p50": pct(0.50),
                "p99": pct(0.99),
                "max": latencies[latencies.len() - 1].as_secs_f64() * 1000.0,
            },
        })
    );
    anyhow::ensure!(
        ok == count && allowed == count,
        "{} of {count} answered 200, {allowed} allowed",
        ok
    );
    Ok(())
}
