//! The OpenShift/atomic registry signature API extension (semantics §6.1).
//!
//! A registry whose `GET /v2/` answers with `X-Registry-Supports-Signatures: 1`
//! serves simple-signing signatures at
//! `GET /extensions/v2/<repository path>/signatures/<algo:hex>`, and for it
//! c/image never consults a lookaside store. This module only detects the
//! extension and fetches the raw JSON list; parsing the list is
//! `signature::lookaside::parse_extension_signatures`.

use bytes::Bytes;
use reqwest::StatusCode;

use super::auth::CredentialSource;
use super::client::{RegistryClient, with_each_credential};
use super::transport::{self, registry_host};
use super::{MAX_SIGNATURE_LIST_BODY_SIZE, RegistryError};
use crate::reference::{Digest, Named};

impl RegistryClient {
    /// Whether `image`'s registry announced the signature extension in its
    /// `/v2/` ping (the header value must be exactly `1`). The ping is cached
    /// per registry host.
    pub async fn supports_signatures(&self, image: &Named) -> Result<bool, RegistryError> {
        let props = self
            .transport
            .properties(registry_host(image.domain()))
            .await?;
        Ok(props.supports_signatures)
    }

    /// The raw signature list (`{"signatures":[…]}`) for `digest` in
    /// `image`'s repository, fetched with the registry's normal
    /// authentication. Any status but 200 is an error, as in c/image:
    /// `downloading signatures for <digest> in <repo>: <registry error>`.
    /// The body is limited to 4 MiB.
    pub async fn extension_signatures(
        &self,
        image: &Named,
        digest: &Digest,
        credentials: &dyn CredentialSource,
    ) -> Result<Bytes, RegistryError> {
        let path = format!("/extensions/v2/{}/signatures/{digest}", image.path());
        let context = || format!("downloading signatures for {digest} in {}", image.name());
        let (path, context) = (&path, &context);
        with_each_credential(credentials, image, |credentials| async move {
            let res = self.transport.get(image, path, &[], &credentials).await?;
            if res.status() != StatusCode::OK {
                return Err(transport::registry_http_response_error(res)
                    .await
                    .context(context()));
            }
            transport::read_capped(res, MAX_SIGNATURE_LIST_BODY_SIZE)
                .await
                .map_err(|e| e.context(context()))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::testserver::{Auth, FakeRegistry};
    use super::super::{Anonymous, Credentials, RegistryErrorKind, RegistryOptions};
    use super::*;

    fn client() -> RegistryClient {
        let _ = rustls::crypto::ring::default_provider().install_default();
        RegistryClient::new(RegistryOptions {
            tls_verify: false,
            ..RegistryOptions::default()
        })
        .unwrap()
    }

    fn named(s: &str) -> Named {
        Named::parse_normalized(s).unwrap()
    }

    const LIST: &str = r#"{"signatures":[{"schemaVersion":2,"name":"sha256:00@x","type":"atomic","content":"AAEC"}]}"#;

    #[tokio::test]
    async fn detects_the_extension_and_fetches_raw_bytes() {
        let reg = FakeRegistry::start(Auth::Bearer {
            user: "u".into(),
            password: "p".into(),
            identity_token: String::new(),
        })
        .await;
        reg.set_supports_signatures("1");
        let digest = Digest::sha256_of(b"manifest");
        reg.put_signatures(&format!("e2e/app/signatures/{digest}"), LIST.as_bytes());
        let c = client();
        let image = named(&format!("{}/e2e/app:v1", reg.host()));
        assert!(c.supports_signatures(&image).await.unwrap());
        let body = c
            .extension_signatures(&image, &digest, &Credentials::basic("u", "p"))
            .await
            .unwrap();
        assert_eq!(&body[..], LIST.as_bytes());
        // Non-200 is fatal, in c/image's words.
        let other = Digest::sha256_of(b"other");
        let e = c
            .extension_signatures(&image, &other, &Credentials::basic("u", "p"))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), RegistryErrorKind::NotFound);
        assert_eq!(
            e.message(),
            format!(
                "downloading signatures for {other} in {}/e2e/app: StatusCode: 404, 404 page not found\n",
                reg.host()
            )
        );
    }

    #[tokio::test]
    async fn header_must_be_exactly_one() {
        for (value, expected) in [("1", true), ("true", false), ("", false)] {
            let reg = FakeRegistry::start(Auth::None).await;
            reg.set_supports_signatures(value);
            let image = named(&format!("{}/e2e/app:v1", reg.host()));
            assert_eq!(
                client().supports_signatures(&image).await.unwrap(),
                expected,
                "{value:?}"
            );
        }
    }

    #[tokio::test]
    async fn signature_list_is_capped() {
        let reg = FakeRegistry::start(Auth::None).await;
        let digest = Digest::sha256_of(b"manifest");
        reg.put_signatures(
            &format!("e2e/app/signatures/{digest}"),
            &vec![b' '; MAX_SIGNATURE_LIST_BODY_SIZE + 1],
        );
        let e = client()
            .extension_signatures(
                &named(&format!("{}/e2e/app", reg.host())),
                &digest,
                &Anonymous,
            )
            .await
            .unwrap_err();
        assert_eq!(e.kind(), RegistryErrorKind::TooLarge);
    }
}
