//! The subcommands' bodies: each reads its inputs, calls the library, and
//! prints the outcome.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::output::{OutputFormat, render_json, render_text};
use super::{
    CertArgs, EXIT_ACCEPTED, EXIT_REJECTED, LintArgs, RegistryFlags, SignArgs, StandaloneSignArgs,
    StandaloneVerifyArgs, VerifyArgs,
};
use crate::Error;
use crate::engine::{Engine, EngineConfig, Mode, PolicyDocument, VerifyContext};
use crate::manifest::list::Platform;
use crate::policy::{FilesystemKeyResolver, ParseOptions, Policy};
use crate::reference::{Digest, ImageReference, Named};
use crate::registry::{Anonymous, AuthFile, CredentialSource, RegistryClient, RegistryOptions};
use crate::signature::mechanism::{Keyring, SigningKey};
use crate::signature::payload::UntrustedSignature;
use crate::signature::registries_d::RegistryConfiguration;
use crate::signature::registries_d::go_url::GoUrl;

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::Config(format!("open {}: {e}", path.display())))
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

/// c/image's `defaultPolicyPath`: the user's file if it exists, else the system one.
fn default_policy_path() -> Result<PathBuf, Error> {
    let user = home().map(|h| h.join(".config/containers/policy.json"));
    let system = PathBuf::from("/etc/containers/policy.json");
    match user {
        Some(u) if u.exists() => Ok(u),
        _ if system.exists() => Ok(system),
        u => Err(Error::Config(format!(
            "no policy.json file found at any of the following: {:?}, {:?}",
            u.map(|u| u.display().to_string()).unwrap_or_default(),
            system.display().to_string()
        ))),
    }
}

/// c/image's registries.d default: the user's directory if it exists, else the system one.
fn default_registries_d() -> PathBuf {
    match home().map(|h| h.join(".config/containers/registries.d")) {
        Some(u) if u.exists() => u,
        _ => PathBuf::from(crate::signature::registries_d::SYSTEM_REGISTRIES_D),
    }
}

/// c/image's built-in lookaside: a directory on this machine (root's, or the user's).
fn builtin_lookaside() -> String {
    let root = std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        || std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false);
    match home() {
        Some(h) if !root => format!("file://{}/.local/share/containers/sigstore", h.display()),
        _ => crate::signature::registries_d::BUILTIN_ROOT_LOOKASIDE.to_string(),
    }
}

fn registry_options(flags: &RegistryFlags) -> Result<RegistryOptions, Error> {
    let mut options = RegistryOptions {
        tls_verify: flags.tls_verify,
        ..RegistryOptions::default()
    };
    for cert in &flags.cert {
        options.extra_root_certificates.push(read(cert)?);
    }
    Ok(options)
}

fn credentials(flags: &RegistryFlags) -> Result<Arc<dyn CredentialSource>, Error> {
    match &flags.authfile {
        Some(path) => Ok(Arc::new(
            AuthFile::load(path).map_err(|e| Error::Config(e.to_string()))?,
        )),
        None => Ok(Arc::new(Anonymous)),
    }
}

fn parse_platforms(args: &[String]) -> Result<Vec<Platform>, Error> {
    if args.is_empty() {
        return Ok(vec![Platform::current()]);
    }
    args.iter()
        .map(|p| Platform::parse(p).map_err(|e| Error::Config(format!("--platform {p}: {e}"))))
        .collect()
}

