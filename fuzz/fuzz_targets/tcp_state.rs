#![no_main]
// See FUZZING.md and lb-core/tests/harness/tcp_state.rs for what this target checks.
libfuzzer_sys::fuzz_target!(|data: &[u8]| lb_fuzz::harness::tcp_state::run(data));
