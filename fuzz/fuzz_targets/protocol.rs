//! libFuzzer entry for `fuzz_targets::protocol` (the target's body and what it checks are there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::protocol::run(data));
