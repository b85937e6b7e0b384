//! Simple-signing signatures: the blob format, the payload, OpenPGP
//! verification and signing, and where signatures are stored
//! (containers-registries.d and lookaside servers).

pub mod blob;
pub mod lookaside;
pub mod mechanism;
pub mod payload;
pub mod registries_d;
