//! Self-managed webhook certificates (DESIGN decision 11): a CA and a
//! serving certificate for `SERVICE.NAMESPACE.svc` (and
//! `.svc.cluster.local`), kept in a Secret of type `kubernetes.io/tls`
//! (`tls.crt`, `tls.key`, plus `ca.crt` and `ca.key`), written to the
//! directory the HTTPS server reloads from, and the CA patched into the
//! `caBundle` of every webhook of imagegate's Validating- and
//! MutatingWebhookConfiguration.
//!
//! `ca.crt` is a bundle: the current CA (the one `ca.key` belongs to)
//! first, then any previous CA that has not expired, so that during a CA
//! rotation the API server keeps trusting replicas still serving a
//! certificate from the old one.
//!
//! Only the leader creates and rotates ([`CertManager::reconcile`]);
//! every replica copies the Secret to its files ([`CertManager::sync_files`]).
//! Writes are guarded by resourceVersion: a replica that loses a race (409)
//! re-reads and judges what the winner wrote.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource};
use rcgen::{KeyPair, PublicKeyData};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;

use super::ControllerError;
use crate::certs::{PemPair, generate_ca, issue_serving_cert};

/// Secret data keys.
pub const KEY_TLS_CRT: &str = "tls.crt";
pub const KEY_TLS_KEY: &str = "tls.key";
pub const KEY_CA_CRT: &str = "ca.crt";
pub const KEY_CA_KEY: &str = "ca.key";
/// The Secret type.
pub const SECRET_TYPE_TLS: &str = "kubernetes.io/tls";

/// How many times a write that lost a race is retried after re-reading.
const MAX_ATTEMPTS: usize = 5;

/// What the certificate manager manages.
#[derive(Clone, Debug)]
pub struct CertConfig {
    /// The Secret (in imagegate's namespace) holding CA and serving cert.
    pub secret_name: String,
    /// The Service the API server calls the webhook through.
    pub service_name: String,
    /// Where `tls.crt`, `tls.key` and `ca.crt` are written for the server.
    pub dir: PathBuf,
    pub ca_validity: Duration,
    pub cert_validity: Duration,
    /// Re-issue a certificate that expires within this.
    pub renew_before: Duration,
    /// ValidatingWebhookConfiguration whose caBundle is kept current.
    pub validating_webhook: Option<String>,
    /// MutatingWebhookConfiguration whose caBundle is kept current.
    pub mutating_webhook: Option<String>,
    /// How often the leader checks the Secret and the configurations.
    pub check_interval: Duration,
    /// How often every replica copies the Secret to its files.
    pub sync_interval: Duration,
}

impl CertConfig {
    /// Defaults: CA for 10 years, serving certificate for 1 year, renewed
    /// 30 days before expiry, checked hourly, files synced every 30 s.
    pub fn new(secret_name: &str, service_name: &str, dir: impl Into<PathBuf>) -> CertConfig {
        CertConfig {
            secret_name: secret_name.into(),
            service_name: service_name.into(),
            dir: dir.into(),
            ca_validity: Duration::from_secs(3650 * 86400),
            cert_validity: Duration::from_secs(365 * 86400),
            renew_before: Duration::from_secs(30 * 86400),
            validating_webhook: None,
            mutating_webhook: None,
            check_interval: Duration::from_secs(3600),
            sync_interval: Duration::from_secs(30),
        }
    }
}

/// The four PEM texts kept in the Secret.
#[derive(Clone, PartialEq, Eq)]
pub struct CertMaterial {
    /// The current CA first, then still-valid previous CAs.
    pub ca_bundle: String,
    pub ca_key: String,
    pub tls_crt: String,
    pub tls_key: String,
}

impl std::fmt::Debug for CertMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertMaterial")
            .field("ca_bundle", &self.ca_bundle)
            .field("tls_crt", &self.tls_crt)
            .finish_non_exhaustive()
    }
}

impl CertMaterial {
    /// Reads the four keys of a Secret; `None` if any is missing or not UTF-8.
    pub fn from_secret(secret: &Secret) -> Option<CertMaterial> {
        let data = secret.data.as_ref()?;
        let get = |k: &str| {
            data.get(k)
                .and_then(|b| String::from_utf8(b.0.clone()).ok())
                .filter(|s| !s.is_empty())
        };
        Some(CertMaterial {
            ca_bundle: get(KEY_CA_CRT)?,
            ca_key: get(KEY_CA_KEY)?,
            tls_crt: get(KEY_TLS_CRT)?,
            tls_key: get(KEY_TLS_KEY)?,
        })
    }

