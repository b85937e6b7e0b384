//! The `imagegate` command line as a user runs it: exit codes, outputs,
//! and signatures that skopeo (containers/image) accepts, and the other
//! way round.

mod harness;

use std::path::Path;
use std::process::{Command, Output};

use harness::{Harness, keys};
use serde_json::json;

fn imagegate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_imagegate"))
        .args(args)
        .output()
        .expect("run imagegate")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn verify_exit_codes_and_outputs() {
    let h = Harness::start();
    let k = keys();
    h.push_signed(&h.build_image("cli signed"), "cli/signed:v1", &k.signer);
    h.push_unsigned(&h.build_image("cli unsigned"), "cli/unsigned:v1");
    let policy = h.signed_by_policy(&h.image("cli"), &k.signer.public_armored);
    let rd = h.registries_d();
    let base = [
        "verify",
        "--policy",
        s(&policy),
        "--registries-d",
        s(rd),
        "--tls-verify=false",
    ];

    let signed = h.image("cli/signed:v1");
    let out = imagegate(&[&base[..], &[&format!("docker://{signed}")]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("docker://{signed}: ACCEPTED")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("(scope {})", h.image("cli"))),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("accepted (signed by {}", k.signer.fingerprint)),
        "{stdout}"
    );

    let unsigned = h.image("cli/unsigned:v1");
    let out = imagegate(
        &[
            &base[..],
            &[signed.as_str(), unsigned.as_str(), "--output", "json"],
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(1));
    let verdicts: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(verdicts[0]["documents"][0]["allowed"], true);
    assert_eq!(verdicts[1]["documents"][0]["allowed"], false);
    assert_eq!(
        verdicts[1]["documents"][0]["reason"],
        "A signature was required, but no signature exists"
    );

    // Usage and configuration errors exit 2.
    assert_eq!(imagegate(&["verify"]).status.code(), Some(2));
    let missing = imagegate(&["verify", "--policy", "/nonexistent/policy.json", &signed]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("/nonexistent/policy.json"));
    let bad = h.write_file(
        "bad-policy.json",
        br#"{"default":[{"type":"reject"}],"transports":{"docker":{"x":[]}}}"#,
    );
    let out = imagegate(&["verify", "--policy", s(&bad), &signed]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains(
            "List of verification policy requirements must not be empty (at $.transports.docker.x)"
        ),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn standalone_sign_and_verify_interoperate_with_skopeo() {
    let h = Harness::start();
    let k = keys();
    h.push_unsigned(&h.build_image("standalone"), "cli/standalone:v1");
    let manifest = h.write_file("manifest.json", h.raw_manifest("cli/standalone:v1"));
    let identity = h.image("cli/standalone:v1");

    // imagegate signs, skopeo verifies.
    let sig = h.dir().join("imagegate.sig");
    let out = imagegate(&[
        "standalone-sign",
        s(&manifest),
        &identity,
        s(&k.signer.secret),
        "-o",
        s(&sig),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let skopeo = Command::new("skopeo")
        .env("GNUPGHOME", h.gnupghome())
        .args([
            "standalone-verify",
            s(&manifest),
            &identity,
            &k.signer.fingerprint,
            s(&sig),
        ])
        .output()
        .unwrap();
    assert!(
        skopeo.status.success(),
        "skopeo rejects imagegate's signature: {}",
        text(&skopeo.stderr)
    );

    // skopeo signs, imagegate verifies.
    let skopeo_sig = h.write_file(
        "skopeo.sig",
        h.standalone_sign(&std::fs::read(&manifest).unwrap(), &identity, &k.signer),
    );
    let out = imagegate(&[
        "standalone-verify",
        s(&manifest),
        &identity,
        s(&k.signer.public_armored),
        s(&skopeo_sig),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!(
        "Signature verified using fingerprint {}",
        k.signer.fingerprint
    )));

    // Another reference, another key, another manifest: each rejected with its reason.
    let out = imagegate(&[
        "standalone-verify",
        s(&manifest),
        &h.image("cli/standalone:v2"),
        s(&k.signer.public_armored),
        s(&sig),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("does not match"),
        "{}",
        text(&out.stderr)
    );
    let out = imagegate(&[
        "standalone-verify",
        s(&manifest),
        &identity,
        s(&k.wrong.public_armored),
        s(&sig),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("Key not found for key ID"),
        "{}",
        text(&out.stderr)
    );
    let other = h.write_file("other-manifest.json", b"{\"schemaVersion\":2}");
    let out = imagegate(&[
        "standalone-verify",
        s(&other),
        &identity,
        s(&k.signer.public_armored),
        s(&sig),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("Signature for docker digest"),
        "{}",
        text(&out.stderr)
    );
    let out = imagegate(&[
        "standalone-verify",
        s(&manifest),
        &identity,
        s(&manifest),
        s(&sig),
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a file without keys is a configuration error"
    );
}

#[test]
fn sign_produces_signatures_skopeo_accepts() {
    let h = Harness::start();
    let k = keys();
    h.push_unsigned(&h.build_image("to sign"), "cli/tosign:v1");
    h.push_unsigned(
        &h.build_index("to sign, multi", &["linux/amd64", "linux/arm64"]),
        "cli/multi:v1",
    );
    let policy = h.signed_by_policy(&h.image("cli"), &k.signer.public_armored);
    assert!(!h.skopeo_verdict(&policy, &h.image("cli/tosign:v1")).0);

    for image in ["cli/tosign:v1", "cli/multi:v1"] {
        let full = h.image(image);
        let out = imagegate(&[
            "sign",
            "--key",
            s(&k.signer.secret),
            "--lookaside-staging",
            s(h.lookaside_dir()),
            "--tls-verify=false",
            &full,
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    let (ok, msg) = h.skopeo_verdict(&policy, &h.image("cli/tosign:v1"));
    assert!(ok, "skopeo rejects imagegate sign: {msg}");
    for platform in ["linux/amd64", "linux/arm64"] {
        let (ok, msg) = h.skopeo_verdict_on(&policy, &h.image("cli/multi:v1"), platform);
        assert!(ok, "{platform}: {msg}");
    }
    // Every instance and the list itself are signed, as `skopeo copy --all --sign-by` does.
    let list_digest = h.manifest_digest("cli/multi:v1");
    assert_eq!(h.signatures("cli/multi", &list_digest).len(), 1);
    for (_, digest) in h.instance_digests("cli/multi:v1") {
        assert_eq!(h.signatures("cli/multi", &digest).len(), 1);
    }
    // Signing again appends signature-2.
    let out = imagegate(&[
        "sign",
        "--key",
        s(&k.signer.secret),
        "--lookaside-staging",
        s(h.lookaside_dir()),
        "--tls-verify=false",
        &h.image("cli/tosign:v1"),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let digest = h.manifest_digest("cli/tosign:v1");
    assert_eq!(h.signatures("cli/tosign", &digest).len(), 2);

    // A signature for another identity (--identity) is accepted under exactReference.
    let out = imagegate(&[
        "sign",
        "--key",
        s(&k.signer.secret),
        "-o",
        s(&h.dir().join("one.sig")),
        "--identity",
        "registry.example.com/vendor/app:1.0",
        "--tls-verify=false",
        &h.image("cli/tosign:v1"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let blob = std::fs::read(h.dir().join("one.sig")).unwrap();
    h.put_signature("cli/tosign", &digest, 3, &blob);
    let exact = h.write_policy(&json!({"default": [{"type": "reject"}], "transports": {"docker": {h.image("cli"): [{
        "type": "signedBy", "keyType": "GPGKeys", "keyPath": k.signer.public_armored.to_string_lossy(),
        "signedIdentity": {"type": "exactReference", "dockerReference": "registry.example.com/vendor/app:1.0"}}]}}}));
    let (ok, msg) = h.skopeo_verdict(&exact, &h.image("cli/tosign:v1"));
    assert!(ok, "{msg}");
}

#[test]
fn policy_lint() {
    let h = Harness::start();
    let good = h.write_policy(&json!({"default": [{"type": "reject"}], "transports": {"docker": {
        "busybox": [{"type": "insecureAcceptAnything"}],
        "*.example.com/ns": [{"type": "insecureAcceptAnything"}],
        "registry.example.com": [{"type": "signedBaseLayer", "baseLayerIdentity": {"type": "matchRepository"}}]
    }}}));
    let out = imagegate(&["policy", "lint", s(&good)]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("scope \"busybox\" can never match"),
        "{stdout}"
    );
    assert!(
        stdout.contains("$.transports.docker[\"*.example.com/ns\"]"),
        "{stdout}"
    );
    assert!(stdout.contains("signedBaseLayer"), "{stdout}");

    let bad = h.write_file(
        "dup.json",
        br#"{"default":[{"type":"reject"}],"default":[]}"#,
    );
    let out = imagegate(&["policy", "lint", s(&bad)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("Duplicate key \"default\" (at $.default)"),
        "{}",
        text(&out.stdout)
    );
    let no_default = h.write_file("nodefault.json", br#"{"transports":{}}"#);
    assert_eq!(
        imagegate(&["policy", "lint", s(&no_default)]).status.code(),
        Some(1)
    );
    assert_eq!(
        imagegate(&["policy", "lint", "--allow-missing-default", s(&no_default)])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        imagegate(&["policy", "lint", "/nonexistent.json"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn policy_import_then_export_round_trips_through_crio_files() {
    let h = Harness::start();
    let k = keys();
    h.push_signed(&h.build_image("round trip"), "rt/app:v1", &k.signer);
    h.push_unsigned(&h.build_image("round trip unsigned"), "rt/unsigned:v1");
    let node_policy = h.signed_by_policy(&h.image("rt"), &k.signer.public_armored);

    // A node's files → a ClusterImagePolicy (keys inlined).
    let out = imagegate(&[
        "policy",
        "import",
        "--policy",
        s(&node_policy),
        "--registries-d",
        s(h.registries_d()),
        "--name",
        "node",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let yaml = text(&out.stdout);
    assert!(
        yaml.contains("kind: ClusterImagePolicy") && yaml.contains("keyData:"),
        "{yaml}"
    );
    assert!(yaml.contains(&h.lookaside_url()), "{yaml}");
    let cip = h.write_file("node.yaml", &yaml);
    let strict = h.write_file(
        "strict.yaml",
        format!(
            "apiVersion: imagegate.dev/v1alpha1\nkind: ImagePolicy\nmetadata: {{name: other-key, namespace: strict}}\nspec:\n  policy:\n    transports:\n      docker:\n        {scope}: [{{type: signedBy, keyType: GPGKeys, keyPath: {key}}}]\n",
            scope = h.image("rt"),
            key = k.wrong.public_armored.display()
        ),
    );

    // The documents → CRI-O's files.
    let dir = h.dir().join("export");
    let out = imagegate(&[
        "policy",
        "export",
        "--out",
        s(&dir),
        "--key-dir",
        s(&dir.join("keys")),
        s(&cip),
        s(&strict),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let registries_d = dir.join("registries.d");
    let verdict = |policy: &str, image: &str| {
        h.skopeo_verdict_with(&dir.join(policy), &h.image(image), None, &registries_d)
            .0
    };
    assert!(verdict("policy.json", "rt/app:v1"));
    assert!(!verdict("policy.json", "rt/unsigned:v1"));
    // The namespace file composes the cluster's policy with the namespace's.
    assert!(!verdict("strict.json", "rt/app:v1"));
    assert!(!verdict("strict.json", "rt/unsigned:v1"));
    assert!(dir.join("keys").read_dir().unwrap().count() >= 1);
}
