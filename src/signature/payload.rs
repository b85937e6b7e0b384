//! TODO-module payload
