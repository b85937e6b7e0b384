//! TODO-module mechanism
