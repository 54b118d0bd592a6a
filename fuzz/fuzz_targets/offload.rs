#![no_main]
// See FUZZING.md and fuzz/src/lib.rs (`offload`) for what this target checks.
libfuzzer_sys::fuzz_target!(|data: &[u8]| lb_fuzz::offload::run(data));
