//! Host demos of the lb crates; see `examples/examples/`. The library holds what a demo's
//! tests call too.

pub mod pcap_replay;
