//! AND composition of several documents into one policy.json (DESIGN
//! decision 3), so that what the webhook enforces can be handed to CRI-O
//! (`policy export`).
//!
//! The webhook admits an image when every document accepts it, each with
//! its own first-match scope lookup. One policy.json does the same if, for
//! every scope key K of the union, it lists the requirements each document
//! applies to the images whose lookup stops at K in the union. That is
//! well defined: an image stops at K only if no more specific key of the
//! union matches it, so each document resolves it through the keys of K's
//! own lookup chain (K, then the less specific keys an image matching K
//! also matches, which depend on K alone), then `""`, then `default`.
//! A document with no opinion contributes nothing; a key where no document
//! has an opinion gets `insecureAcceptAnything` (an empty AND accepts).

use super::config::{Policy, Requirement, Scope, TransportScopes};
use super::scope::DOCKER_TRANSPORT;
use crate::reference::Named;

/// The keys an image whose lookup reaches `key` tries from `key` on, most
/// specific first (`key` itself included). `None` for keys that can never
/// be reached (c/image accepts any docker scope string, e.g. `busybox`).
fn chain_from(key: &str) -> Option<Vec<String>> {
    if let Some(rest) = key.strip_prefix("*.") {
        let mut chain = vec![key.to_string()];
        let mut name = rest.to_string();
        while let Some(i) = name.find('.') {
            name = name[i + 1..].to_string();
            chain.push(format!("*.{name}"));
        }
        return Some(chain);
    }
    // Identity (`name:tag`, `name@digest`) or a repository/namespace/host prefix.
    let named = Named::parse_normalized(key).ok()?;
    let name_chain = |name: &str| {
        let mut out = Vec::new();
        let mut n = name.to_string();
        out.push(n.clone());
        while let Some(i) = n.rfind('/') {
            n.truncate(i);
            out.push(n.clone());
        }
        if let Some(i) = n.find(':') {
            n.truncate(i);
        }
        while let Some(i) = n.find('.') {
            n = n[i + 1..].to_string();
            out.push(format!("*.{n}"));
        }
        out
    };
    if named.to_string() == key && !named.is_name_only() {
        // An identity scope: it is tried before the repository.
        let mut chain = vec![key.to_string()];
        chain.extend(name_chain(&named.name()));
        return Some(chain);
    }
    // A namespace or host key must be written fully qualified to ever match.
    if named.name() != key && !is_host(key) {
        return None;
    }
    Some(name_chain(key))
}

/// A `host[:port]` key: what `splitDockerDomain` treats as a registry
/// (a `.` or `:`, or `localhost`); any other single word is a short name.
fn is_host(key: &str) -> bool {
    !key.contains('/') && (key.contains(['.', ':']) || key == "localhost")
}

/// What `policy` applies to an image whose union lookup stopped at `key`.
fn resolve<'a>(policy: &'a Policy, chain: &[String]) -> Option<&'a [Requirement]> {
    let transport = policy.transport(DOCKER_TRANSPORT);
    if let Some(t) = transport {
        for k in chain {
            if let Some(s) = t.scope(k) {
                return Some(&s.requirements);
            }
        }
        if let Some(s) = t.scope("") {
            return Some(&s.requirements);
        }
    }
    policy.default.as_deref()
}

fn and(parts: Vec<&[Requirement]>) -> Vec<Requirement> {
    let reqs: Vec<Requirement> = parts.into_iter().flatten().cloned().collect();
    if reqs.is_empty() {
        vec![Requirement::InsecureAcceptAnything]
    } else {
        reqs
    }
}

