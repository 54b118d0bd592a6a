#!/usr/bin/env bash
# bench-all.sh — every lb-core figure of BENCHMARKS.md, one after the other, into bench-out/:
# machine summary, the interleaved ratio table, the new-connection table, the divan suites,
# memory, the iai gate.
# The gateway comparison needs root and namespaces: scripts/bench-gateway.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-bench-out}"
mkdir -p "$out"
lscpu | grep -E '^(Model name|CPU\(s\)|Thread|Core|Socket|L1d|L2|L3|Hypervisor)' >"$out/machine.txt"
rustc --version >>"$out/machine.txt"
cargo bench -p lb-core --bench ratios 2>&1 | tee "$out/ratios.txt"
cargo bench -p lb-core --bench newconn 2>&1 | tee "$out/newconn.txt"
cargo bench -p lb-core --bench datapath 2>&1 | tee "$out/datapath.txt"
cargo bench -p lb-core --bench memory 2>&1 | tee "$out/memory.txt"
scripts/iai-gate.sh 2>&1 | tee "$out/iai.txt"
