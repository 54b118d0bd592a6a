//! Host demos of the lb crates; see `examples/examples/`.