/// One policy.json (docker transport) that accepts exactly what every one
/// of `documents` accepts.
pub fn compose(documents: &[&Policy]) -> Policy {
    let mut keys: Vec<String> = Vec::new();
    for d in documents {
        if let Some(t) = d.transport(DOCKER_TRANSPORT) {
            for s in t.scopes() {
                if !s.key.is_empty() && !keys.contains(&s.key) {
                    keys.push(s.key.clone());
                }
            }
        }
    }
    let mut scopes = Vec::new();
    for key in keys {
        let requirements = match chain_from(&key) {
            Some(chain) => and(documents
                .iter()
                .filter_map(|d| resolve(d, &chain))
                .collect()),
            // Unreachable keys are carried over so the output reads like the input.
            None => and(documents
                .iter()
                .filter_map(|d| {
                    d.transport(DOCKER_TRANSPORT)?
                        .scope(&key)
                        .map(|s| s.requirements.as_slice())
                })
                .collect()),
        };
        scopes.push(Scope { key, requirements });
    }
    let fallback = and(documents.iter().filter_map(|d| resolve(d, &[])).collect());
    scopes.push(Scope {
        key: String::new(),
        requirements: fallback.clone(),
    });
    Policy {
        default: Some(fallback),
        transports: vec![TransportScopes::new(DOCKER_TRANSPORT.to_string(), scopes)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::config::ParseOptions;
    use crate::policy::eval::{ImageMaterial, is_running_image_allowed};
    use crate::reference::ImageReference;
    use proptest::prelude::*;

    fn allowed(policy: &Policy, image: &ImageReference) -> Option<bool> {
        let m = policy.requirements_for(image)?;
        let material = ImageMaterial::unfetched(image.clone());
        let keys = |_: &crate::policy::KeySource| -> Result<Vec<Vec<u8>>, String> {
            Err("no keys".into())
        };
        Some(is_running_image_allowed(m.requirements, &material, &keys).allowed)
    }

    fn webhook_verdict(documents: &[Policy], image: &ImageReference) -> bool {
        documents.iter().all(|d| allowed(d, image).unwrap_or(true))
    }

    #[test]
    fn chains() {
        assert_eq!(
            chain_from("reg.example.com:5000/a/b").unwrap(),
            [
                "reg.example.com:5000/a/b",
                "reg.example.com:5000/a",
                "reg.example.com:5000",
                "*.example.com",
                "*.com"
            ]
        );
        assert_eq!(
            chain_from("*.b.example.com").unwrap(),
            ["*.b.example.com", "*.example.com", "*.com"]
        );
        assert_eq!(
            chain_from("docker.io/library/busybox:latest").unwrap()[..2],
            [
                "docker.io/library/busybox:latest".to_string(),
                "docker.io/library/busybox".to_string()
            ]
        );
        assert!(chain_from("busybox").is_none());
        assert_eq!(chain_from("localhost:5000").unwrap(), ["localhost:5000"]);
    }

    #[test]
    fn namespace_tightens_cluster() {
        let parse = |s: &str| Policy::parse(s.as_bytes(), ParseOptions::KUBERNETES).unwrap();
        let cluster = parse(
            r#"{"default":[{"type":"insecureAcceptAnything"}],"transports":{"docker":{"quay.io":[{"type":"reject"}]}}}"#,
        );
        let team = parse(
            r#"{"transports":{"docker":{"quay.io/team":[{"type":"insecureAcceptAnything"}],"ghcr.io":[{"type":"reject"}]}}}"#,
        );
        let composed = compose(&[&cluster, &team]);
        for (image, expected) in [
            ("quay.io/team/app:v1", false),
            ("ghcr.io/x/y:v1", false),
            ("docker.io/library/busybox:v1", true),
        ] {
            let image = ImageReference::parse(image).unwrap();
            assert_eq!(allowed(&composed, &image), Some(expected), "{image}");
            assert_eq!(
                webhook_verdict(&[cluster.clone(), team.clone()], &image),
                expected
            );
        }
        // The output is a valid policy.json for CRI-O.
        let json = composed.to_json().to_string();
        assert!(
            Policy::parse(json.as_bytes(), ParseOptions::POLICY_FILE).is_ok(),
            "{json}"
        );
    }

    const HOSTS: &[&str] = &[
        "quay.io",
        "a.example.com",
        "b.a.example.com",
        "reg.example.com:5000",
        "localhost:5000",
    ];
    const PATHS: &[&str] = &["app", "team/app", "team/sub/app", "other/app"];

    fn key_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            (0..HOSTS.len()).prop_map(|h| HOSTS[h].to_string()),
            (0..HOSTS.len(), 0..PATHS.len(), 0..3usize).prop_map(|(h, p, depth)| {
                let parts: Vec<&str> = PATHS[p].split('/').collect();
                let take = depth.min(parts.len() - 1) + 1;
                format!("{}/{}", HOSTS[h], parts[..take].join("/"))
            }),
            (0..HOSTS.len(), 0..PATHS.len())
                .prop_map(|(h, p)| format!("{}/{}:v1", HOSTS[h], PATHS[p])),
            prop::sample::select(vec![
                "*.example.com",
                "*.a.example.com",
                "*.com",
                "*.io",
                "busybox",
                ""
            ])
            .prop_map(String::from),
        ]
    }

    fn requirement_strategy() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            r#"{"type":"reject"}"#,
            r#"{"type":"insecureAcceptAnything"}"#,
        ])
    }

    fn document_strategy() -> impl Strategy<Value = Policy> {
        (
            prop::option::of(requirement_strategy()),
            prop::collection::btree_map(key_strategy(), requirement_strategy(), 0..6),
        )
            .prop_map(|(default, scopes)| {
                let scopes: Vec<String> = scopes
                    .iter()
                    .map(|(k, r)| format!("{}:[{r}]", serde_json::to_string(k).unwrap()))
                    .collect();
                let default = default
                    .map(|d| format!("\"default\":[{d}],"))
                    .unwrap_or_default();
                let doc = format!(
                    "{{{default}\"transports\":{{\"docker\":{{{}}}}}}}",
                    scopes.join(",")
                );
                Policy::parse(doc.as_bytes(), ParseOptions::KUBERNETES).unwrap()
            })
    }

    fn image_strategy() -> impl Strategy<Value = ImageReference> {
        (
            0..HOSTS.len(),
            0..PATHS.len(),
            prop::sample::select(vec!["v1", "v2"]),
        )
            .prop_map(|(h, p, t)| {
                ImageReference::parse(&format!("{}/{}:{t}", HOSTS[h], PATHS[p])).unwrap()
            })
    }

    proptest! {
        /// The exported policy.json decides every image as the webhook does
        /// with the documents themselves.
        #[test]
        fn composition_equals_evaluating_every_document(
            documents in prop::collection::vec(document_strategy(), 1..4),
            images in prop::collection::vec(image_strategy(), 1..8),
        ) {
            let refs: Vec<&Policy> = documents.iter().collect();
            let composed = compose(&refs);
            let reparsed = Policy::parse(composed.to_json().to_string().as_bytes(), ParseOptions::POLICY_FILE).unwrap();
            for image in &images {
                prop_assert_eq!(allowed(&reparsed, image), Some(webhook_verdict(&documents, image)), "{}", image);
            }
        }
    }
}
