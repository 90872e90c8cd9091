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

t2=$(date +%s)
echo "== build"
bash scripts/build.sh

t3=$(date +%s)
echo "== integration tests (local workerd)"
files=$(ls tests/*.test.mjs)
node --test --test-concurrency=1 --test-timeout=300000 $files
t4=$(date +%s)
echo "== time: setup $((t1 - t0)) s, cargo test $((t2 - t1)) s, build $((t3 - t2)) s, integration $((t4 - t3)) s, total $((t4 - t0)) s"
