//! TODO-module blob
