//! Manifest digests as c/image computes them (semantics §4.5) and
//! manifest-list instance selection (§7.1, in [`list`]).

pub mod list;
