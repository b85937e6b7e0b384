//! Manifest lists and OCI indexes: parsing and the instance c/image selects per platform (semantics §7.1).
