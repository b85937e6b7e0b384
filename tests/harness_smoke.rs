//! Proves the test harness: images pushed signed, unsigned, wrongly signed
//! and multi-arch get the verdicts c/image (through skopeo) is known to give
//! (the e2e outcomes in the project's reference notes), crafted signatures
//! land where c/image reads them, and the lookaside server counts requests
//! and injects faults.

mod harness;

use harness::{CannedResponse, Harness, PushOptions, keys};

const NO_SIGNATURE: &str =
    "Source image rejected: A signature was required, but no signature exists";
const INVALID_SIGNATURE: &str = "Source image rejected: Invalid GPG signature";

#[track_caller]
fn assert_accepted((accepted, message): (bool, String)) {
    assert!(accepted, "expected skopeo to accept, it said: {message}");
}

#[track_caller]
fn assert_rejected((accepted, message): (bool, String), expected: &str) {
    assert!(
        !accepted,
        "expected skopeo to reject ({expected}), it accepted"
    );
    assert!(
        message.contains(expected),
        "expected a message containing {expected:?}, got {message:?}"
    );
}

#[test]
fn single_image_verdicts_match_the_reference() {
    let h = Harness::start();
    let k = keys();
    let good = h.signed_by_policy(&h.image("e2e"), &k.signer.public_armored);
    let wrong = h.signed_by_policy(&h.image("e2e"), &k.wrong.public_armored);

    let hello = h.push_signed(&h.build_image("hello"), "e2e/hello:v1", &k.signer);
    h.push_unsigned(&h.build_image("unsigned"), "e2e/unsigned:v1");
    h.push_signed(&h.build_image("wrongsig"), "e2e/wrongsig:v1", &k.wrong);
    // docker->docker keeps the signature, whose identity is still :v1.
    let retag = h.copy("e2e/hello:v1", "e2e/hello:retag", PushOptions::unsigned());
    assert_eq!(retag, hello);

    assert_eq!(h.signatures("e2e/hello", &hello).len(), 1);
    h.clear_lookaside_requests();
    assert_accepted(h.skopeo_verdict(&good, &h.image("e2e/hello:v1")));
    // c/image reads signature-1 (found) then signature-2 (404, end of list).
    let requests = h.lookaside_requests();
    let seen: Vec<(&str, u16)> = requests
        .iter()
        .map(|r| (r.path.as_str(), r.status))
        .collect();
    assert_eq!(
        seen,
        [
            (h.signature_url_path("e2e/hello", &hello, 1).as_str(), 200),
            (h.signature_url_path("e2e/hello", &hello, 2).as_str(), 404),
        ]
    );
    assert!(requests.iter().all(|r| r.method == "GET"));

    assert_accepted(h.skopeo_verdict(
        &good,
        &format!("docker://{}", h.image(&format!("e2e/hello@{hello}"))),
    ));
    assert_rejected(
        h.skopeo_verdict(&wrong, &h.image("e2e/hello:v1")),
        INVALID_SIGNATURE,
    );
    assert_rejected(
        h.skopeo_verdict(&good, &h.image("e2e/wrongsig:v1")),
        INVALID_SIGNATURE,
    );
    assert_rejected(
        h.skopeo_verdict(&good, &h.image("e2e/unsigned:v1")),
        NO_SIGNATURE,
    );
    assert_rejected(
        h.skopeo_verdict(&good, &h.image("e2e/hello:retag")),
        &format!(
            "Source image rejected: Signature for identity {} is not accepted",
            h.image("e2e/hello:v1")
        ),
    );
    // Outside the policy's scope the default (reject) applies.
    let other = h.push_signed(&h.build_image("other"), "elsewhere/app:v1", &k.signer);
    assert!(other.starts_with("sha256:"));
    assert_rejected(
        h.skopeo_verdict(&good, &h.image("elsewhere/app:v1")),
        "is rejected by policy",
    );
    // Without a lookaside, nothing is found.
    let empty_d = h.unique_path("empty-registries.d");
    std::fs::create_dir(&empty_d).unwrap();
    assert_rejected(
        h.skopeo_verdict_with(&good, &h.image("e2e/hello:v1"), None, &empty_d),
        NO_SIGNATURE,
    );
}

