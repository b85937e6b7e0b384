//! Prometheus metrics (served as text on the metrics port).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

// Labels whose values come from a fixed set are `&'static str`: every
// review looks up several families, and a lookup then allocates nothing.

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdmissionLabels {
    pub kind: String,
    pub operation: &'static str,
    pub decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerificationLabels {
    pub result: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HostStatusLabels {
    pub host: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub cache: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DocumentLabels {
    pub document: String,
}

/// Every metric imagegate exports.
pub struct Metrics {
    registry: Registry,
    pub admission_requests: Family<AdmissionLabels, Counter>,
    pub admission_duration: Histogram,
    pub image_verifications: Family<VerificationLabels, Counter>,
    pub registry_requests: Family<HostStatusLabels, Counter>,
    pub lookaside_requests: Family<HostStatusLabels, Counter>,
    pub cache_requests: Family<CacheLabels, Counter>,
    /// 1 for each policy document whose latest version failed to load.
    pub policy_load_errors: Family<DocumentLabels, Gauge>,
    /// The `metadata.generation` of each policy document this replica
    /// serves: after a change, every replica shows the new generation once
    /// it decides with it (what an operator, and the tests, wait for).
    pub policy_generation: Family<DocumentLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("imagegate");
        let admission_requests = Family::<AdmissionLabels, Counter>::default();
        registry.register(
            "admission_requests",
            "Admission reviews answered, by object kind, operation and decision",
            admission_requests.clone(),
        );
        let admission_duration = Histogram::new([
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]);
        registry.register(
            "admission_duration_seconds",
            "Time to answer one admission review",
            admission_duration.clone(),
        );
        let image_verifications = Family::<VerificationLabels, Counter>::default();
        registry.register(
            "image_verifications",
            "Image verdicts, by result and reason class",
            image_verifications.clone(),
        );
        let registry_requests = Family::<HostStatusLabels, Counter>::default();
        registry.register(
            "registry_requests",
            "Registry requests, by host and HTTP status (or error class)",
            registry_requests.clone(),
        );
        let lookaside_requests = Family::<HostStatusLabels, Counter>::default();
        registry.register(
            "lookaside_requests",
            "Lookaside signature requests, by host and HTTP status (or error class)",
            lookaside_requests.clone(),
        );
        let cache_requests = Family::<CacheLabels, Counter>::default();
        registry.register(
            "cache_requests",
            "Cache lookups, by cache and hit/miss",
            cache_requests.clone(),
        );
        let policy_load_errors = Family::<DocumentLabels, Gauge>::default();
        registry.register(
            "policy_load_errors",
            "1 when the latest version of a policy document failed to load (its last good version is served)",
            policy_load_errors.clone(),
        );
        let policy_generation = Family::<DocumentLabels, Gauge>::default();
        registry.register(
            "policy_generation",
            "metadata.generation of each policy document this replica decides with",
            policy_generation.clone(),
        );
        Metrics {
            registry,
            admission_requests,
            admission_duration,
            image_verifications,
            registry_requests,
            lookaside_requests,
            cache_requests,
            policy_load_errors,
            policy_generation,
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn count_registry(&self, host: &str, status: &str) {
        self.registry_requests
            .get_or_create(&HostStatusLabels {
                host: host.into(),
                status: status.into(),
            })
            .inc();
    }

    pub fn count_lookaside(&self, host: &str, status: &str) {
        self.lookaside_requests
            .get_or_create(&HostStatusLabels {
                host: host.into(),
                status: status.into(),
            })
            .inc();
    }

    pub fn count_cache(&self, cache: &'static str, hit: bool) {
        self.cache_requests
            .get_or_create(&CacheLabels {
                cache,
                result: if hit { "hit" } else { "miss" },
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_documented_ones() {
        let m = Metrics::new();
        m.admission_requests
            .get_or_create(&AdmissionLabels {
                kind: "Pod".into(),
                operation: "CREATE",
                decision: "allowed",
            })
            .inc();
        m.count_registry("127.0.0.1:5000", "200");
        m.count_lookaside("127.0.0.1:8000", "404");
        m.count_cache("verdict", true);
        m.admission_duration.observe(0.01);
        let text = m.encode();
        for name in [
            "imagegate_admission_requests_total{kind=\"Pod\",operation=\"CREATE\",decision=\"allowed\"} 1",
            "imagegate_admission_duration_seconds_bucket",
            "imagegate_registry_requests_total{host=\"127.0.0.1:5000\",status=\"200\"} 1",
            "imagegate_lookaside_requests_total{host=\"127.0.0.1:8000\",status=\"404\"} 1",
            "imagegate_cache_requests_total{cache=\"verdict\",result=\"hit\"} 1",
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
    }
}
