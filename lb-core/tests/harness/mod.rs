//! The fuzz harness, shared by the cargo-fuzz targets in `fuzz/` (which include this directory
//! with `#[path]`) and by `tests/fuzz_regressions.rs`, which replays every saved crash input
//! through the same code, so CI's `cargo test` keeps each fixed crash fixed.
//!
//! Each target is a function `fn(&[u8])` that panics when an invariant breaks:
//! * [`packets::run`]: packets in both directions, time steps, control changes;
//! * [`tcp_state::run`]: the TCP state machine against the reference's tables;
//! * [`grammar::run_lines`]: ipvsadm lines, `Display` and `-S` round trips;
//! * [`keepalived::run`]: keepalived.conf text with includes, the parsed commands applied;
//! * [`control::run`] (with lb-tun's decoder passed in): the lbadm wire format;
//! * [`sync::run`]: sync messages and snapshots applied to a backup;
//! * [`decap::run`]: tunnelled packets through the real server's decoder.
#![allow(dead_code)]

pub mod control;
pub mod decap;
pub mod grammar;
pub mod inv;
pub mod keepalived;
pub mod packets;
pub use lb_testkit::pkt;
pub mod setup;
pub mod sync;
pub mod tcp_state;
