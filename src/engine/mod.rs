//! One image through policy, registry and signatures to a verdict: the
//! code the CLI, the webhook and the tests share (DESIGN decision 12).

pub mod verdict;

pub use verdict::{
    DocumentVerdict, ImageVerdict, InstanceVerdict, MatchedScope, Mode, RequirementReport,
    SignatureReport,
};
