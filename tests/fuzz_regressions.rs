//! Replays every fuzzing finding (`tests/fixtures/fuzz/<target>/`) and
//! every seed (`fuzz/seeds/<target>/` and the fixtures that
//! `scripts/fuzz.sh seed` copies) through the very drivers the `cargo fuzz`
//! targets run, so a plain `cargo nextest run` catches regressions without
//! cargo-fuzz, nightly flags or network. See FUZZING.md.

#[path = "../fuzz/src/lib.rs"]
mod drivers;

use std::path::{Path, PathBuf};

const UPSTREAM: &str = "tests/fixtures/cimage/upstream";

/// The inputs of `target`: recorded findings first, then the seeds (the
/// same sources as `seed_sources` in scripts/fuzz.sh).
fn inputs(target: &str, seeds: &[&str]) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sources = vec![
        format!("tests/fixtures/fuzz/{target}"),
        format!("fuzz/seeds/{target}"),
    ];
    sources.extend(seeds.iter().map(|s| s.replace("$U", UPSTREAM)));
    let mut files = Vec::new();
    for s in sources {
        collect(&root.join(s), &mut files);
    }
    files
}

fn collect(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_file() {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !(name.ends_with(".gpg") || name.starts_with("LICENSE") || name.starts_with("README")) {
            out.push(path.to_path_buf());
        }
    } else if let Ok(entries) = std::fs::read_dir(path) {
        let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        for e in entries {
            collect(&e, out);
        }
    }
}

/// Runs `driver` over every input, reporting every input that panics (not
/// only the first), by name.
fn replay(target: &str, seeds: &[&str], driver: fn(&[u8])) {
    let files = inputs(target, seeds);
    assert!(!files.is_empty(), "no inputs for {target}");
    let mut failed = Vec::new();
    for f in &files {
        let data = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        if std::panic::catch_unwind(|| driver(&data)).is_err() {
            failed.push(f.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: {} of {} inputs fail:\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

#[test]
fn reference() {
    replay("reference", &[], drivers::reference);
}

#[test]
fn policy() {
    replay(
        "policy",
        &[
            "$U/default-policy.json",
            "$U/signature/fixtures/policy.json",
        ],
        drivers::policy,
    );
}

#[test]
fn registries_d() {
    replay(
        "registries_d",
        &["$U/default.yaml", "$U/docker/fixtures/registries.d"],
        drivers::registries_d,
    );
}

#[test]
fn signature() {
    // The whole fixture directory: signatures, and manifests and keys as
    // non-signatures (keys are skipped by name, as in the seed script).
    replay(
        "signature",
        &[
            "$U/signature/fixtures",
            "$U/docs/atomic-signature-embedded-json.json",
            "tests/fixtures/cimage/generated",
        ],
        drivers::signature,
    );
}

#[test]
fn manifest() {
    replay("manifest", &["$U/signature/fixtures"], drivers::manifest);
}

#[test]
fn admission() {
    replay("admission", &[], drivers::admission);
}
