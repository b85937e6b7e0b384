//! TODO-module lookaside
