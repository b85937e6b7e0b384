#![no_main]
//! `cargo fuzz run policy`: see imagegate_fuzz::policy (shared with tests/fuzz_regressions.rs).

libfuzzer_sys::fuzz_target!(|data: &[u8]| imagegate_fuzz::policy(data));
