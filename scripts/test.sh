#!/usr/bin/env bash
# The whole suite: native core tests (unit + property), the release build, then
# integration tests against the real worker on local workerd. Prints how long
# each part took (the README's test section explains where the time goes).
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PWD/node_modules/.bin:$PATH"

# The browser tests need a Chrome or Chromium: say what to install now, not
# after the rest of the suite.
node scripts/find-browser.mjs >/dev/null

t1=$(date +%s)
echo "== cargo test (native core)"
PROPTEST_CASES="${PROPTEST_CASES:-256}" cargo test --lib --quiet
# No unwrap, expect or panic reachable outside tests (src/lib.rs denies them):
# a panic would reset the worker's wasm instance and its Durable Objects.
echo "== clippy (worker and browser builds)"
cargo clippy --lib --quiet --target wasm32-unknown-unknown
cargo clippy --lib --quiet --target wasm32-unknown-unknown --no-default-features --features browser

t2=$(date +%s)
echo "== build"
bash scripts/build.sh

t3=$(date +%s)
echo "== integration tests (local workerd)"
# The D1 migrations, applied once: every test worker starts from a copy
# (tests/support/worker.mjs, migrate()).
migrated=$(mktemp -d "${TMPDIR:-/tmp}/dropple-migrated-XXXXXX")
trap 'rm -rf "$migrated"' EXIT
node tests/support/worker.mjs migrate "$migrated"
export DROPPLE_MIGRATED_STATE="$migrated"
# One file at a time (each starts its own workers), timed; all files run even
# when one fails, and the failures are listed at the end.
failed=""
times=""
for f in tests/*.test.mjs; do
  s=$(date +%s)
  if node --test --test-timeout=300000 "$f"; then r=""; else r=" FAILED"; failed="$failed $f"; fi
  times="$times$(printf '%6d s  %s%s' "$(( $(date +%s) - s ))" "$f" "$r")
"
done
t4=$(date +%s)
printf '== integration test files (wall clock):\n%s' "$times"
echo "== time: setup $((t1 - t0)) s, cargo test $((t2 - t1)) s, build $((t3 - t2)) s, integration $((t4 - t3)) s, total $((t4 - t0)) s"
if [ -n "$failed" ]; then
  echo "== FAILED:$failed"
  exit 1
fi