    fn to_secret_data(&self) -> std::collections::BTreeMap<String, ByteString> {
        [
            (KEY_CA_CRT, &self.ca_bundle),
            (KEY_CA_KEY, &self.ca_key),
            (KEY_TLS_CRT, &self.tls_crt),
            (KEY_TLS_KEY, &self.tls_key),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
        .collect()
    }
}

/// A certificate in a PEM bundle, with what the checks need.
struct CertInfo {
    pem: String,
    der: Vec<u8>,
    not_after: i64,
}

/// Splits a PEM text into its certificates; an error if there is none or
/// one does not parse.
fn parse_bundle(text: &str) -> Result<Vec<CertInfo>, String> {
    let mut out = Vec::new();
    for pem in Pem::iter_from_buffer(text.as_bytes()) {
        let pem = pem.map_err(|e| format!("invalid PEM: {e}"))?;
        if pem.label != "CERTIFICATE" {
            continue;
        }
        let (_, cert) = x509_parser::parse_x509_certificate(&pem.contents)
            .map_err(|e| format!("invalid certificate: {e}"))?;
        let not_after = cert.validity().not_after.timestamp();
        out.push(CertInfo {
            pem: to_pem(&pem.contents),
            der: pem.contents.clone(),
            not_after,
        });
    }
    if out.is_empty() {
        return Err("no certificate".into());
    }
    Ok(out)
}

fn to_pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        s.push('\n');
    }
    s.push_str("-----END CERTIFICATE-----\n");
    s
}

fn cert(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, c)| c)
        .map_err(|e| format!("invalid certificate: {e}"))
}

fn key_matches(cert: &X509Certificate<'_>, key_pem: &str) -> Result<(), String> {
    let key = KeyPair::from_pem(key_pem).map_err(|e| format!("invalid private key: {e}"))?;
    if key.subject_public_key_info() != cert.public_key().raw {
        return Err("the private key does not belong to the certificate".into());
    }
    Ok(())
}

fn dns_names(cert: &X509Certificate<'_>) -> Vec<String> {
    match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// What must happen to the Secret's material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Assessment {
    /// Good as it is.
    Valid,
    /// Good, but `ca.crt` still lists expired CAs.
    PruneBundle,
    /// The serving certificate must be re-issued by the current CA.
    ReissueCert(String),
    /// A new CA (and serving certificate) is needed.
    NewCa(String),
}

/// Judges `material` at `now` (Unix seconds).
pub fn assess(
    material: &CertMaterial,
    names: &[String],
    renew_before: Duration,
    now: i64,
) -> Assessment {
    let renew = renew_before.as_secs() as i64;
    let bundle = match parse_bundle(&material.ca_bundle) {
        Ok(b) => b,
        Err(e) => return Assessment::NewCa(format!("{KEY_CA_CRT}: {e}")),
    };
    let ca_info = &bundle[0];
    let ca = match cert(&ca_info.der) {
        Ok(c) => c,
        Err(e) => return Assessment::NewCa(format!("{KEY_CA_CRT}: {e}")),
    };
    if let Err(e) = key_matches(&ca, &material.ca_key) {
        return Assessment::NewCa(format!("{KEY_CA_KEY}: {e}"));
    }
    if ca_info.not_after - now <= renew {
        return Assessment::NewCa(format!(
            "the CA expires at {}",
            format_unix(ca_info.not_after)
        ));
    }
    let leaf_info = match parse_bundle(&material.tls_crt) {
        Ok(mut b) => b.remove(0),
        Err(e) => return Assessment::ReissueCert(format!("{KEY_TLS_CRT}: {e}")),
    };
    let leaf = match cert(&leaf_info.der) {
        Ok(c) => c,
        Err(e) => return Assessment::ReissueCert(format!("{KEY_TLS_CRT}: {e}")),
    };
    if let Err(e) = key_matches(&leaf, &material.tls_key) {
        return Assessment::ReissueCert(format!("{KEY_TLS_KEY}: {e}"));
    }
    if leaf.verify_signature(Some(ca.public_key())).is_err() {
        return Assessment::ReissueCert(
            "the serving certificate is not issued by the current CA".into(),
        );
    }
    let present = dns_names(&leaf);
    if let Some(missing) = names.iter().find(|n| !present.contains(n)) {
        return Assessment::ReissueCert(format!("the serving certificate does not name {missing}"));
    }
    if leaf_info.not_after - now <= renew {
        return Assessment::ReissueCert(format!(
            "the serving certificate expires at {}",
            format_unix(leaf_info.not_after)
        ));
    }
    if bundle.iter().any(|c| c.not_after <= now) {
        return Assessment::PruneBundle;
    }
    Assessment::Valid
}

