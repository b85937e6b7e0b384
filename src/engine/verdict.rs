//! The verdicts the engine hands to its faces (CLI, webhook): one per image,
//! broken down per policy document.

use serde::Serialize;

/// How a document's rejections are applied at admission (`spec.mode`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
pub enum Mode {
    /// Deny the object.
    #[default]
    Enforce,
    /// Admit, and return a warning to the user.
    Warn,
    /// Admit silently; the outcome is only recorded (audit annotations, logs, metrics).
    Audit,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "Enforce",
            Mode::Warn => "Warn",
            Mode::Audit => "Audit",
        }
    }
}

/// The scope of a document that applied to an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "key", rename_all = "camelCase")]
pub enum MatchedScope {
    /// A `transports.docker` key (identity, repository, namespace, host or wildcard).
    Scope(String),
    /// The `transports.docker[""]` entry.
    TransportDefault,
    /// The document's top-level `default`.
    Default,
}

impl std::fmt::Display for MatchedScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MatchedScope::Scope(s) => write!(f, "scope {s}"),
            MatchedScope::TransportDefault => f.write_str("scope docker \"\""),
            MatchedScope::Default => f.write_str("default"),
        }
    }
}

/// One signature as judged by one `signedBy` requirement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignatureReport {
    /// Where it came from (lookaside URL, or `extension #N`).
    pub source: String,
    pub accepted: bool,
    /// Why it was not accepted, or who signed it when it was.
    pub detail: String,
}

/// One requirement of the matched scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequirementReport {
    /// `signedBy (GPGKeys, 1 key: 08CD…)`, `reject`, …
    pub requirement: String,
    pub passed: bool,
    pub reason: Option<String>,
    pub signatures: Vec<SignatureReport>,
}

/// The verdict of one document for one manifest (an instance of a list, or
/// the image itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstanceVerdict {
    /// The manifest digest that was checked.
    pub digest: Option<String>,
    /// The platform it was selected for, for list instances.
    pub platform: Option<String>,
    pub allowed: bool,
    /// The first failing requirement's reason, in c/image's words.
    pub reason: Option<String>,
    pub requirements: Vec<RequirementReport>,
}

/// One document's verdict for one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DocumentVerdict {
    /// `policy.json`, `ClusterImagePolicy/prod`, `ImagePolicy/team-a/strict`.
    pub document: String,
    pub mode: Mode,
    /// `None`: the document has no `default` and no scope matched, so it
    /// has no opinion on this image.
    pub scope: Option<MatchedScope>,
    pub allowed: bool,
    pub reason: Option<String>,
    pub instances: Vec<InstanceVerdict>,
}

/// Everything decided about one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageVerdict {
    /// The image string as given.
    pub image: String,
    /// The normalised reference that was evaluated.
    pub reference: Option<String>,
    /// The digest the reference resolved to, when it was resolved.
    pub digest: Option<String>,
    pub documents: Vec<DocumentVerdict>,
}

impl ImageVerdict {
    /// Every document accepted (or had no opinion).
    pub fn allowed(&self) -> bool {
        self.documents.iter().all(|d| d.allowed)
    }

    /// Accepted by every document that enforces (Warn and Audit rejections
    /// do not block).
    pub fn admitted(&self) -> bool {
        self.documents
            .iter()
            .all(|d| d.allowed || d.mode != Mode::Enforce)
    }

    /// Whether at least one document verified signatures for this image and
    /// all accepted: the condition for pinning a tag to its digest.
    pub fn verified(&self) -> bool {
        self.allowed()
            && self.digest.is_some()
            && self.documents.iter().any(|d| {
                d.instances.iter().any(|i| {
                    i.requirements
                        .iter()
                        .any(|r| r.passed && r.signatures.iter().any(|s| s.accepted))
                })
            })
    }

    /// `image X rejected by D (scope S): reason` for each rejecting document.
    pub fn rejection_messages(&self) -> Vec<(Mode, String)> {
        self.documents
            .iter()
            .filter(|d| !d.allowed)
            .map(|d| {
                let scope = d
                    .scope
                    .as_ref()
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default();
                let reason = d.reason.as_deref().unwrap_or("rejected");
                (
                    d.mode,
                    format!(
                        "image {} rejected by {}{scope}: {reason}",
                        self.image, d.document
                    ),
                )
            })
            .collect()
    }
}
