//! Load driver for `imagegate serve` (scripts/soak.sh runs it; see
//! RELIABILITY.md "Soak"). It sends AdmissionReviews over HTTPS as
//! kube-apiserver does and checks every answer:
//!
//! - `signed` images must be allowed while the registry and lookaside are
//!   up; a denial whose request overlapped an outage (from `--flap-log`) is
//!   the fail-closed answer and counted on its own;
//! - `unsigned`, `wrong` (signed by another key) and `mixed` (a Pod with a
//!   signed and an unsigned container) must always be denied: any allow is
//!   a wrong admission;
//! - every review must be answered (HTTP 200, an AdmissionReview with the
//!   request's uid) inside `--deadline`.
//!
//! Two modes: `closed` (N workers, each sends its next review when the
//! previous answer arrives: the warm maximum) and `open` (reviews start on a
//! fixed schedule whatever the answers do, so a slow server cannot slow the
//! load down and hide its own latency). Both stop by themselves after
//! `--duration`. Exit status 1 on any wrong admission, over-deadline answer,
//! unanswered review, or (open mode) review that could not even be sent
//! within the deadline of its scheduled start.
//!
//! A `[[bench]]` with `harness = false` so that it is built with the release
//! profile and the crate's dependencies, without becoming part of the
//! installed binary or of `cargo test`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use serde_json::{Value, json};
use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Open,
    Closed,
}

#[derive(Debug, Parser)]
#[command(about = "imagegate soak driver (see scripts/soak.sh)")]
struct Args {
    /// The webhook's validating endpoint, e.g. https://127.0.0.1:8443/validate.
    #[arg(long)]
    url: String,
    /// CA certificate (PEM) the serving certificate chains to.
    #[arg(long)]
    ca: PathBuf,
    #[arg(long, value_enum, default_value = "open")]
    mode: Mode,
    /// Reviews per second (open mode).
    #[arg(long)]
    rate: Option<f64>,
    /// Workers (closed mode).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    #[arg(long, default_value = "600s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Every answer must arrive within this (imagegate's --admission-timeout).
    #[arg(long, value_parser = humantime::parse_duration)]
    deadline: Duration,
    /// Images that must be allowed while everything is up (repeatable).
    #[arg(long, required = true)]
    signed: Vec<String>,
    /// Unsigned images: must always be denied (repeatable).
    #[arg(long, required = true)]
    unsigned: Vec<String>,
    /// Images signed by a key the policy does not trust: must always be denied.
    #[arg(long, required = true)]
    wrong: Vec<String>,
    /// Images never asked about before, one `CLASS REFERENCE` a line
    /// (CLASS: signed, unsigned or wrong), used in order (open mode) so
    /// that the uncached path runs during the outages too.
    #[arg(long)]
    fresh: Option<PathBuf>,
    /// Fresh images per second (open mode).
    #[arg(long, default_value_t = 1.0)]
    fresh_per_second: f64,
    /// Outages, one `EPOCH_MILLIS COMPONENT down|up` a line (written by
    /// soak.sh; `up` once the component answers again). Read at the end.
    #[arg(long)]
    flap_log: Option<PathBuf>,
    /// Write the summary as JSON here too.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Connections (open mode): at most this many reviews are outstanding,
    /// as a client with a connection pool sends them (kube-apiserver does);
    /// a review due while all are busy waits for one, and that wait counts
    /// in its time from the schedule. Without a bound, every late review
    /// opens a new TLS connection and the handshakes alone swamp the server.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Reviews in flight beyond which the driver counts a review as not
    /// sent (an error) instead of piling up tasks without bound.
    #[arg(long, default_value_t = 20_000)]
    max_in_flight: u64,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Class {
    Signed,
    Unsigned,
    Wrong,
    /// A signed and an unsigned container in one Pod.
    Mixed,
}

impl Class {
    fn name(self) -> &'static str {
        match self {
            Class::Signed => "signed",
            Class::Unsigned => "unsigned",
            Class::Wrong => "wrong",
            Class::Mixed => "mixed",
        }
    }
    fn parse(s: &str) -> Option<Class> {
        match s {
            "signed" => Some(Class::Signed),
            "unsigned" => Some(Class::Unsigned),
            "wrong" => Some(Class::Wrong),
            _ => None,
        }
    }
}

/// One review to send.
#[derive(Debug, Clone)]
struct Job {
    class: Class,
    fresh: bool,
    images: Vec<String>,
}

