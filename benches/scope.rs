//! Scope lookup cost with 10 and 10,000 scopes (`Policy::requirements_for`),
//! for an exact hit, a wildcard hit and a fall-through to `default`.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use imagegate::policy::{ParseOptions, Policy};
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
        let cases = [
            (
                "exact",
                format!(
                    "registry{}.example.com/team{}/app:v1",
                    scopes / 2,
                    scopes / 2
                ),
            ),
            (
                "wildcard",
                "a.b.wild.example.org:5000/ns/app:v1".to_string(),
            ),
            ("default", "quay.io/other/app:v1".to_string()),
        ];
        for (name, image) in cases {
            let image = ImageReference::parse(&image).expect("valid reference");
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
