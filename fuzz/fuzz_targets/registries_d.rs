#![no_main]
//! `cargo fuzz run registries_d`: see imagegate_fuzz::registries_d (shared with tests/fuzz_regressions.rs).

libfuzzer_sys::fuzz_target!(|data: &[u8]| imagegate_fuzz::registries_d(data));
