//! Scope lookup cost with 10 and 10,000 scopes (`Policy::requirements_for`),
//! for an exact hit, a wildcard hit and a fall-through to `default`. The
//! 10-scope case is the reference for the 10,000-scope one: the lookup
//! walks the image's candidate keys (identity, repository, namespaces,
//! host, wildcards), not the scopes, so the ratio should stay near 1.
//!
//! Each case first checks which scope it reaches, so a change in lookup
//! order cannot silently turn a measured hit into a fall-through.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use imagegate::policy::{MatchedScope, ParseOptions, Policy};
use imagegate::reference::ImageReference;

fn policy_with(scopes: usize) -> Policy {
    let mut docker = serde_json::Map::new();
    for i in 0..scopes {
        docker.insert(
            format!("registry{i}.example.com/team{i}/app"),
            serde_json::json!([{"type": "signedBy", "keyType": "GPGKeys", "keyData": "", "signedIdentity": {"type": "matchRepository"}}]),
        );
    }
    docker.insert(
        "*.wild.example.org".into(),
        serde_json::json!([{"type": "reject"}]),
    );
    let doc = serde_json::json!({"default": [{"type": "insecureAcceptAnything"}], "transports": {"docker": docker}});
    Policy::parse(doc.to_string().as_bytes(), ParseOptions::POLICY_FILE).expect("valid policy")
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("scope_lookup");
    for scopes in [10usize, 10_000] {
        let policy = policy_with(scopes);
        let middle = scopes / 2;
        let cases = [
            (
                "exact",
                format!("registry{middle}.example.com/team{middle}/app:v1"),
                MatchedScope::Scope(format!("registry{middle}.example.com/team{middle}/app")),
            ),
            (
                "wildcard",
                "a.b.wild.example.org:5000/ns/app:v1".to_string(),
                MatchedScope::Scope("*.wild.example.org".to_string()),
            ),
            (
                "default",
                "quay.io/other/app:v1".to_string(),
                MatchedScope::Default,
            ),
        ];
        for (name, image, expected) in cases {
            let image = ImageReference::parse(&image).expect("valid reference");
            let matched = policy.requirements_for(&image).expect("a scope applies");
            assert_eq!(matched.scope, expected, "{name} case with {scopes} scopes");
            group.bench_with_input(BenchmarkId::new(name, scopes), &image, |b, image| {
                b.iter(|| {
                    policy
                        .requirements_for(std::hint::black_box(image))
                        .map(|m| m.requirements.len())
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
