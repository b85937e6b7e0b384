//! The library used by an embedder that never set up rustls: building the
//! engine (registry and lookaside clients) must not panic for want of a
//! process-wide crypto provider, and the one installed is ring, the only
//! provider imagegate ships. Its own test binary, so no other test has
//! installed a provider first.

use imagegate::engine::{Engine, EngineConfig};

#[test]
fn engine_builds_without_a_preinstalled_crypto_provider() {
    assert!(rustls::crypto::CryptoProvider::get_default().is_none());
    Engine::new(EngineConfig::default(), None).expect("engine");
    let provider = rustls::crypto::CryptoProvider::get_default().expect("a provider");
    let ring = rustls::crypto::ring::default_provider();
    assert_eq!(
        provider.cipher_suites.len(),
        ring.cipher_suites.len(),
        "the ring provider"
    );
}
