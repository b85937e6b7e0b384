//! [`RegistryClient`]: manifests fetched as c/image's `docker` transport
//! fetches them (`dockerClient.fetchManifest`, `UnparsedImage.Manifest`).
//!
//! The bytes are kept exactly as served, because every digest the policy
//! compares is the hash of those bytes (semantics §4.5): a registry may serve
//! different bytes for different `Accept` headers, so the header is c/image's
//! list, in c/image's order.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::{StatusCode, header};

use super::auth::{CredentialSource, Credentials};
use super::transport::{self, Transport, TransportConfig};
use super::{MAX_MANIFEST_BODY_SIZE, RegistryError, RegistryErrorKind};
use crate::manifest::ManifestError;
use crate::manifest::list::{self, ManifestList};
use crate::reference::{Digest, Named};
use crate::strictjson::{self, JsonValue};

/// c/image's `manifest.DefaultRequestedManifestMIMETypes`, in its order.
pub const ACCEPTED_MANIFEST_MEDIA_TYPES: [&str; 6] = [
    list::OCI_MANIFEST_MEDIA_TYPE,
    list::DOCKER_V2_SCHEMA2_MEDIA_TYPE,
    list::DOCKER_V2_SCHEMA1_SIGNED_MEDIA_TYPE,
    list::DOCKER_V2_SCHEMA1_MEDIA_TYPE,
    list::DOCKER_V2_LIST_MEDIA_TYPE,
    list::OCI_INDEX_MEDIA_TYPE,
];

/// How the client talks to registries.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// `false` behaves like `skopeo --tls-verify=false`: invalid
    /// certificates are accepted, and a registry that fails over HTTPS is
    /// tried over plain HTTP.
    pub tls_verify: bool,
    /// PEM bundles of extra CA certificates, trusted in addition to the
    /// system roots.
    pub extra_root_certificates: Vec<Vec<u8>>,
    /// Limit for establishing a connection.
    pub connect_timeout: Option<Duration>,
    /// Limit for a whole request, body included.
    pub request_timeout: Option<Duration>,
    pub user_agent: String,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            tls_verify: true,
            extra_root_certificates: Vec::new(),
            connect_timeout: Some(Duration::from_secs(10)),
            request_timeout: Some(Duration::from_secs(30)),
            user_agent: concat!("imagegate/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

/// A manifest as the registry served it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedManifest {
    /// The exact bytes of the response body.
    pub bytes: Bytes,
    /// The `Content-Type` without parameters (`""` if absent or malformed),
    /// which c/image uses to tell lists from single images.
    pub media_type: String,
    /// `manifest.Digest` of the bytes: their sha256, except for a signed
    /// schema 1 manifest, whose digest covers the JWS payload only.
    pub digest: Digest,
}

impl FetchedManifest {
    /// Whether c/image treats this manifest as a list (by its media type).
    pub fn is_list(&self) -> bool {
        list::is_list_media_type(&self.media_type)
    }

    /// The manifest parsed as a list (`manifest.ListFromBlob`).
    pub fn list(&self) -> Result<ManifestList, ManifestError> {
        ManifestList::parse(&self.bytes, &self.media_type)
    }
}

/// A registry client; cheap to clone (clones share connections and caches).
#[derive(Clone)]
pub struct RegistryClient {
    pub(super) transport: Arc<Transport>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient").finish_non_exhaustive()
    }
}

impl RegistryClient {
    /// A client with `options`. TLS uses the process-wide rustls provider
    /// (install ring's before the first client).
    pub fn new(options: RegistryOptions) -> Result<RegistryClient, RegistryError> {
        let transport = Transport::new(TransportConfig {
            tls_verify: options.tls_verify,
            extra_root_certificates: &options.extra_root_certificates,
            connect_timeout: options.connect_timeout,
            request_timeout: options.request_timeout,
            user_agent: &options.user_agent,
        })?;
        Ok(RegistryClient {
            transport: Arc::new(transport),
        })
    }

