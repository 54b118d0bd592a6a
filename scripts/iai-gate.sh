#!/usr/bin/env bash
# The instruction-count gate (issue 7): runs lb-core's gungraun benchmarks (lb-core/benches/iai.rs)
# under valgrind's callgrind and fails when any count exceeds its committed absolute limit
# (measured figure + 10 %, see BENCHMARKS.md). Installs gungraun-runner at the library's exact
# version if it is missing or another version. Needs valgrind (`apt-get install valgrind`).
#
#   scripts/iai-gate.sh            # run the gate (about 30 s of valgrind plus the build)
#   scripts/iai-gate.sh --check    # only check the runner/library versions
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "iai-gate: FAIL: $*" >&2; exit 1; }

command -v valgrind >/dev/null || fail "valgrind not found (apt-get install -y valgrind)"

# The library's version, pinned with '=' in lb-core/Cargo.toml; the runner must match it exactly.
want=$(sed -n 's/^gungraun = "=\([0-9.]*\)".*/\1/p' lb-core/Cargo.toml)
[ -n "$want" ] || fail "cannot read gungraun's pinned version from lb-core/Cargo.toml"
have=$(gungraun-runner --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
  echo "iai-gate: installing gungraun-runner $want (found: ${have:-none})"
  cargo install --locked gungraun-runner --version "$want" \
    || fail "cargo install --locked gungraun-runner --version $want failed"
  have=$(gungraun-runner --version | awk '{print $2}')
  [ "$have" = "$want" ] || fail "gungraun-runner is $have after install, want $want"
fi
echo "iai-gate: gungraun $want, runner $have, $(valgrind --version)"
[ "${1:-}" = "--check" ] && exit 0

# No saved baseline matters: the limits are absolute (hard limits in iai.rs).
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo bench -p lb-core --features iai-gate --bench iai 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" -ne 0 ] || grep -q "Performance has regressed" "$log"; then
  echo >&2
  echo "iai-gate: FAIL: instruction counts above the committed limits (or the bench failed, exit $rc)." >&2
  grep -A100 "^Regressions:" "$log" >&2 || true
  echo "iai-gate: if the rise is intended, re-measure and update lb-core/benches/iai.rs 'measured' and BENCHMARKS.md." >&2
  exit 1
fi
echo "iai-gate: OK (every count within its limit)"
