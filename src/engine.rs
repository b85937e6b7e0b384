//! One image through policy, registry and signatures to a verdict.