#[test]
fn multi_arch_index_and_manifest_list() {
    let h = Harness::start();
    let k = keys();
    let policy = h.signed_by_policy(&h.image("e2e"), &k.signer.public_binary);

    let index = h.build_index("multi", &["linux/amd64", "linux/arm64"]);
    let pushed = h.push_signed(&index, "e2e/multi:v1", &k.signer);
    assert_eq!(pushed, index.digest, "an OCI index is pushed verbatim");
    // --all signs the index and each instance.
    let instances = h.instance_digests("e2e/multi:v1");
    assert_eq!(
        instances,
        index
            .instances
            .iter()
            .map(|i| (i.platform.to_string(), i.digest.clone()))
            .collect::<Vec<_>>()
    );
    let mut expected_dirs: Vec<String> = std::iter::once(&index.digest)
        .chain(index.instances.iter().map(|i| &i.digest))
        .map(|d| format!("e2e/multi@{}", d.replace(':', "=")))
        .collect();
    expected_dirs.sort();
    assert_eq!(h.signature_dirs(), expected_dirs);

    h.clear_lookaside_requests();
    assert_accepted(h.skopeo_verdict_on(&policy, &h.image("e2e/multi:v1"), "linux/arm64"));
    // Only the selected instance's signatures are read, never the index's.
    let arm64_dir = format!(
        "/e2e/multi@{}/",
        index.instances[1].digest.replace(':', "=")
    );
    let requests = h.lookaside_requests();
    assert!(!requests.is_empty());
    assert!(
        requests.iter().all(|r| r.path.starts_with(&arm64_dir)),
        "{requests:?}"
    );
    assert_accepted(h.skopeo_verdict_on(&policy, &h.image("e2e/multi:v1"), "linux/amd64"));

    // The same index as a Docker manifest list (digests change on conversion).
    let list = h.push(
        &index,
        "e2e/list:v1",
        PushOptions::signed_by(&k.signer).all().v2s2(),
    );
    let raw: serde_json::Value = serde_json::from_slice(&h.raw_manifest("e2e/list:v1")).unwrap();
    assert_eq!(
        raw["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    assert_ne!(list, index.digest);
    assert_accepted(h.skopeo_verdict(&policy, &h.image("e2e/list:v1")));

    // An index signed only at the top (as `--multi-arch index-only` would)
    // is rejected on pull: only the selected instance is checked.
    let top_only = h.build_index("top-only", &["linux/amd64", "linux/arm64"]);
    let top = h.push_unsigned(&top_only, "e2e/toponly:v1");
    let manifest = h.raw_manifest("e2e/toponly:v1");
    let sig = h.standalone_sign(&manifest, &h.image("e2e/toponly:v1"), &k.signer);
    h.put_signature("e2e/toponly", &top, 1, &sig);
    assert_rejected(
        h.skopeo_verdict(&policy, &h.image("e2e/toponly:v1")),
        NO_SIGNATURE,
    );
}

#[test]
fn appended_signature_any_valid_one_suffices() {
    let h = Harness::start();
    let k = keys();
    let policy = h.signed_by_policy(&h.image("e2e"), &k.signer.public_armored);
    let digest = h.push_signed(&h.build_image("twosigs"), "e2e/twosigs:v1", &k.wrong);
    assert_rejected(
        h.skopeo_verdict(&policy, &h.image("e2e/twosigs:v1")),
        INVALID_SIGNATURE,
    );
    let again = h.copy(
        "e2e/twosigs:v1",
        "e2e/twosigs:v1",
        PushOptions::signed_by(&k.signer),
    );
    assert_eq!(again, digest);
    assert_eq!(h.signatures("e2e/twosigs", &digest).len(), 2);
    h.clear_lookaside_requests();
    assert_accepted(h.skopeo_verdict(&policy, &h.image("e2e/twosigs:v1")));
    let statuses: Vec<u16> = h.lookaside_requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200, 404]);
}