#[derive(Debug)]
enum Outcome {
    Allowed,
    Denied(String),
    /// No usable AdmissionReview answer (status, transport error, bad body).
    Error(String),
}

#[derive(Debug)]
struct Record {
    class: Class,
    fresh: bool,
    /// Since the driver's start (its wall-clock time is `Report::t0_epoch_ms`).
    sent: Duration,
    latency: Duration,
    /// From the scheduled start (open mode): includes the driver's own lag.
    from_schedule: Duration,
    outcome: Outcome,
}

/// The AdmissionReview v1 for a Pod running `images`.
fn review_body(uid: &str, images: &[String]) -> Vec<u8> {
    let containers: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(i, image)| json!({"name": format!("c{i}"), "image": image}))
        .collect();
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "soak", "namespace": "default"},
        "spec": {"containers": containers}
    });
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "soak",
            "namespace": "default",
            "operation": "CREATE",
            "userInfo": {"username": "soak"},
            "object": pod,
            "dryRun": false
        }
    }))
    .expect("serialise a review")
}

async fn send(client: &reqwest::Client, url: &str, uid: &str, job: &Job) -> Outcome {
    let resp = match client
        .post(url)
        .header("content-type", "application/json")
        .body(review_body(uid, &job.images))
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => return Outcome::Error(format!("send: {e}")),
    };
    let status = resp.status();
    let body = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => return Outcome::Error(format!("body: {e}")),
    };
    if status != 200 {
        return Outcome::Error(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ));
    }
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return Outcome::Error(format!("not JSON: {e}")),
    };
    let r = &v["response"];
    if r["uid"] != uid {
        return Outcome::Error(format!("answer for uid {} instead of {uid}", r["uid"]));
    }
    match r["allowed"].as_bool() {
        Some(true) => Outcome::Allowed,
        Some(false) => Outcome::Denied(r["status"]["message"].as_str().unwrap_or("").to_string()),
        None => Outcome::Error("no response.allowed".into()),
    }
}

/// The warm mix, round-robin over each class's images: half signed, then
/// unsigned, wrongly signed and mixed Pods.
struct Mix {
    signed: Vec<String>,
    unsigned: Vec<String>,
    wrong: Vec<String>,
    fresh: Vec<(Class, String)>,
}

impl Mix {
    fn warm(&self, i: u64) -> Job {
        let pick = |v: &Vec<String>| v[(i / 10) as usize % v.len()].clone();
        let (class, images) = match i % 10 {
            0..=4 => (Class::Signed, vec![pick(&self.signed)]),
            5 | 6 => (Class::Unsigned, vec![pick(&self.unsigned)]),
            7 | 8 => (Class::Wrong, vec![pick(&self.wrong)]),
            _ => (Class::Mixed, vec![pick(&self.signed), pick(&self.unsigned)]),
        };
        Job {
            class,
            fresh: false,
            images,
        }
    }

    /// The `n`th fresh image; once the list is used up it starts over
    /// (those are then cached like the others; the summary says how many
    /// were really fresh).
    fn fresh(&self, n: u64) -> Option<Job> {
        if self.fresh.is_empty() {
            return None;
        }
        let (class, image) = &self.fresh[n as usize % self.fresh.len()];
        Some(Job {
            class: *class,
            fresh: (n as usize) < self.fresh.len(),
            images: vec![image.clone()],
        })
    }
}

fn load_fresh(path: &PathBuf) -> Vec<(Class, String)> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (class, image) = l
                .split_once(' ')
                .unwrap_or_else(|| panic!("{}: bad line {l:?}", path.display()));
            let class = Class::parse(class)
                .unwrap_or_else(|| panic!("{}: bad class {class:?}", path.display()));
            (class, image.trim().to_string())
        })
        .collect()
}

/// Outage intervals in wall-clock milliseconds, per component.
fn load_outages(path: &PathBuf) -> Vec<(String, u64, u64)> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut open: HashMap<String, u64> = HashMap::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [ms, component, state] = parts[..] else {
            continue;
        };
        let Ok(ms) = ms.parse::<u64>() else { continue };
        match state {
            "down" => {
                open.insert(component.to_string(), ms);
            }
            "up" => {
                if let Some(start) = open.remove(component) {
                    out.push((component.to_string(), start, ms));
                }
            }
            _ => {}
        }
    }
    // Still down when the log ends.
    for (component, start) in open {
        out.push((component, start, u64::MAX));
    }
    out
}

fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

