#![no_main]
//! `cargo fuzz run reference`: see imagegate_fuzz::reference (shared with tests/fuzz_regressions.rs).

libfuzzer_sys::fuzz_target!(|data: &[u8]| imagegate_fuzz::reference(data));