fn format_unix(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn certificate_error(e: crate::Error) -> ControllerError {
    ControllerError::Certificate(e.to_string())
}

fn time_duration(d: Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

/// What [`CertManager::reconcile`] did to the Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretAction {
    /// The Secret was valid and left alone.
    Unchanged,
    /// There was no Secret: a CA and a certificate were generated.
    Created,
    /// The Secret was updated, for this reason.
    Updated(String),
}

/// What a webhook configuration's caBundle needed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BundleAction {
    Unchanged,
    Patched,
    /// The configuration does not exist (yet): nothing to patch.
    NotFound,
}

/// The outcome of one reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertReport {
    pub secret: SecretAction,
    /// Writes that lost a race and were re-read.
    pub conflicts: usize,
    pub files_written: bool,
    pub validating: Option<BundleAction>,
    pub mutating: Option<BundleAction>,
}

/// Keeps the certificates of one webhook Service.
#[derive(Clone)]
pub struct CertManager {
    client: Client,
    namespace: String,
    config: CertConfig,
}

impl CertManager {
    pub fn new(client: Client, namespace: &str, config: CertConfig) -> CertManager {
        CertManager {
            client,
            namespace: namespace.to_string(),
            config,
        }
    }

    pub fn config(&self) -> &CertConfig {
        &self.config
    }

    /// The names the serving certificate must carry.
    pub fn dns_names(&self) -> Vec<String> {
        let base = format!("{}.{}.svc", self.config.service_name, self.namespace);
        vec![base.clone(), format!("{base}.cluster.local")]
    }

    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// New material for `assessment`, reusing the CA when it is still good.
    fn issue(
        &self,
        previous: Option<&CertMaterial>,
        assessment: &Assessment,
    ) -> Result<CertMaterial, ControllerError> {
        let now = now_unix();
        let names = self.dns_names();
        let still_valid = |m: &CertMaterial| -> Vec<CertInfo> {
            parse_bundle(&m.ca_bundle)
                .unwrap_or_default()
                .into_iter()
                .filter(|c| c.not_after > now)
                .collect()
        };
        let (ca, ca_not_after, bundle) = match (previous, assessment) {
            (
                Some(prev),
                Assessment::ReissueCert(_) | Assessment::PruneBundle | Assessment::Valid,
            ) => {
                let certs = still_valid(prev);
                let current = certs
                    .first()
                    .ok_or_else(|| ControllerError::Certificate("the CA has expired".into()))?;
                let ca = PemPair {
                    cert_pem: current.pem.clone(),
                    key_pem: prev.ca_key.clone(),
                };
                let bundle: String = certs.iter().map(|c| c.pem.as_str()).collect();
                (ca, current.not_after, bundle)
            }
            _ => {
                let ca = generate_ca(
                    &format!(
                        "imagegate CA ({}.{})",
                        self.config.service_name, self.namespace
                    ),
                    time_duration(self.config.ca_validity),
                )
                .map_err(certificate_error)?;
                let info = parse_bundle(&ca.cert_pem).map_err(ControllerError::Certificate)?;
                let mut bundle = info[0].pem.clone();
                // Previous CAs stay trusted until they expire.
                if let Some(prev) = previous {
                    for c in still_valid(prev) {
                        if c.der != info[0].der {
                            bundle.push_str(&c.pem);
                        }
                    }
                }
                (ca, info[0].not_after, bundle)
            }
        };
        if let (Some(prev), Assessment::PruneBundle) = (previous, assessment) {
            return Ok(CertMaterial {
                ca_bundle: bundle,
                ..prev.clone()
            });
        }
        // A serving certificate never outlives its CA.
        let ca_left = Duration::from_secs((ca_not_after - now).max(0) as u64);
        let validity = self.config.cert_validity.min(ca_left);
        let leaf =
            issue_serving_cert(&ca, &names, time_duration(validity)).map_err(certificate_error)?;
        Ok(CertMaterial {
            ca_bundle: bundle,
            ca_key: ca.key_pem,
            tls_crt: leaf.cert_pem,
            tls_key: leaf.key_pem,
        })
    }