#[derive(Default)]
struct ClassCounts {
    allowed: u64,
    denied: u64,
    /// Signed only: denied while an outage overlapped the request.
    denied_in_outage: u64,
    /// Signed only: allowed while an outage overlapped (a cached verdict).
    allowed_in_outage: u64,
    errors: u64,
    fresh: u64,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 100.0).round() / 100.0
}

/// Everything the summary needs, gathered one answer at a time.
#[derive(Default)]
struct Stats {
    counts: HashMap<Class, ClassCounts>,
    wrong_admissions: Vec<String>,
    over_deadline: u64,
    /// Error messages without their digits (ports, sizes), counted.
    errors: HashMap<String, u64>,
    denial_reasons: HashMap<(Class, String), u64>,
    /// Answered signed reviews: sent, latency, denial reason (an index
    /// into `reason_names`) or `None` for allowed.
    signed: Vec<(Duration, Duration, Option<u32>)>,
    reason_names: Vec<String>,
    reason_ids: HashMap<String, u32>,
    latencies: Vec<Duration>,
    latencies_fresh: Vec<Duration>,
    max_from_schedule: Duration,
    /// Reviews that could only be sent more than the deadline after their
    /// scheduled start (the rate was not sustained).
    late_starts: u64,
}

impl Stats {
    fn add(&mut self, r: Record, deadline: Duration) {
        let c = self.counts.entry(r.class).or_default();
        if r.fresh {
            c.fresh += 1;
        }
        let reason = match r.outcome {
            Outcome::Error(e) => {
                c.errors += 1;
                let key: String = e
                    .chars()
                    .filter(|ch| !ch.is_ascii_digit())
                    .take(160)
                    .collect();
                *self.errors.entry(key).or_default() += 1;
                return;
            }
            Outcome::Allowed => {
                c.allowed += 1;
                if r.class != Class::Signed {
                    self.wrong_admissions
                        .push(format!("{} at +{:?}", r.class.name(), r.sent));
                }
                None
            }
            Outcome::Denied(reason) => {
                c.denied += 1;
                let key: String = reason.chars().take(140).collect();
                if self.denial_reasons.len() < 500
                    || self.denial_reasons.contains_key(&(r.class, key.clone()))
                {
                    *self.denial_reasons.entry((r.class, key)).or_default() += 1;
                }
                Some(reason)
            }
        };
        self.latencies.push(r.latency);
        if r.fresh {
            self.latencies_fresh.push(r.latency);
        }
        self.max_from_schedule = self.max_from_schedule.max(r.from_schedule);
        if r.from_schedule.saturating_sub(r.latency) > deadline {
            self.late_starts += 1;
        }
        if r.latency > deadline {
            self.over_deadline += 1;
        }
        if r.class == Class::Signed {
            let id = reason.map(|reason| match self.reason_ids.get(&reason) {
                Some(id) => *id,
                None => {
                    let id = self.reason_names.len() as u32;
                    self.reason_names.push(reason.clone());
                    self.reason_ids.insert(reason, id);
                    id
                }
            });
            self.signed.push((r.sent, r.latency, id));
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let ca = std::fs::read(&args.ca).expect("read --ca");
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).expect("--ca is PEM")])
        // An answer later than this is counted as unanswered; the deadline
        // check itself is on the measured latency.
        .timeout(args.deadline + Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client");
    let mix = Arc::new(Mix {
        signed: args.signed.clone(),
        unsigned: args.unsigned.clone(),
        wrong: args.wrong.clone(),
        fresh: args.fresh.as_ref().map(load_fresh).unwrap_or_default(),
    });
    let url: Arc<str> = args.url.clone().into();
    let (tx, mut rx) = mpsc::unbounded_channel::<Record>();
    // Aggregates as answers arrive (a long run has millions of them); only
    // signed reviews keep their times, to be set against the outages at the end.
    let deadline = args.deadline;
    let collector = tokio::spawn(async move {
        let mut s = Stats::default();
        while let Some(r) = rx.recv().await {
            s.add(r, deadline);
        }
        s
    });
    let t0_wall = SystemTime::now();
    let t0 = Instant::now();
    let end = t0 + args.duration;
    let in_flight = Arc::new(AtomicU64::new(0));
    let mut max_lag = Duration::ZERO;
    let mut not_sent = 0u64;
    let mut uid = 0u64;

    match args.mode {
        Mode::Closed => {
            let mut workers = Vec::new();
            for w in 0..args.concurrency {
                let (client, url, mix, tx) = (client.clone(), url.clone(), mix.clone(), tx.clone());
                workers.push(tokio::spawn(async move {
                    let mut i = w as u64;
                    while Instant::now() < end {
                        let job = mix.warm(i);
                        let uid = format!("soak-c{w}-{i}");
                        let started = Instant::now();
                        let outcome = send(&client, &url, &uid, &job).await;
                        let latency = started.elapsed();
                        let _ = tx.send(Record {
                            class: job.class,
                            fresh: false,
                            sent: started - t0,
                            latency,
                            from_schedule: latency,
                            outcome,
                        });
                        i += args.concurrency as u64;
                    }
                }));
            }
            for w in workers {
                let _ = w.await;
            }
        }
        Mode::Open => {
            let rate = args.rate.expect("--rate is required in open mode");
            assert!(rate > 0.0, "--rate must be positive");
            let fresh_every = if mix.fresh.is_empty() || args.fresh_per_second <= 0.0 {
                u64::MAX
            } else {
                ((rate / args.fresh_per_second).round() as u64).max(1)
            };
            let mut fresh_n = 0u64;
            let permits = Arc::new(tokio::sync::Semaphore::new(args.connections));
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0u64.. {
                let at = t0 + Duration::from_secs_f64(i as f64 / rate);
                if at >= end {
                    break;
                }
                tokio::time::sleep_until(at.into()).await;
                let now = Instant::now();
                max_lag = max_lag.max(now - at);
                let job = if i % fresh_every == fresh_every - 1 {
                    fresh_n += 1;
                    mix.fresh(fresh_n - 1).expect("fresh images")
                } else {
                    mix.warm(i)
                };
                if in_flight.load(Ordering::Relaxed) >= args.max_in_flight {
                    not_sent += 1;
                    let _ = tx.send(Record {
                        class: job.class,
                        fresh: job.fresh,
                        sent: now - t0,
                        latency: Duration::ZERO,
                        from_schedule: Duration::ZERO,
                        outcome: Outcome::Error("not sent: too many reviews in flight".into()),
                    });
                    continue;
                }
                uid += 1;
                let uid = format!("soak-o-{uid}");
                let (client, url, tx, in_flight, permits) = (
                    client.clone(),
                    url.clone(),
                    tx.clone(),
                    in_flight.clone(),
                    permits.clone(),
                );
                in_flight.fetch_add(1, Ordering::Relaxed);
                tasks.spawn(async move {
                    let _permit = permits.acquire_owned().await.expect("semaphore");
                    let started = Instant::now();
                    let outcome = send(&client, &url, &uid, &job).await;
                    let done = Instant::now();
                    in_flight.fetch_sub(1, Ordering::Relaxed);
                    let _ = tx.send(Record {
                        class: job.class,
                        fresh: job.fresh,
                        sent: started - t0,
                        latency: done - started,
                        from_schedule: done - at,
                        outcome,
                    });
                });
                // Reap finished tasks so the set does not grow with the run.
                while tasks.try_join_next().is_some() {}
            }
            while tasks.join_next().await.is_some() {}
        }
    }
    drop(tx);
    let elapsed = t0.elapsed();
    let mut stats = collector.await.expect("collector");

    let outages = args.flap_log.as_ref().map(load_outages).unwrap_or_default();
    let t0_ms = epoch_ms(t0_wall);
    let overlaps_outage = |sent: Duration, latency: Duration| {
        let from = t0_ms + sent.as_millis() as u64;
        let to = from + latency.as_millis() as u64 + 1;
        outages
            .iter()
            .any(|(_, down, up)| from <= *up && *down <= to)
    };
    let mut signed_denied_all_up = Vec::new();
    {
        let c = stats.counts.entry(Class::Signed).or_default();
        for (sent, latency, reason) in &stats.signed {
            let in_outage = overlaps_outage(*sent, *latency);
            match reason {
                None if in_outage => c.allowed_in_outage += 1,
                None => {}
                Some(_) if in_outage => c.denied_in_outage += 1,
                Some(id) => signed_denied_all_up
                    .push(format!("+{sent:?}: {}", stats.reason_names[*id as usize])),
            }
        }
    }
    let Stats {
        counts,
        wrong_admissions,
        over_deadline,
        errors,
        denial_reasons,
        mut latencies,
        mut latencies_fresh,
        max_from_schedule,
        late_starts,
        ..
    } = stats;
    latencies.sort_unstable();
    latencies_fresh.sort_unstable();
    let error_count: u64 = errors.values().sum();
    let total = latencies.len() as u64 + error_count;
    let answered = total - error_count;

    let mut classes = serde_json::Map::new();
    let mut order: Vec<_> = counts.keys().copied().collect();
    order.sort();
    let mut text = String::new();
    let _ = writeln!(
        text,
        "mode {:?}, {:.1} s, {} reviews sent, {} answered ({:.1}/s), {} errors, {} not sent",
        args.mode,
        elapsed.as_secs_f64(),
        total,
        answered,
        answered as f64 / elapsed.as_secs_f64(),
        error_count,
        not_sent
    );
    for class in &order {
        let c = &counts[class];
        let _ = writeln!(
            text,
            "  {:<8} allowed {:>8}  denied {:>8}  (signed: denied during an outage {}, allowed during an outage {})  errors {}  fresh {}",
            class.name(),
            c.allowed,
            c.denied,
            c.denied_in_outage,
            c.allowed_in_outage,
            c.errors,
            c.fresh
        );
        classes.insert(
            class.name().into(),
            json!({
                "allowed": c.allowed, "denied": c.denied,
                "denied_during_outage": c.denied_in_outage,
                "allowed_during_outage": c.allowed_in_outage,
                "errors": c.errors, "fresh": c.fresh,
            }),
        );
    }
    let p = |q| ms(percentile(&latencies, q));
    let _ = writeln!(
        text,
        "latency ms: p50 {} p99 {} p99.9 {} max {}; fresh p50 {} p99 {} max {}; deadline {} ms, over it {}",
        p(50.0),
        p(99.0),
        p(99.9),
        ms(latencies.last().copied().unwrap_or_default()),
        ms(percentile(&latencies_fresh, 50.0)),
        ms(percentile(&latencies_fresh, 99.0)),
        ms(latencies_fresh.last().copied().unwrap_or_default()),
        ms(args.deadline),
        over_deadline
    );
    if args.mode == Mode::Open {
        let _ = writeln!(
            text,
            "driver: max start lag {} ms, max answer time from schedule {} ms, {} reviews sent more than the deadline late ({} connections)",
            ms(max_lag),
            ms(max_from_schedule),
            late_starts,
            args.connections
        );
    }
    let _ = writeln!(
        text,
        "outages in the flap log: {}; wrong admissions: {}; signed denied with everything up: {}",
        outages.len(),
        wrong_admissions.len(),
        signed_denied_all_up.len()
    );
    let mut reasons: Vec<_> = denial_reasons.iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(a.1));
    let _ = writeln!(text, "most frequent denial reasons:");
    for ((class, reason), n) in reasons.iter().take(12) {
        let _ = writeln!(text, "  {n:>8}  {:<8} {reason}", class.name());
    }
    for (e, n) in &errors {
        let _ = writeln!(text, "  error x{n}: {e}");
    }
    for w in wrong_admissions.iter().take(20) {
        let _ = writeln!(text, "  WRONG ADMISSION: {w}");
    }
    for s in signed_denied_all_up.iter().take(20) {
        let _ = writeln!(text, "  signed denied with everything up: {s}");
    }
    print!("{text}");

    let summary = json!({
        "mode": format!("{:?}", args.mode).to_lowercase(),
        "rate": args.rate,
        "concurrency": (args.mode == Mode::Closed).then_some(args.concurrency),
        "duration_s": elapsed.as_secs_f64(),
        "sent": total,
        "answered": answered,
        "answered_per_s": answered as f64 / elapsed.as_secs_f64(),
        "errors": error_count,
        "not_sent": not_sent,
        "classes": classes,
        "wrong_admissions": wrong_admissions.len(),
        "signed_denied_all_up": signed_denied_all_up.len(),
        "outages": outages.len(),
        "deadline_ms": ms(args.deadline),
        "over_deadline": over_deadline,
        "latency_ms": {
            "p50": p(50.0), "p99": p(99.0), "p999": p(99.9),
            "max": ms(latencies.last().copied().unwrap_or_default()),
            "fresh_p50": ms(percentile(&latencies_fresh, 50.0)),
            "fresh_p99": ms(percentile(&latencies_fresh, 99.0)),
            "fresh_max": ms(latencies_fresh.last().copied().unwrap_or_default()),
        },
        "driver_max_start_lag_ms": ms(max_lag),
        "max_from_schedule_ms": ms(max_from_schedule),
        "late_starts": late_starts,
        "connections": (args.mode == Mode::Open).then_some(args.connections),
    });
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&summary).unwrap())
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
    if !wrong_admissions.is_empty() || over_deadline > 0 || error_count > 0 || late_starts > 0 {
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}
