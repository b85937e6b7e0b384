//! Webhook serving certificates: a CA and a serving certificate issued by
//! it, made with rcgen. The controller keeps them in a Secret and patches
//! the CA into the webhook configurations' caBundle; tests use the same
//! code to stand up HTTPS exactly as the API server would see it.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// A PEM certificate with its PEM private key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PemPair {
    pub cert_pem: String,
    pub key_pem: String,
}

fn certs_error(e: rcgen::Error) -> crate::Error {
    crate::Error::Config(format!("certificate generation failed: {e}"))
}

/// A self-signed CA valid for `validity`, starting an hour ago (clock skew).
pub fn generate_ca(common_name: &str, validity: Duration) -> crate::Result<PemPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(certs_error)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + validity;
    let key = KeyPair::generate().map_err(certs_error)?;
    let cert = params.self_signed(&key).map_err(certs_error)?;
    Ok(PemPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A serving certificate for `dns_names` (IP addresses are accepted too),
/// issued by `ca`. Not a CA itself: rustls refuses CA certificates as
/// server certificates.
pub fn issue_serving_cert(
    ca: &PemPair,
    dns_names: &[String],
    validity: Duration,
) -> crate::Result<PemPair> {
    let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(certs_error)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key).map_err(certs_error)?;
    let mut params = CertificateParams::new(dns_names.to_vec()).map_err(certs_error)?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        dns_names.first().cloned().unwrap_or_default(),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + validity;
    let key = KeyPair::generate().map_err(certs_error)?;
    let cert = params.signed_by(&key, &issuer).map_err(certs_error)?;
    Ok(PemPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_a_leaf_under_a_ca() {
        let ca = generate_ca("imagegate test CA", Duration::days(1)).unwrap();
        let leaf = issue_serving_cert(
            &ca,
            &["localhost".into(), "127.0.0.1".into()],
            Duration::days(1),
        )
        .unwrap();
        assert!(leaf.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(leaf.key_pem.contains("PRIVATE KEY"));
        assert_ne!(leaf.cert_pem, ca.cert_pem);
    }
}