    fn secret_object(&self, material: &CertMaterial, resource_version: Option<String>) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(self.config.secret_name.clone()),
                namespace: Some(self.namespace.clone()),
                resource_version,
                labels: Some(
                    [(
                        "app.kubernetes.io/managed-by".to_string(),
                        "imagegate".to_string(),
                    )]
                    .into(),
                ),
                ..Default::default()
            },
            type_: Some(SECRET_TYPE_TLS.into()),
            data: Some(material.to_secret_data()),
            ..Default::default()
        }
    }

    /// Makes the Secret hold valid material (creating or rotating it),
    /// writes the files, and patches the caBundles. The leader's job.
    pub async fn reconcile(&self) -> Result<CertReport, ControllerError> {
        let api = self.secrets();
        let name = &self.config.secret_name;
        let mut conflicts = 0;
        let mut outcome = None;
        for _ in 0..MAX_ATTEMPTS {
            match api.get_opt(name).await? {
                None => {
                    let material = self.issue(None, &Assessment::NewCa("no Secret".into()))?;
                    match api
                        .create(&PostParams::default(), &self.secret_object(&material, None))
                        .await
                    {
                        Ok(_) => {
                            tracing::info!(secret = %name, "created the webhook CA and serving certificate");
                            outcome = Some((material, SecretAction::Created));
                            break;
                        }
                        Err(kube::Error::Api(s)) if s.code == 409 => {
                            conflicts += 1;
                            continue;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                Some(secret) => {
                    let existing = CertMaterial::from_secret(&secret);
                    let assessment = match &existing {
                        Some(m) => {
                            assess(m, &self.dns_names(), self.config.renew_before, now_unix())
                        }
                        None => Assessment::NewCa("the Secret lacks a certificate or key".into()),
                    };
                    if assessment == Assessment::Valid {
                        outcome = existing.map(|m| (m, SecretAction::Unchanged));
                        break;
                    }
                    let reason = match &assessment {
                        Assessment::PruneBundle => {
                            "an expired CA was removed from the bundle".to_string()
                        }
                        Assessment::ReissueCert(r) | Assessment::NewCa(r) => r.clone(),
                        Assessment::Valid => unreachable!("handled above"),
                    };
                    let material = self.issue(existing.as_ref(), &assessment)?;
                    // A Secret's type is immutable: one the chart created
                    // empty is `Opaque` (a `kubernetes.io/tls` Secret must
                    // hold a key pair from the start) and stays so; the
                    // keys are the same either way.
                    let mut updated = secret.clone();
                    let mut data = updated.data.take().unwrap_or_default();
                    data.extend(material.to_secret_data());
                    updated.data = Some(data);
                    match api.replace(name, &PostParams::default(), &updated).await {
                        Ok(_) => {
                            tracing::info!(secret = %name, %reason, "rotated the webhook certificate");
                            outcome = Some((material, SecretAction::Updated(reason)));
                            break;
                        }
                        Err(kube::Error::Api(s)) if s.code == 409 => {
                            conflicts += 1;
                            continue;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        let Some((material, secret)) = outcome else {
            return Err(ControllerError::Conflict {
                what: format!("Secret {}/{name}", self.namespace),
                attempts: MAX_ATTEMPTS,
            });
        };
        let files_written = write_files(&self.config.dir, &material)?;
        let bundle = material.ca_bundle.as_bytes();
        let validating = match &self.config.validating_webhook {
            Some(n) => Some(
                self.patch_ca_bundle::<ValidatingWebhookConfiguration>(n, bundle)
                    .await?,
            ),
            None => None,
        };
        let mutating = match &self.config.mutating_webhook {
            Some(n) => Some(
                self.patch_ca_bundle::<MutatingWebhookConfiguration>(n, bundle)
                    .await?,
            ),
            None => None,
        };
        Ok(CertReport {
            secret,
            conflicts,
            files_written,
            validating,
            mutating,
        })
    }

    /// Copies the Secret's certificate to the files if it is a usable
    /// pair; every replica runs this. `Ok(false)` when nothing changed or
    /// there is no usable Secret yet.
    pub async fn sync_files(&self) -> Result<bool, ControllerError> {
        let Some(secret) = self.secrets().get_opt(&self.config.secret_name).await? else {
            return Ok(false);
        };
        let Some(material) = CertMaterial::from_secret(&secret) else {
            return Ok(false);
        };
        let usable = parse_bundle(&material.tls_crt)
            .and_then(|b| cert(&b[0].der).and_then(|c| key_matches(&c, &material.tls_key)));
        if let Err(e) = usable {
            tracing::warn!(secret = %self.config.secret_name, error = %e, "the certificate Secret is not usable yet");
            return Ok(false);
        }
        write_files(&self.config.dir, &material)
    }

    /// Sets `caBundle` of every webhook in configuration `name` to
    /// `bundle`, with a resourceVersion-guarded patch, retried on conflict.
    pub async fn patch_ca_bundle<K: WebhookConfiguration>(
        &self,
        name: &str,
        bundle: &[u8],
    ) -> Result<BundleAction, ControllerError> {
        let api: Api<K> = Api::all(self.client.clone());
        for _ in 0..MAX_ATTEMPTS {
            let Some(mut obj) = api.get_opt(name).await? else {
                tracing::warn!(configuration = %name, kind = %K::kind(&()), "webhook configuration not found; caBundle not set");
                return Ok(BundleAction::NotFound);
            };
            if !obj.set_ca_bundle(bundle) {
                return Ok(BundleAction::Unchanged);
            }
            // A merge patch (the `patch` verb, all the chart's RBAC grants)
            // of the webhooks, guarded by the resourceVersion just read: a
            // concurrent change answers 409 and is read again.
            let value = serde_json::to_value(&obj)
                .map_err(|e| ControllerError::Certificate(format!("serialising {name}: {e}")))?;
            let patch = serde_json::json!({
                "metadata": {"resourceVersion": obj.meta().resource_version},
                "webhooks": value.get("webhooks"),
            });
            match api
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    tracing::info!(configuration = %name, kind = %K::kind(&()), "patched caBundle");
                    return Ok(BundleAction::Patched);
                }
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ControllerError::Conflict {
            what: format!("{} {name}", K::kind(&())),
            attempts: MAX_ATTEMPTS,
        })
    }
}

/// The admission webhook configuration kinds whose caBundle is managed.
pub trait WebhookConfiguration:
    Resource<DynamicType = ()>
    + Clone
    + serde::Serialize
    + serde::de::DeserializeOwned
    + std::fmt::Debug
{
    /// Sets every webhook's caBundle; whether anything changed.
    fn set_ca_bundle(&mut self, bundle: &[u8]) -> bool;
}

fn set_bundle(slot: &mut Option<ByteString>, bundle: &[u8]) -> bool {
    if slot.as_ref().map(|b| b.0.as_slice()) == Some(bundle) {
        return false;
    }
    *slot = Some(ByteString(bundle.to_vec()));
    true
}

impl WebhookConfiguration for ValidatingWebhookConfiguration {
    fn set_ca_bundle(&mut self, bundle: &[u8]) -> bool {
        let mut changed = false;
        for w in self.webhooks.iter_mut().flatten() {
            changed |= set_bundle(&mut w.client_config.ca_bundle, bundle);
        }
        changed
    }
}

impl WebhookConfiguration for MutatingWebhookConfiguration {
    fn set_ca_bundle(&mut self, bundle: &[u8]) -> bool {
        let mut changed = false;
        for w in self.webhooks.iter_mut().flatten() {
            changed |= set_bundle(&mut w.client_config.ca_bundle, bundle);
        }
        changed
    }
}

/// Writes `tls.key`, `tls.crt` and `ca.crt` into `dir` when they differ
/// from what is there, each atomically (temporary file, then rename), the
/// key first so the server never pairs a new certificate with an old key
/// for long (it retries a pair that does not load). Whether anything changed.
pub fn write_files(dir: &Path, material: &CertMaterial) -> Result<bool, ControllerError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ControllerError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut changed = false;
    for (file, contents, private) in [
        (KEY_TLS_KEY, &material.tls_key, true),
        (KEY_TLS_CRT, &material.tls_crt, false),
        (KEY_CA_CRT, &material.ca_bundle, false),
    ] {
        let path = dir.join(file);
        if std::fs::read(&path).ok().as_deref() == Some(contents.as_bytes()) {
            continue;
        }
        let tmp = dir.join(format!(".{file}.tmp"));
        write_private(&tmp, contents.as_bytes(), private).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        changed = true;
    }
    Ok(changed)
}

fn write_private(path: &Path, contents: &[u8], private: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts.open(path)?;
    f.write_all(contents)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn days(n: i64) -> time::Duration {
        time::Duration::days(n)
    }

    fn names() -> Vec<String> {
        vec![
            "imagegate.system.svc".into(),
            "imagegate.system.svc.cluster.local".into(),
        ]
    }

    fn material(ca_days: i64, leaf_days: i64, leaf_names: &[String]) -> CertMaterial {
        let ca = generate_ca("test CA", days(ca_days)).unwrap();
        let leaf = issue_serving_cert(&ca, leaf_names, days(leaf_days)).unwrap();
        CertMaterial {
            ca_bundle: ca.cert_pem,
            ca_key: ca.key_pem,
            tls_crt: leaf.cert_pem,
            tls_key: leaf.key_pem,
        }
    }

    const MONTH: Duration = Duration::from_secs(30 * 86400);

    #[test]
    fn fresh_material_is_valid() {
        let m = material(3650, 365, &names());
        assert_eq!(assess(&m, &names(), MONTH, now_unix()), Assessment::Valid);
    }

    #[test]
    fn near_expiry_is_renewed() {
        let m = material(3650, 10, &names());
        assert!(
            matches!(assess(&m, &names(), MONTH, now_unix()), Assessment::ReissueCert(r) if r.contains("expires"))
        );
        let m = material(20, 10, &names());
        assert!(
            matches!(assess(&m, &names(), MONTH, now_unix()), Assessment::NewCa(r) if r.contains("CA expires"))
        );
    }

    #[test]
    fn wrong_names_keys_or_issuer_are_reissued() {
        let m = material(3650, 365, &["other.svc".to_string()]);
        assert!(
            matches!(assess(&m, &names(), MONTH, now_unix()), Assessment::ReissueCert(r) if r.contains("does not name"))
        );

        let mut m = material(3650, 365, &names());
        m.tls_key = material(3650, 365, &names()).tls_key;
        assert!(
            matches!(assess(&m, &names(), MONTH, now_unix()), Assessment::ReissueCert(r) if r.contains("does not belong"))
        );

        let mut m = material(3650, 365, &names());
        let other = material(3650, 365, &names());
        m.tls_crt = other.tls_crt;
        m.tls_key = other.tls_key;
        assert!(
            matches!(assess(&m, &names(), MONTH, now_unix()), Assessment::ReissueCert(r) if r.contains("not issued by"))
        );

        let mut m = material(3650, 365, &names());
        m.ca_key = other.ca_key;
        assert!(matches!(
            assess(&m, &names(), MONTH, now_unix()),
            Assessment::NewCa(_)
        ));

        let mut m = material(3650, 365, &names());
        m.ca_bundle = "garbage".into();
        assert!(matches!(
            assess(&m, &names(), MONTH, now_unix()),
            Assessment::NewCa(_)
        ));
    }

    #[test]
    fn expired_previous_ca_is_pruned() {
        let mut m = material(3650, 365, &names());
        let previous = material(3650, 365, &names());
        m.ca_bundle.push_str(&previous.ca_bundle);
        assert_eq!(assess(&m, &names(), MONTH, now_unix()), Assessment::Valid);
        let expired = generate_ca("expired CA", days(-1)).unwrap();
        m.ca_bundle.push_str(&expired.cert_pem);
        assert_eq!(
            assess(&m, &names(), MONTH, now_unix()),
            Assessment::PruneBundle
        );
    }

    #[test]
    fn pem_round_trip() {
        let m = material(3650, 365, &names());
        let b = parse_bundle(&m.ca_bundle).unwrap();
        assert_eq!(parse_bundle(&b[0].pem).unwrap()[0].der, b[0].der);
        assert!(parse_bundle("").is_err());
    }

    #[test]
    fn files_are_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let m = material(3650, 365, &names());
        assert!(write_files(dir.path(), &m).unwrap());
        assert!(!write_files(dir.path(), &m).unwrap());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("tls.crt")).unwrap(),
            m.tls_crt
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("tls.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
