//! Rendering verdicts for people (`--output text`) and programs (`json`).

use std::fmt::Write as _;

use crate::engine::ImageVerdict;

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

/// The text report: per image, the scope that matched in each document,
/// each requirement, and each signature with why it was or was not accepted.
pub fn render_text(verdicts: &[ImageVerdict]) -> String {
    let mut out = String::new();
    for v in verdicts {
        let status = if v.allowed() { "ACCEPTED" } else { "REJECTED" };
        let _ = writeln!(out, "{}: {status}", v.image);
        if let Some(r) = &v.reference {
            let _ = writeln!(out, "  reference: {r}");
        }
        if let Some(d) = &v.digest {
            let _ = writeln!(out, "  digest:    {d}");
        }
        for d in &v.documents {
            let Some(scope) = &d.scope else {
                let _ = writeln!(
                    out,
                    "  {}: no scope matches and no default (no opinion)",
                    d.document
                );
                continue;
            };
            let verdict = if d.allowed {
                "accepted".to_string()
            } else {
                format!("rejected: {}", d.reason.as_deref().unwrap_or(""))
            };
            let _ = writeln!(out, "  {} ({scope}): {verdict}", d.document);
            for i in &d.instances {
                let mut indent = "    ";
                if i.digest.is_some() || i.platform.is_some() {
                    let _ = writeln!(
                        out,
                        "    instance {}{}: {}",
                        i.digest.as_deref().unwrap_or("?"),
                        i.platform
                            .as_deref()
                            .map(|p| format!(" ({p})"))
                            .unwrap_or_default(),
                        if i.allowed { "accepted" } else { "rejected" }
                    );
                    indent = "      ";
                }
                for r in &i.requirements {
                    let outcome = if r.passed {
                        "passed".to_string()
                    } else {
                        format!("failed: {}", r.reason.as_deref().unwrap_or(""))
                    };
                    let _ = writeln!(out, "{indent}requirement {}: {outcome}", r.requirement);
                    for s in &r.signatures {
                        let _ = writeln!(
                            out,
                            "{indent}  signature {}: {} ({})",
                            s.source,
                            if s.accepted {
                                "accepted"
                            } else {
                                "not accepted"
                            },
                            s.detail
                        );
                    }
                }
            }
        }
    }
    out
}

/// The JSON report: an array of verdicts.
pub fn render_json(verdicts: &[ImageVerdict]) -> String {
    serde_json::to_string_pretty(verdicts).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}
