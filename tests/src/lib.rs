//! lb-testkit: what the workspace's tests share.
//!
//! [`pkt`] builds IPv4/IPv6 TCP, UDP and ICMP packets with correct checksums and checks them,
//! with code of its own: it does not use lb-core's `packet`, `nat` or `checksum` modules, nor
//! smoltcp (which skips checksum verification when built with `cfg(fuzzing)`), so a test that
//! builds its input here and verifies lb-core's output here is not checking lb-core against
//! itself. lb-core's unit tests, integration tests, benches and fuzz harness, and lb-tun's and
//! lb-embedded's tests all build their packets with it.

pub mod pkt;