#[test]
fn crafted_signatures_and_key_variants() {
    let h = Harness::start();
    let k = keys();
    let identity = h.image("e2e/crafted:v1");
    let digest = h.push_unsigned(&h.build_image("crafted"), "e2e/crafted:v1");
    let manifest = h.raw_manifest("e2e/crafted:v1");
    let policy_for = |key_file: &std::path::Path| h.signed_by_policy(&h.image("e2e"), key_file);

    // skopeo standalone-sign output placed by hand.
    let standalone = h.standalone_sign(&manifest, &identity, &k.signer);
    h.put_signature("e2e/crafted", &digest, 1, &standalone);
    assert_accepted(h.skopeo_verdict(&policy_for(&k.signer.public_binary), &identity));

    // A hand-made payload signed with gpg is just as good.
    let payload = Harness::payload(&identity, &digest);
    h.put_signature("e2e/crafted", &digest, 1, &h.gpg_sign(&k.signer, &payload));
    assert_accepted(h.skopeo_verdict(&policy_for(&k.signer.public_armored), &identity));

    // A payload for another digest is rejected after the crypto succeeds.
    let other = Harness::payload(&identity, &harness::sha256_digest(b"other"));
    h.put_signature("e2e/crafted", &digest, 1, &h.gpg_sign(&k.signer, &other));
    assert_rejected(
        h.skopeo_verdict(&policy_for(&k.signer.public_armored), &identity),
        "does not match",
    );

    // Signing subkey. Current c/image maps a subkey to its trusted primary
    // and accepts; skopeo 1.9.3 (c/image 5.23.1, Debian 12) predates that
    // and rejects after the crypto succeeds, naming the subkey. Either way
    // the harness made a valid signature by the subkey.
    let subkey_refused = format!(
        "Source image rejected: Signature by key {} is not accepted",
        k.subkey.signing_fingerprint
    );
    h.put_signature("e2e/crafted", &digest, 1, &h.gpg_sign(&k.subkey, &payload));
    assert_rejected(
        h.skopeo_verdict(&policy_for(&k.subkey.public_armored), &identity),
        &subkey_refused,
    );
    // skopeo signing with the primary fingerprint also signs with the subkey.
    let sub = h.standalone_sign(&manifest, &identity, &k.subkey);
    h.put_signature("e2e/crafted", &digest, 1, &sub);
    assert_rejected(
        h.skopeo_verdict(&policy_for(&k.subkey.public_binary), &identity),
        &subkey_refused,
    );

    // Expired key (signature made before expiry): gpgme rejects.
    let expired = h.gpg_sign(&k.expired, &payload);
    h.put_signature("e2e/crafted", &digest, 1, &expired);
    assert_rejected(
        h.skopeo_verdict(&policy_for(&k.expired.public_binary), &identity),
        INVALID_SIGNATURE,
    );
    // skopeo can sign with it too, at the faked time.
    let expired = h.standalone_sign(&manifest, &identity, &k.expired);
    h.put_signature("e2e/crafted", &digest, 1, &expired);
    assert_rejected(
        h.skopeo_verdict(&policy_for(&k.expired.public_binary), &identity),
        INVALID_SIGNATURE,
    );

    // Revoked key: accepted while the verifier knows no revocation,
    // rejected once the revocation is in the trusted key file.
    h.put_signature("e2e/crafted", &digest, 1, &h.gpg_sign(&k.revoked, &payload));
    assert_accepted(h.skopeo_verdict(&policy_for(&k.revoked.public_unrevoked), &identity));
    assert_rejected(
        h.skopeo_verdict(&policy_for(&k.revoked.public_binary), &identity),
        INVALID_SIGNATURE,
    );

    // An armoured blob is not a lookaside signature (first byte '-').
    let armored = h.gpg_sign_with(&k.signer, &payload, &["--armor"]);
    assert!(armored.starts_with(b"-----BEGIN PGP MESSAGE-----"));
    h.put_signature("e2e/crafted", &digest, 1, &armored);
    assert_rejected(
        h.skopeo_verdict(&policy_for(&k.signer.public_armored), &identity),
        "unrecognized signature format, starting with binary 0x2d",
    );
}

