#![no_main]
//! `cargo fuzz run signature`: see imagegate_fuzz::signature (shared with tests/fuzz_regressions.rs).

libfuzzer_sys::fuzz_target!(|data: &[u8]| imagegate_fuzz::signature(data));
