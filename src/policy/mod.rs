//! containers-policy.json: the document model and strict parser, scope
//! lookup, `signedIdentity` matching and requirement evaluation.