    /// The manifest `image` names, as CRI-O would pull it: by digest if the
    /// reference has one (CRI-O drops the tag of `repo:tag@digest`; the bytes
    /// must then hash to it), else by tag (`latest` for a name-only reference).
    /// A list is returned as the list; see [`FetchedManifest::list`].
    pub async fn resolve(
        &self,
        image: &Named,
        credentials: &dyn CredentialSource,
    ) -> Result<FetchedManifest, RegistryError> {
        match image.digest() {
            Some(d) => {
                self.fetch(image, &d.to_string(), Some(d), credentials)
                    .await
            }
            None => {
                let tag = image.tag().unwrap_or("latest");
                self.fetch(image, tag, None, credentials).await
            }
        }
    }

    /// The manifest `digest` in `repo`'s repository (a list instance); the
    /// bytes must hash to `digest`. Any tag or digest in `repo` is ignored.
    pub async fn fetch_manifest(
        &self,
        repo: &Named,
        digest: &Digest,
        credentials: &dyn CredentialSource,
    ) -> Result<FetchedManifest, RegistryError> {
        self.fetch(repo, &digest.to_string(), Some(digest), credentials)
            .await
    }

    async fn fetch(
        &self,
        image: &Named,
        tag_or_digest: &str,
        expected: Option<&Digest>,
        source: &dyn CredentialSource,
    ) -> Result<FetchedManifest, RegistryError> {
        with_each_credential(source, image, |credentials| async move {
            self.fetch_with(image, tag_or_digest, expected, &credentials)
                .await
        })
        .await
    }

    async fn fetch_with(
        &self,
        image: &Named,
        tag_or_digest: &str,
        expected: Option<&Digest>,
        credentials: &Credentials,
    ) -> Result<FetchedManifest, RegistryError> {
        let path = format!("/v2/{}/manifests/{tag_or_digest}", image.path());
        let context = || format!("reading manifest {tag_or_digest} in {}", image.name());
        let res = self
            .transport
            .get(image, &path, &ACCEPTED_MANIFEST_MEDIA_TYPES, credentials)
            .await?;
        if res.status() != StatusCode::OK {
            return Err(transport::registry_http_response_error(res)
                .await
                .context(context()));
        }
        let media_type = transport::simplify_content_type(res.headers().get(header::CONTENT_TYPE));
        let bytes = transport::read_capped(res, MAX_MANIFEST_BODY_SIZE)
            .await
            .map_err(|e| e.context(context()))?;
        let digest = manifest_digest(&bytes).map_err(|e| {
            RegistryError::new(RegistryErrorKind::InvalidResponse, e.0).context(context())
        })?;
        if let Some(expected) = expected {
            // `manifest.MatchesDigest`: only the sha256 manifest digest can match.
            if &digest != expected {
                return Err(RegistryError::new(
                    RegistryErrorKind::DigestMismatch,
                    format!("Manifest does not match provided manifest digest {expected}"),
                ));
            }
        }
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }
}

/// Runs `request` with each of `source`'s credentials for `image` in turn
/// (anonymous if it has none), as the kubelet walks matching pull secrets
/// until a pull succeeds: a refusal another credential might not get (401,
/// 403, or 404, which some registries answer for a private repository)
/// moves on to the next; any other result, or the last refusal, is the
/// answer. Credentials are passed by value so the request's future borrows
/// nothing of the loop (a borrowed one defeats the `Send` proof the server
/// needs).
pub(super) async fn with_each_credential<T, F, Fut>(
    source: &dyn CredentialSource,
    image: &Named,
    request: F,
) -> Result<T, RegistryError>
where
    F: Fn(Credentials) -> Fut,
    Fut: Future<Output = Result<T, RegistryError>>,
{
    let mut candidates = source.lookup_all(image).map_err(|e| {
        RegistryError::new(
            RegistryErrorKind::Credentials,
            format!("getting username and password: {e}"),
        )
    })?;
    if candidates.is_empty() {
        candidates.push(Credentials::default());
    }
    let last = candidates.len() - 1;
    for (i, credentials) in candidates.into_iter().enumerate() {
        let result = request(credentials).await;
        let refused = matches!(
            result.as_ref().map_err(RegistryError::kind),
            Err(RegistryErrorKind::Unauthorized
                | RegistryErrorKind::Denied
                | RegistryErrorKind::NotFound)
        );
        if i == last || !refused {
            return result;
        }
        tracing::debug!(image = %image, "credential refused, trying the next");
    }
    unreachable!("the loop returns on the last candidate")
}