#[test]
fn lookaside_fault_injection() {
    let h = Harness::start();
    let k = keys();
    let policy = h.signed_by_policy(&h.image("e2e"), &k.signer.public_armored);
    let digest = h.push_signed(&h.build_image("faults"), "e2e/faults:v1", &k.signer);
    let first = h.signature_url_path("e2e/faults", &digest, 1);

    h.lookaside()
        .respond(&first, Some(CannedResponse::status(500)));
    assert_rejected(
        h.skopeo_verdict(&policy, &h.image("e2e/faults:v1")),
        "status 500",
    );
    h.lookaside().respond(&first, None);

    h.lookaside().respond_all(Some(CannedResponse::status(404)));
    assert_rejected(
        h.skopeo_verdict(&policy, &h.image("e2e/faults:v1")),
        NO_SIGNATURE,
    );
    h.lookaside().respond_all(None);

    h.clear_lookaside_requests();
    assert_accepted(h.skopeo_verdict(&policy, &h.image("e2e/faults:v1")));
    assert_eq!(h.lookaside_requests().len(), 2);
}

#[test]
fn image_builders_are_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let a = harness::oci::build_image(&dir.path().join("a"), "same text", "linux/amd64");
    let b = harness::oci::build_image(&dir.path().join("b"), "same text", "linux/amd64");
    let c = harness::oci::build_image(&dir.path().join("c"), "other text", "linux/amd64");
    let d = harness::oci::build_image(&dir.path().join("d"), "same text", "linux/arm/v7");
    assert_eq!(a.digest, b.digest);
    assert_eq!(a.manifest, b.manifest);
    assert_ne!(a.digest, c.digest);
    assert_ne!(a.digest, d.digest);
    assert_eq!(a.digest, harness::sha256_digest(&a.manifest));
    let index = harness::oci::build_index(
        &dir.path().join("i"),
        "multi",
        &["linux/amd64", "linux/arm64"],
    );
    assert_eq!(index.instances.len(), 2);
    assert_ne!(index.instances[0].digest, index.instances[1].digest);
    assert_eq!(index.digest, harness::sha256_digest(&index.manifest));
    let again = harness::oci::build_index(
        &dir.path().join("j"),
        "multi",
        &["linux/amd64", "linux/arm64"],
    );
    assert_eq!(index.digest, again.digest);
}

#[test]
fn keys_are_distinct_and_exported() {
    let k = keys();
    let mut fingerprints: Vec<&str> = k.all().iter().map(|key| key.fingerprint.as_str()).collect();
    for fpr in &fingerprints {
        assert_eq!(fpr.len(), 40);
        assert!(
            fpr.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())
        );
    }
    fingerprints.sort();
    fingerprints.dedup();
    assert_eq!(fingerprints.len(), 5);
    assert_ne!(k.subkey.signing_fingerprint, k.subkey.fingerprint);
    assert_eq!(k.signer.signing_fingerprint, k.signer.fingerprint);
    for key in k.all() {
        let armored = std::fs::read_to_string(&key.public_armored).unwrap();
        assert!(
            armored.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"),
            "{}",
            key.name
        );
        assert!(!std::fs::read(&key.public_binary).unwrap().is_empty());
        assert!(!std::fs::read(&key.secret).unwrap().is_empty());
    }
    assert_ne!(
        std::fs::read(&k.revoked.public_binary).unwrap(),
        std::fs::read(&k.revoked.public_unrevoked).unwrap()
    );
    assert_eq!(
        std::fs::read(&k.signer.public_binary).unwrap(),
        std::fs::read(&k.signer.public_unrevoked).unwrap()
    );
}

#[test]
fn skopeo_messages_are_unescaped() {
    let stderr = "time=\"2026-01-01T00:00:00Z\" level=warning msg=\"ignored\"\n\
                  time=\"2026-01-01T00:00:00Z\" level=fatal msg=\"Source image rejected: Invalid GPG signature: gpgme.Signature{Fingerprint:\\\"AB\\\"}\"\n";
    assert_eq!(
        harness::skopeo_message(stderr),
        "Source image rejected: Invalid GPG signature: gpgme.Signature{Fingerprint:\"AB\"}"
    );
    assert_eq!(harness::skopeo_message("  plain error \n"), "plain error");
}