pub async fn verify(a: VerifyArgs) -> Result<u8, Error> {
    let policy_path = match &a.policy {
        Some(p) => p.clone(),
        None => default_policy_path()?,
    };
    let policy = Policy::parse(&read(&policy_path)?, ParseOptions::POLICY_FILE).map_err(|e| {
        Error::Config(format!(
            "invalid policy in {:?}: {}",
            policy_path.display().to_string(),
            e.with_path()
        ))
    })?;
    let registries_d_dir = a.registries_d.clone().unwrap_or_else(default_registries_d);
    let registries_d = RegistryConfiguration::load_dir(&registries_d_dir)
        .map_err(|e| Error::Config(e.to_string()))?;
    let config = EngineConfig {
        registry: registry_options(&a.registry)?,
        platforms: parse_platforms(&a.platform)?,
        builtin_lookaside: builtin_lookaside(),
        ..EngineConfig::default()
    };
    let engine = Engine::new(config, None)?;
    let credentials = credentials(&a.registry)?;
    let document = Arc::new(PolicyDocument {
        name: policy_path.display().to_string(),
        generation: 0,
        mode: Mode::Enforce,
        policy: Ok(policy),
    });
    let keys = FilesystemKeyResolver::default();
    let ctx = VerifyContext {
        registries_d: &registries_d,
        keys: &keys,
        credentials: credentials.as_ref(),
        deadline: None,
    };
    let mut verdicts = Vec::with_capacity(a.images.len());
    for image in &a.images {
        verdicts.push(
            engine
                .verify_image(image, std::slice::from_ref(&document), &ctx)
                .await,
        );
    }
    match a.output {
        OutputFormat::Text => print!("{}", render_text(&verdicts)),
        OutputFormat::Json => println!("{}", render_json(&verdicts)),
    }
    Ok(if verdicts.iter().all(|v| v.allowed()) {
        EXIT_ACCEPTED
    } else {
        EXIT_REJECTED
    })
}

/// `VerifyDockerManifestSignature` (semantics §7.6): no policy; the key
/// file's primary fingerprints are trusted and the signed reference must
/// equal the expected one after normalisation.
pub fn standalone_verify(a: StandaloneVerifyArgs) -> Result<u8, Error> {
    let manifest = read(&a.manifest)?;
    let expected = Named::parse_normalized(&a.docker_reference).map_err(|e| {
        Error::Config(format!(
            "invalid docker reference {:?}: {e}",
            a.docker_reference
        ))
    })?;
    let keyring = Keyring::from_blobs(&[read(&a.public_key_file)?]);
    if keyring.is_empty() {
        return Err(Error::Config(format!(
            "No public keys imported from {}",
            a.public_key_file.display()
        )));
    }
    let signature = read(&a.signature)?;
    match standalone_check(
        &keyring,
        &manifest,
        &expected,
        &a.docker_reference,
        &signature,
    ) {
        Ok((fingerprint, digest)) => {
            println!("Signature verified using fingerprint {fingerprint}, digest {digest}");
            Ok(EXIT_ACCEPTED)
        }
        Err(why) => {
            eprintln!("Error verifying signature: {why}");
            Ok(EXIT_REJECTED)
        }
    }
}

fn standalone_check(
    keyring: &Keyring,
    manifest: &[u8],
    expected: &Named,
    expected_text: &str,
    signature: &[u8],
) -> Result<(String, Digest), String> {
    let verified = keyring.verify(signature).map_err(|e| e.to_string())?;
    let trusted = keyring.fingerprints();
    if !trusted.contains(&verified.primary_fingerprint) {
        return Err(format!(
            "Signature by {} does not match expected fingerprints [{}]",
            verified.primary_fingerprint,
            trusted.join(" ")
        ));
    }
    let payload = UntrustedSignature::parse(&verified.payload).map_err(|e| e.message)?;
    let digest = payload.docker_manifest_digest.clone();
    match crate::manifest::matches_digest(manifest, &digest) {
        Ok(true) => {}
        Ok(false) => {
            return Err(format!(
                "Signature for docker digest {:?} does not match",
                digest.to_string()
            ));
        }
        Err(e) => return Err(e.to_string()),
    }
    let signed = Named::parse_normalized(&payload.docker_reference).map_err(|_| {
        format!(
            "Invalid docker reference {:?} in signature",
            payload.docker_reference
        )
    })?;
    if signed.to_string() != expected.to_string() {
        return Err(format!(
            "Docker reference {:?} does not match {:?}",
            payload.docker_reference, expected_text
        ));
    }
    Ok((verified.primary_fingerprint, digest))
}