/// `manifest.Digest`. Only a document whose `schemaVersion` decodes as 1 can
/// be a signed schema 1 manifest, whose digest covers the JWS payload; that
/// case is left to [`crate::manifest::digest`]. Everything else is the
/// sha256 of the bytes.
fn manifest_digest(bytes: &[u8]) -> Result<Digest, ManifestError> {
    let schema1 = match strictjson::parse(bytes) {
        Ok(JsonValue::Object(entries)) => entries
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case("schemaVersion"))
            .is_some_and(|(_, v)| matches!(v, JsonValue::Number(n) if n.as_i64() == Some(1))),
        _ => false,
    };
    if schema1 {
        crate::manifest::digest(bytes)
    } else {
        Ok(Digest::sha256_of(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testserver::{Auth, FakeRegistry};
    use super::*;
    use crate::registry::{Anonymous, AuthFile};

    fn named(s: &str) -> Named {
        Named::parse_normalized(s).unwrap()
    }

    fn client() -> RegistryClient {
        let _ = rustls::crypto::ring::default_provider().install_default();
        RegistryClient::new(RegistryOptions {
            tls_verify: false,
            ..RegistryOptions::default()
        })
        .unwrap()
    }

    const INDEX: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
    const IMAGE: &str = "{\n  \"schemaVersion\": 2,\n  \"mediaType\": \"application/vnd.oci.image.manifest.v1+json\"\n}\n";

    #[tokio::test]
    async fn exact_bytes_media_type_and_digest() {
        let reg = FakeRegistry::start(Auth::None).await;
        reg.put(
            "e2e/app",
            "v1",
            list::OCI_MANIFEST_MEDIA_TYPE,
            IMAGE.as_bytes(),
        );
        reg.put(
            "e2e/app",
            "multi",
            "application/vnd.oci.image.index.v1+json; charset=utf-8",
            INDEX.as_bytes(),
        );
        let c = client();
        let m = c
            .resolve(&named(&format!("{}/e2e/app:v1", reg.host())), &Anonymous)
            .await
            .unwrap();
        assert_eq!(&m.bytes[..], IMAGE.as_bytes());
        assert_eq!(m.media_type, list::OCI_MANIFEST_MEDIA_TYPE);
        assert_eq!(m.digest, Digest::sha256_of(IMAGE.as_bytes()));
        assert!(!m.is_list());
        // The Accept header is c/image's list, one value per line, in order.
        assert_eq!(reg.last_accept(), ACCEPTED_MANIFEST_MEDIA_TYPES.to_vec());

        let l = c
            .resolve(&named(&format!("{}/e2e/app:multi", reg.host())), &Anonymous)
            .await
            .unwrap();
        assert_eq!(l.media_type, list::OCI_INDEX_MEDIA_TYPE);
        assert!(l.is_list());
        assert!(l.list().unwrap().entries.is_empty());

        // By digest, via resolve and via fetch_manifest.
        let by_digest = named(&format!("{}/e2e/app@{}", reg.host(), m.digest));
        assert_eq!(c.resolve(&by_digest, &Anonymous).await.unwrap(), m);
        let repo = named(&format!("{}/e2e/app:ignored", reg.host()));
        assert_eq!(
            c.fetch_manifest(&repo, &m.digest, &Anonymous)
                .await
                .unwrap(),
            m
        );
        // repo:tag@digest is fetched by digest, as CRI-O does.
        let both = named(&format!("{}/e2e/app", reg.host())).with_tag_and_digest(m.digest.clone());
        assert_eq!(c.resolve(&both, &Anonymous).await.unwrap(), m);
        // One ping for all of it.
        assert_eq!(reg.pings(), 1);
    }

    #[tokio::test]
    async fn name_only_reference_means_latest() {
        let reg = FakeRegistry::start(Auth::None).await;
        reg.put(
            "e2e/app",
            "latest",
            list::OCI_MANIFEST_MEDIA_TYPE,
            IMAGE.as_bytes(),
        );
        let m = client()
            .resolve(&named(&format!("{}/e2e/app", reg.host())), &Anonymous)
            .await
            .unwrap();
        assert_eq!(&m.bytes[..], IMAGE.as_bytes());
    }

    #[tokio::test]
    async fn digest_mismatch_and_sha512() {
        let reg = FakeRegistry::start(Auth::None).await;
        let wrong = Digest::sha256_of(b"something else");
        reg.put(
            "e2e/app",
            &wrong.to_string(),
            list::OCI_MANIFEST_MEDIA_TYPE,
            IMAGE.as_bytes(),
        );
        let c = client();
        let e = c
            .resolve(
                &named(&format!("{}/e2e/app@{wrong}", reg.host())),
                &Anonymous,
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind(), RegistryErrorKind::DigestMismatch);
        assert_eq!(
            e.message(),
            format!("Manifest does not match provided manifest digest {wrong}")
        );
        // A sha512 reference can never match (c/image hashes with sha256 only).
        let sha512 = Digest::parse(&format!("sha512:{}", "ab".repeat(64))).unwrap();
        reg.put(
            "e2e/app",
            &sha512.to_string(),
            list::OCI_MANIFEST_MEDIA_TYPE,
            IMAGE.as_bytes(),
        );
        let repo = named(&format!("{}/e2e/app", reg.host()));
        let e = c
            .fetch_manifest(&repo, &sha512, &Anonymous)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), RegistryErrorKind::DigestMismatch);
    }

    #[tokio::test]
    async fn registry_errors_are_clear() {
        let reg = FakeRegistry::start(Auth::None).await;
        reg.put(
            "e2e/big",
            "v1",
            list::OCI_MANIFEST_MEDIA_TYPE,
            &vec![b' '; MAX_MANIFEST_BODY_SIZE + 1],
        );
        reg.put(
            "e2e/fits",
            "v1",
            list::OCI_MANIFEST_MEDIA_TYPE,
            &vec![b' '; MAX_MANIFEST_BODY_SIZE],
        );
        let c = client();
        let e = c
            .resolve(
                &named(&format!("{}/e2e/app:missing", reg.host())),
                &Anonymous,
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind(), RegistryErrorKind::NotFound);
        assert_eq!(
            e.message(),
            format!(
                "reading manifest missing in {}/e2e/app: manifest unknown: manifest unknown",
                reg.host()
            )
        );
        let e = c
            .resolve(&named(&format!("{}/e2e/big:v1", reg.host())), &Anonymous)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), RegistryErrorKind::TooLarge);
        assert_eq!(
            e.message(),
            format!(
                "reading manifest v1 in {}/e2e/big: exceeded maximum allowed size of 4194304 bytes",
                reg.host()
            )
        );
        assert!(
            c.resolve(&named(&format!("{}/e2e/fits:v1", reg.host())), &Anonymous)
                .await
                .is_ok()
        );
        // Nothing listening: a network error naming the registry.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = c
            .resolve(&named(&format!("127.0.0.1:{port}/a:b")), &Anonymous)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), RegistryErrorKind::Network);
        assert!(
            e.message().starts_with(&format!(
                "pinging container registry 127.0.0.1:{port}: Get \"http://127.0.0.1:{port}/v2/\": "
            )),
            "{e}"
        );
    }

    #[tokio::test]
    async fn timeouts_are_reported_as_such() {
        let reg = FakeRegistry::start(Auth::None).await;
        reg.put(
            "e2e/app",
            "v1",
            list::OCI_MANIFEST_MEDIA_TYPE,
            IMAGE.as_bytes(),
        );
        reg.stall_manifests(Duration::from_secs(30));
        let _ = rustls::crypto::ring::default_provider().install_default();
        let c = RegistryClient::new(RegistryOptions {
            tls_verify: false,
            request_timeout: Some(Duration::from_millis(300)),
            ..RegistryOptions::default()
        })
        .unwrap();
        let e = c
            .resolve(&named(&format!("{}/e2e/app:v1", reg.host())), &Anonymous)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), RegistryErrorKind::Timeout, "{e}");
        assert!(e.message().contains("timed out"), "{e}");
    }

    #[tokio::test]
    async fn basic_auth() {
        let reg = FakeRegistry::start(Auth::Basic {
            user: "u".into(),
            password: "p".into(),
        })
        .await;
        reg.put(
            "e2e/app",
            "v1",
            list::OCI_MANIFEST_MEDIA_TYPE,
            IMAGE.as_bytes(),
        );
        let c = client();
        let image = named(&format!("{}/e2e/app:v1", reg.host()));
        let e = c.resolve(&image, &Anonymous).await.unwrap_err();
        assert_eq!(e.kind(), RegistryErrorKind::Unauthorized);
        assert_eq!(
            e.message(),
            format!(
                "reading manifest v1 in {}/e2e/app: unauthorized: authentication required",
                reg.host()
            )
        );
        let good = Credentials::basic("u", "p");
        assert!(c.resolve(&image, &good).await.is_ok());
        // Credentials are per request: a wrong password after a right one fails.
        let e = c
            .resolve(&image, &Credentials::basic("u", "x"))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), RegistryErrorKind::Unauthorized);
        // From an auth file keyed by repository.
        let file = AuthFile::parse(
            format!(r#"{{"auths":{{"{}/e2e":{{"auth":"dTpw"}}}}}}"#, reg.host()).as_bytes(),
            "auth.json",
        )
        .unwrap();
        assert!(c.resolve(&image, &file).await.is_ok());
    }

    #[tokio::test]
    async fn bearer_tokens_per_credentials_and_cached() {
        let reg = FakeRegistry::start(Auth::Bearer {
            user: "u".into(),
            password: "p".into(),
            identity_token: "refresh-me".into(),
        })
        .await;
        reg.put(
            "e2e/app",
            "v1",
            list::OCI_MANIFEST_MEDIA_TYPE,
            IMAGE.as_bytes(),
        );
        let c = client();
        let image = named(&format!("{}/e2e/app:v1", reg.host()));
        c.resolve(&image, &Credentials::basic("u", "p"))
            .await
            .unwrap();
        c.resolve(&image, &Credentials::basic("u", "p"))
            .await
            .unwrap();
        assert_eq!(reg.token_requests(), 1, "token reused");
        assert_eq!(
            reg.last_token_query(),
            vec![
                ("account".to_string(), "u".to_string()),
                ("service".into(), "fake-registry".into()),
                ("scope".into(), "repository:e2e/app:pull".into()),
            ]
        );
        // Another caller's credentials never ride on the cached token.
        let e = c.resolve(&image, &Anonymous).await.unwrap_err();
        assert_eq!(e.kind(), RegistryErrorKind::Unauthorized);
        assert!(
            e.message()
                .starts_with("unable to retrieve auth token: invalid username/password: "),
            "{e}"
        );
        let e = c
            .resolve(&image, &Credentials::basic("u", "wrong"))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), RegistryErrorKind::Unauthorized);
        // An identity token goes through the OAuth2 refresh grant.
        let oauth = Credentials {
            username: "<token>".into(),
            password: String::new(),
            identity_token: "refresh-me".into(),
        };
        c.resolve(&image, &oauth).await.unwrap();
        assert_eq!(reg.oauth_requests(), 1);
    }

    #[tokio::test]
    async fn credential_lookup_errors() {
        let reg = FakeRegistry::start(Auth::None).await;
        let file = AuthFile::parse(
            format!(r#"{{"credHelpers":{{"{}":"secretservice"}}}}"#, reg.host()).as_bytes(),
            "config.json",
        )
        .unwrap();
        let e = client()
            .resolve(&named(&format!("{}/e2e/app:v1", reg.host())), &file)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), RegistryErrorKind::Credentials);
        assert!(
            e.message().starts_with("getting username and password: "),
            "{e}"
        );
    }

    #[test]
    fn digest_rules() {
        assert_eq!(
            manifest_digest(IMAGE.as_bytes()).unwrap(),
            Digest::sha256_of(IMAGE.as_bytes())
        );
        assert_eq!(
            manifest_digest(b"not json").unwrap(),
            Digest::sha256_of(b"not json")
        );
        assert_eq!(
            manifest_digest(br#"{"schemaVersion":"1"}"#).unwrap(),
            Digest::sha256_of(br#"{"schemaVersion":"1"}"#)
        );
    }
}
