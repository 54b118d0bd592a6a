#!/usr/bin/env bash
# lb-core's public API against its committed baseline (lb-core/public-api.txt): fails when they
# differ, so every change to the public surface is a deliberate change to that file.
#
#   scripts/public-api.sh           # check (CI)
#   scripts/public-api.sh --bless   # rewrite the baseline after a deliberate change
#
# Uses cargo-public-api (installed with `cargo install --locked` if missing) on the nightly
# toolchain's rustdoc JSON, with the `alloc` feature (what docs.rs shows) and without `internals`.
set -euo pipefail
cd "$(dirname "$0")/.."
want_version=0.52.0
if ! cargo public-api --version 2>/dev/null | grep -q "$want_version"; then
  cargo install --locked cargo-public-api --version "$want_version"
fi
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
now=$(mktemp)
trap 'rm -f "$now"' EXIT
cargo +nightly public-api -p lb-core --features alloc -sss > "$now"
if [ "${1:-}" = "--bless" ]; then
  cp "$now" lb-core/public-api.txt
  echo "public-api: baseline rewritten ($(wc -l < lb-core/public-api.txt) items)"
  exit 0
fi
if ! diff -u lb-core/public-api.txt "$now"; then
  echo "public-api: FAIL: lb-core's public API changed (diff above: - baseline, + now)." >&2
  echo "If the change is deliberate, run scripts/public-api.sh --bless and commit the file." >&2
  exit 1
fi
echo "public-api: lb-core's public API matches lb-core/public-api.txt ($(wc -l < "$now") items)"
