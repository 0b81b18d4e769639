//! cargo-fuzz target; the body is [`podnet_fuzz::rule_text`], shared with the
//! corpus replay in `tests/replay.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| podnet_fuzz::rule_text(data));
