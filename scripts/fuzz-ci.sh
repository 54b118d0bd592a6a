#!/usr/bin/env bash
# Builds the cargo-fuzz targets in fuzz/ and runs each for a bounded time from the committed
# seed corpus (fuzz/seeds/<target>) plus a scratch corpus (fuzz/corpus/<target>, not committed).
# A crash, an invariant failure or a timeout fails the script (exit 1) after every target ran;
# the failing input and how to reproduce it are printed. See FUZZING.md.
#
#   FUZZ_SECONDS=60       seconds per target (default 60)
#   FUZZ_TARGETS="a b"    which targets (default: all)
#   FUZZ_SANITIZER=none   cargo-fuzz sanitizer (default none: lb-core forbids unsafe code)
set -uo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET="${FUZZ_SECONDS:-60}"
TARGETS="${FUZZ_TARGETS:-packets tcp_state ipvsadm control keepalived sync decap offload}"
SANITIZER="${FUZZ_SANITIZER:-none}"

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz-ci: installing the nightly toolchain"
  rustup toolchain install nightly --profile minimal || { echo "FATAL: no nightly toolchain" >&2; exit 1; }
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz-ci: installing cargo-fuzz"
  cargo install --locked cargo-fuzz || { echo "FATAL: cargo install cargo-fuzz failed" >&2; exit 1; }
fi

cd fuzz
echo "=== fuzz-ci: build (sanitizer: $SANITIZER)"
cargo +nightly fuzz build -s "$SANITIZER" || { echo "FATAL: fuzz targets do not build" >&2; exit 1; }

failed=()
for t in $TARGETS; do
  mkdir -p "corpus/$t" "artifacts/$t"
  extra=()
  [ -f "dict/$t.dict" ] && extra+=("-dict=dict/$t.dict")
  echo "=== fuzz-ci: $t for ${SECONDS_PER_TARGET}s"
  before=$(ls "artifacts/$t" | wc -l)
  cargo +nightly fuzz run -s "$SANITIZER" "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$SECONDS_PER_TARGET" -timeout=30 -rss_limit_mb=2048 \
    -print_final_stats=1 "${extra[@]}" 2>&1 | grep -v -E '^#[0-9]+\s+(NEW|REDUCE|pulse)'
  rc=${PIPESTATUS[0]}
  after=$(ls "artifacts/$t" | wc -l)
  if [ "$rc" -ne 0 ] || [ "$after" -ne "$before" ]; then
    failed+=("$t")
    echo "!!! fuzz-ci: $t FAILED (exit $rc). Inputs:"
    ls -t "artifacts/$t" | head -5 | sed "s|^|    fuzz/artifacts/$t/|"
    cat <<MSG
    Reproduce:  cd fuzz && cargo +nightly fuzz run -s $SANITIZER $t artifacts/$t/<file>
    Debug:      LB_FUZZ_REPLAY=$t:\$PWD/fuzz/artifacts/$t/<file> cargo test -p lb-core \\
                  --test fuzz_regressions replay_one -- --ignored --nocapture
    Once fixed: copy the file to fuzz/regressions/$t/<what-it-was> and commit it; cargo test
                replays it from then on (lb-core/tests/fuzz_regressions.rs).
MSG
  fi
done

if [ "${#failed[@]}" -ne 0 ]; then
  echo "fuzz-ci: FAILED: ${failed[*]}"
  exit 1
fi
echo "fuzz-ci: all targets ran ${SECONDS_PER_TARGET}s without a failure"
