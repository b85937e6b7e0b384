#![no_main]
//! `cargo fuzz run manifest`: see imagegate_fuzz::manifest (shared with tests/fuzz_regressions.rs).

libfuzzer_sys::fuzz_target!(|data: &[u8]| imagegate_fuzz::manifest(data));
