//! TODO-module registries_d
