//! Throw-away OpenPGP keys made with gpg, shared by every test.
//!
//! Generating keys costs about a second (RSA-3072), so they are made once and
//! cached under the target directory (`CARGO_TARGET_TMPDIR`): every later test
//! process, including each nextest process, only reads the cache. The cache
//! is published with an atomic rename, so concurrent first runs are safe.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::tools::{command, copy_tree, make_private, run_ok};

/// Bump when the set of keys or how they are made changes, so stale caches
/// are not reused.
const CACHE_NAME: &str = "imagegate-harness-keys-v1";

/// The faked system time gpg needs to sign with [`Keys::expired`]: one hour
/// after that key was created, while it was still valid.
pub const EXPIRED_KEY_SIGN_TIME: &str = "20200101T010000";

/// One test key: its identity and the files it is exported to.
#[derive(Debug, Clone)]
pub struct Key {
    /// Short name: `signer`, `wrong`, `expired`, `subkey`, `revoked`.
    pub name: String,
    /// The OpenPGP user ID, `Name <email>`.
    pub user_id: String,
    /// Uppercase hex V4 fingerprint of the primary key: what c/image reports
    /// and what `--sign-by` takes.
    pub fingerprint: String,
    /// Fingerprint of the key that actually makes signatures: the signing
    /// subkey for [`Keys::subkey`], the primary key for all others.
    pub signing_fingerprint: String,
    /// Public key, binary (`gpg --export`). For [`Keys::revoked`] it carries
    /// the key revocation.
    pub public_binary: PathBuf,
    /// Public key, ASCII-armoured (`gpg --armor --export`).
    pub public_armored: PathBuf,
    /// The same key as [`Key::public_binary`] before any revocation was
    /// applied (differs only for [`Keys::revoked`]).
    pub public_unrevoked: PathBuf,
    /// Secret key, binary, unprotected (`gpg --export-secret-keys`).
    pub secret: PathBuf,
    /// Faked system time gpg must run at to sign with this key (set for the
    /// expired key only); the harness applies it by itself.
    pub sign_time: Option<&'static str>,
}

/// The process-wide set of test keys.
#[derive(Debug)]
pub struct Keys {
    /// The normal trusted signer: RSA-3072 primary key that signs, no expiry.
    pub signer: Key,
    /// A second, unrelated key (ed25519), for "signed by the wrong key".
    pub wrong: Key,
    /// ed25519 key created 2020-01-01 with a one-day lifetime: expired now.
    /// Signatures made with it are dated 2020-01-01 01:00, before expiry.
    pub expired: Key,
    /// ed25519 certification-only primary key with an ed25519 signing
    /// subkey; signatures are made by the subkey.
    pub subkey: Key,
    /// ed25519 key whose exported public key includes a key revocation.
    /// The signing keyring holds it unrevoked, so it can still sign.
    pub revoked: Key,
    /// A GNUPGHOME holding every secret key (the revoked one unrevoked),
    /// copied into each harness; never used directly.
    pub(crate) gnupg_template: PathBuf,
    /// The cache directory holding all exported files.
    pub dir: PathBuf,
}

impl Keys {
    /// All keys, in a fixed order.
    pub fn all(&self) -> [&Key; 5] {
        [
            &self.signer,
            &self.wrong,
            &self.expired,
            &self.subkey,
            &self.revoked,
        ]
    }
}

/// How one key is made.
struct Spec {
    name: &'static str,
    user_id: &'static str,
    algo: &'static str,
    usage: &'static str,
    expire: &'static str,
    created_at: Option<&'static str>,
    signing_subkey: bool,
    revoke: bool,
    sign_time: Option<&'static str>,
}

const SPECS: &[Spec] = &[
    Spec {
        name: "signer",
        user_id: "imagegate test signer <signer@imagegate.test>",
        algo: "rsa3072",
        usage: "sign",
        expire: "never",
        created_at: None,
        signing_subkey: false,
        revoke: false,
        sign_time: None,
    },
    Spec {
        name: "wrong",
        user_id: "imagegate wrong key <wrong@imagegate.test>",
        algo: "ed25519",
        usage: "sign",
        expire: "never",
        created_at: None,
        signing_subkey: false,
        revoke: false,
        sign_time: None,
    },
    Spec {
        name: "expired",
        user_id: "imagegate expired key <expired@imagegate.test>",
        algo: "ed25519",
        usage: "sign",
        expire: "1d",
        created_at: Some("20200101T000000"),
        signing_subkey: false,
        revoke: false,
        sign_time: Some(EXPIRED_KEY_SIGN_TIME),
    },
    Spec {
        name: "subkey",
        user_id: "imagegate subkey signer <subkey@imagegate.test>",
        algo: "ed25519",
        usage: "cert",
        expire: "never",
        created_at: None,
        signing_subkey: true,
        revoke: false,
        sign_time: None,
    },
    Spec {
        name: "revoked",
        user_id: "imagegate revoked key <revoked@imagegate.test>",
        algo: "ed25519",
        usage: "sign",
        expire: "never",
        created_at: None,
        signing_subkey: false,
        revoke: true,
        sign_time: None,
    },
];

