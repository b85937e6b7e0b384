//! `crds/` is generated from the Rust types (`imagegate crd`); this fails
//! when the two drift apart. Regenerate with
//! `cargo run -q -- crd > crds/imagegate.dev.yaml`.

#[test]
fn crds_directory_matches_the_rust_types() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/imagegate.dev.yaml");
    let on_disk = std::fs::read_to_string(path).expect("crds/imagegate.dev.yaml");
    assert!(
        on_disk == imagegate::crd::crd_yaml(),
        "crds/imagegate.dev.yaml is out of date: run `cargo run -q -- crd > crds/imagegate.dev.yaml`"
    );
}