fn signing_key(path: &Path, passphrase_file: Option<&Path>) -> Result<SigningKey, Error> {
    let passphrase = passphrase_file
        .map(|p| {
            read(p).map(|b| {
                String::from_utf8_lossy(&b)
                    .trim_end_matches(['\n', '\r'])
                    .to_string()
            })
        })
        .transpose()?;
    SigningKey::from_bytes(&read(path)?, passphrase.as_deref())
        .map_err(|e| Error::Config(format!("{}: {e}", path.display())))
}

/// The payload imagegate signs: c/image's, with imagegate as the creator.
fn signature_payload(digest: Digest, identity: &Named) -> Vec<u8> {
    let mut sig = UntrustedSignature::new(digest, &identity.to_string());
    sig.creator = Some(concat!("imagegate ", env!("CARGO_PKG_VERSION")).to_string());
    sig.timestamp = Some(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0),
    );
    sig.to_json()
}

pub fn standalone_sign(a: StandaloneSignArgs) -> Result<u8, Error> {
    let manifest = read(&a.manifest)?;
    let identity = Named::parse_normalized(&a.docker_reference).map_err(|e| {
        Error::Config(format!(
            "invalid docker reference {:?}: {e}",
            a.docker_reference
        ))
    })?;
    let digest = crate::manifest::digest(&manifest).map_err(|e| Error::Config(e.to_string()))?;
    let key = signing_key(&a.secret_key_file, a.passphrase_file.as_deref())?;
    let blob = key
        .sign(&signature_payload(digest, &identity))
        .map_err(|e| Error::Config(e.to_string()))?;
    std::fs::write(&a.output, blob)
        .map_err(|e| Error::Config(format!("writing {}: {e}", a.output.display())))?;
    Ok(EXIT_ACCEPTED)
}

/// Signs an image in a registry like `podman push --sign-by` (and, for a
/// list, like `skopeo copy --all --sign-by`: every instance and the list),
/// writing `signature-N` files into a lookaside staging directory.
pub async fn sign(a: SignArgs) -> Result<u8, Error> {
    let image = ImageReference::parse(&a.image)?;
    let identity = match &a.identity {
        Some(i) => {
            let named = Named::parse_normalized(i)
                .map_err(|e| Error::Config(format!("invalid --identity {i:?}: {e}")))?;
            if named.is_name_only() {
                return Err(Error::Config(format!(
                    "--identity {i:?} must have a tag or digest"
                )));
            }
            named
        }
        None => image.docker_reference().clone(),
    };
    let key = signing_key(&a.key, a.passphrase_file.as_deref())?;
    let registry = RegistryClient::new(registry_options(&a.registry)?)
        .map_err(|e| Error::Config(e.to_string()))?;
    let credentials = credentials(&a.registry)?;
    let top = registry
        .resolve(image.docker_reference(), credentials.as_ref())
        .await
        .map_err(|e| Error::Config(e.to_string()))?;
    let mut to_sign = vec![top.digest.clone()];
    if top.is_list() {
        let list = top.list().map_err(|e| Error::Config(e.to_string()))?;
        to_sign = list
            .entries
            .iter()
            .map(|e| e.digest())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Config(e.to_string()))?;
        to_sign.push(top.digest.clone());
    }
    if let Some(out) = &a.output {
        if to_sign.len() != 1 {
            return Err(Error::Config(
                "-o writes one signature; this image is a list, use --lookaside-staging".into(),
            ));
        }
        let blob = key
            .sign(&signature_payload(top.digest.clone(), &identity))
            .map_err(|e| Error::Config(e.to_string()))?;
        std::fs::write(out, blob)
            .map_err(|e| Error::Config(format!("writing {}: {e}", out.display())))?;
        println!("{}: signed {} as {identity}", out.display(), top.digest);
        return Ok(EXIT_ACCEPTED);
    }
    let base = match &a.lookaside_staging {
        Some(dir) => {
            let mut base = GoUrl::from_file_path(&dir.display().to_string());
            let mut path = base.path().to_vec();
            path.push(b'/');
            path.extend_from_slice(image.docker_reference().path().as_bytes());
            base.set_path(path);
            base
        }
        None => {
            let dir = a.registries_d.clone().unwrap_or_else(default_registries_d);
            let config =
                RegistryConfiguration::load_dir(&dir).map_err(|e| Error::Config(e.to_string()))?;
            let builtin =
                GoUrl::parse(&builtin_lookaside()).map_err(|e| Error::Config(e.to_string()))?;
            config
                .lookaside_base_url(&image, true, &builtin)
                .map_err(|e| Error::Config(e.to_string()))?
        }
    };
    if base.scheme() != "file" {
        return Err(Error::Config(format!(
            "writing signatures to {} is not supported: the staging location must be a file:// URL or --lookaside-staging DIR",
            base.redacted()
        )));
    }
    for digest in to_sign {
        let blob = key
            .sign(&signature_payload(digest.clone(), &identity))
            .map_err(|e| Error::Config(e.to_string()))?;
        let path = write_next_signature(&base, &digest, &blob)?;
        println!("{}: signed {digest} as {identity}", path.display());
    }
    Ok(EXIT_ACCEPTED)
}