/// The test keys, generated on first use (per machine and target dir) and
/// loaded once per process.
pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join(CACHE_NAME);
        if !cache.join("keys.tsv").is_file() {
            generate_into(&cache);
        }
        load(&cache)
    })
}

/// Runs gpg against `home` with the harness's batch options.
pub fn gpg(home: &Path) -> std::process::Command {
    let mut cmd = command("gpg");
    cmd.arg("--homedir")
        .arg(home)
        .args(["--batch", "--no-tty", "--quiet"]);
    cmd
}

/// Stops every gpg daemon (gpg-agent) started for `home`.
pub fn kill_agents(home: &Path) {
    let mut cmd = command("gpgconf");
    cmd.arg("--homedir").arg(home).args(["--kill", "all"]);
    // Best effort: nothing to kill is fine.
    let _ = super::tools::run(&mut cmd, None);
}

fn generate_into(cache: &Path) {
    let parent = cache.parent().expect("cache has a parent");
    std::fs::create_dir_all(parent).expect("create CARGO_TARGET_TMPDIR");
    // Generate in a short /tmp path: gpg-agent's socket path must stay short.
    let work = tempfile::Builder::new()
        .prefix("ig-keygen")
        .tempdir()
        .expect("tempdir for key generation");
    let home = work.path().join("gnupg");
    std::fs::create_dir(&home).expect("mkdir gnupg");
    make_private(&home);
    let out = work.path().join("out");
    std::fs::create_dir(&out).expect("mkdir out");

    let mut table = String::new();
    for spec in SPECS {
        let mut cmd = gpg(&home);
        if let Some(t) = spec.created_at {
            cmd.arg("--faked-system-time").arg(t);
        }
        cmd.args(["--passphrase", "", "--quick-gen-key"]).args([
            spec.user_id,
            spec.algo,
            spec.usage,
            spec.expire,
        ]);
        run_ok(&mut cmd, None);
        let (fingerprint, _) = fingerprints(&home, spec.user_id);
        if spec.signing_subkey {
            run_ok(
                gpg(&home)
                    .args(["--passphrase", "", "--quick-add-key"])
                    .args([fingerprint.as_str(), "ed25519", "sign", "never"]),
                None,
            );
        }
        let (_, signing) = fingerprints(&home, spec.user_id);
        let signing = signing.unwrap_or_else(|| fingerprint.clone());

        let export = |args: &[&str]| run_ok(gpg(&home).args(args).arg(&fingerprint), None);
        let public = export(&["--export"]);
        assert!(
            !public.is_empty(),
            "gpg exported no public key for {}",
            spec.name
        );
        write(
            &out.join(format!("{}.unrevoked.pub.gpg", spec.name)),
            &public,
        );
        write(
            &out.join(format!("{}.sec.gpg", spec.name)),
            &export(&["--export-secret-keys"]),
        );
        let (binary, armored) = if spec.revoke {
            revoked_exports(&home, &fingerprint, &public)
        } else {
            (public, export(&["--armor", "--export"]))
        };
        write(&out.join(format!("{}.pub.gpg", spec.name)), &binary);
        write(&out.join(format!("{}.pub.asc", spec.name)), &armored);
        table.push_str(&format!("{}\t{}\t{}\n", spec.name, fingerprint, signing));
    }
    kill_agents(&home);
    copy_tree(&home, &out.join("gnupg")).expect("copy GNUPGHOME template");
    // keys.tsv is the "cache complete" marker; it goes in last.
    write(&out.join("keys.tsv"), table.as_bytes());

    // Publish: copy next to the cache, then rename into place atomically. A
    // concurrent process may win the race; its cache is equally good.
    let staging = parent.join(format!("{CACHE_NAME}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    copy_tree(&out, &staging).expect("copy key cache");
    if std::fs::rename(&staging, cache).is_err() {
        let _ = std::fs::remove_dir_all(&staging);
        assert!(
            cache.join("keys.tsv").is_file(),
            "test harness: could not publish the key cache at {}",
            cache.display()
        );
    }
}

/// The public key with its revocation applied, binary and armoured. The
/// revocation certificate is the one gpg wrote at key generation; it is
/// applied in a scratch keyring so the signing keyring keeps a usable key.
fn revoked_exports(home: &Path, fingerprint: &str, public: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let certificate = std::fs::read_to_string(
        home.join("openpgp-revocs.d")
            .join(format!("{fingerprint}.rev")),
    )
    .expect("gpg wrote a revocation certificate");
    // gpg prefixes the armour line with ':' so the file cannot be imported
    // by accident.
    let certificate = certificate.replace(
        ":-----BEGIN PGP PUBLIC KEY BLOCK-----",
        "-----BEGIN PGP PUBLIC KEY BLOCK-----",
    );
    let scratch = tempfile::Builder::new()
        .prefix("ig-revoke")
        .tempdir()
        .expect("tempdir");
    let scratch_home = scratch.path();
    make_private(scratch_home);
    run_ok(gpg(scratch_home).arg("--import"), Some(public));
    run_ok(
        gpg(scratch_home).arg("--import"),
        Some(certificate.as_bytes()),
    );
    let binary = run_ok(gpg(scratch_home).arg("--export").arg(fingerprint), None);
    let armored = run_ok(
        gpg(scratch_home).args(["--armor", "--export", fingerprint]),
        None,
    );
    kill_agents(scratch_home);
    (binary, armored)
}

/// The primary fingerprint of the key with `user_id`, and the fingerprint of
/// its signing subkey if it has one.
fn fingerprints(home: &Path, user_id: &str) -> (String, Option<String>) {
    let listing = run_ok(
        gpg(home)
            .args(["--with-colons", "--list-keys"])
            .arg(format!("={user_id}")),
        None,
    );
    let listing = String::from_utf8_lossy(&listing);
    // Which record the next `fpr` line belongs to.
    enum Pending {
        Primary,
        SigningSubkey,
        Other,
    }
    let mut primary = None;
    let mut subkey = None;
    let mut pending = Pending::Other;
    for line in listing.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        match fields[0] {
            "pub" => pending = Pending::Primary,
            // Field 12 lists the key's capabilities; `s` is signing.
            "sub" if fields.get(11).is_some_and(|caps| caps.contains('s')) => {
                pending = Pending::SigningSubkey
            }
            "sub" => pending = Pending::Other,
            "fpr" => {
                let fpr = fields.get(9).copied().unwrap_or_default().to_string();
                match std::mem::replace(&mut pending, Pending::Other) {
                    Pending::Primary if primary.is_none() => primary = Some(fpr),
                    Pending::SigningSubkey if subkey.is_none() => subkey = Some(fpr),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    let primary = primary.unwrap_or_else(|| panic!("gpg lists no key for {user_id}:\n{listing}"));
    (primary, subkey)
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn load(cache: &Path) -> Keys {
    let table = std::fs::read_to_string(cache.join("keys.tsv")).expect("read keys.tsv");
    let mut keys: Vec<Key> = Vec::new();
    for line in table.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), 3, "malformed keys.tsv line {line:?}");
        let spec = SPECS
            .iter()
            .find(|s| s.name == fields[0])
            .unwrap_or_else(|| panic!("unknown key {:?} in {}", fields[0], cache.display()));
        keys.push(Key {
            name: spec.name.to_string(),
            user_id: spec.user_id.to_string(),
            fingerprint: fields[1].to_string(),
            signing_fingerprint: fields[2].to_string(),
            public_binary: cache.join(format!("{}.pub.gpg", spec.name)),
            public_armored: cache.join(format!("{}.pub.asc", spec.name)),
            public_unrevoked: cache.join(format!("{}.unrevoked.pub.gpg", spec.name)),
            secret: cache.join(format!("{}.sec.gpg", spec.name)),
            sign_time: spec.sign_time,
        });
    }
    let mut take = |name: &str| {
        let at = keys
            .iter()
            .position(|k| k.name == name)
            .unwrap_or_else(|| panic!("key {name} missing from {}", cache.display()));
        keys.remove(at)
    };
    Keys {
        signer: take("signer"),
        wrong: take("wrong"),
        expired: take("expired"),
        subkey: take("subkey"),
        revoked: take("revoked"),
        gnupg_template: cache.join("gnupg"),
        dir: cache.to_path_buf(),
    }
}
