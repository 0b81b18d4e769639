//! cargo-fuzz target; the body is [`podnet_fuzz::ct_decode`], shared with the
//! corpus replay in `tests/replay.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| podnet_fuzz::ct_decode(data));
