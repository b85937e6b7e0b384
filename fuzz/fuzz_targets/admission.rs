#![no_main]
//! `cargo fuzz run admission`: see imagegate_fuzz::admission (shared with tests/fuzz_regressions.rs).

libfuzzer_sys::fuzz_target!(|data: &[u8]| imagegate_fuzz::admission(data));