/// Writes `blob` as the first free `signature-N` for `digest` under `base`.
fn write_next_signature(base: &GoUrl, digest: &Digest, blob: &[u8]) -> Result<PathBuf, Error> {
    for index in 0..crate::signature::lookaside::MAX_LOOKASIDE_SIGNATURES {
        let url = crate::signature::registries_d::signature_url(base, digest, index);
        let path = PathBuf::from(String::from_utf8_lossy(url.path()).to_string());
        if path.exists() {
            continue;
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::Config(format!("creating {}: {e}", dir.display())))?;
        }
        std::fs::write(&path, blob)
            .map_err(|e| Error::Config(format!("writing {}: {e}", path.display())))?;
        return Ok(path);
    }
    Err(Error::Config(format!(
        "too many signatures already stored for {digest}"
    )))
}

pub fn lint(a: LintArgs) -> Result<u8, Error> {
    let bytes = read(&a.file)?;
    let options = ParseOptions {
        require_default: !a.allow_missing_default,
        allow_key_ref: a.allow_missing_default,
    };
    let policy = match Policy::parse(&bytes, options) {
        Ok(p) => p,
        Err(e) => {
            println!("{}: error: {}", a.file.display(), e.with_path());
            return Ok(EXIT_REJECTED);
        }
    };
    let warnings = crate::policy::lint(&policy);
    for w in &warnings {
        println!("{}: warning: {w}", a.file.display());
    }
    if warnings.is_empty() {
        println!("{}: ok", a.file.display());
    }
    // Warnings describe a valid document: linting succeeds.
    Ok(EXIT_ACCEPTED)
}

pub fn cert(a: CertArgs) -> Result<u8, Error> {
    let validity = time::Duration::try_from(a.validity)
        .map_err(|e| Error::Config(format!("--validity: {e}")))?;
    let ca = crate::certs::generate_ca("imagegate webhook CA", validity)?;
    let leaf = crate::certs::issue_serving_cert(&ca, &a.hosts, validity)?;
    std::fs::create_dir_all(&a.out_dir)
        .map_err(|e| Error::Config(format!("creating {}: {e}", a.out_dir.display())))?;
    for (name, contents) in [
        ("ca.crt", &ca.cert_pem),
        ("tls.crt", &leaf.cert_pem),
        ("tls.key", &leaf.key_pem),
    ] {
        let path = a.out_dir.join(name);
        std::fs::write(&path, contents)
            .map_err(|e| Error::Config(format!("writing {}: {e}", path.display())))?;
    }
    println!(
        "wrote ca.crt, tls.crt and tls.key to {}",
        a.out_dir.display()
    );
    Ok(EXIT_ACCEPTED)
}
