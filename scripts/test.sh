#!/usr/bin/env bash
# The whole suite: native core tests (unit + property), the release build, then
# integration tests against the real worker on local workerd.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PWD/node_modules/.bin:$PATH"

# The browser tests need a Chrome or Chromium: say what to install now, not
# after the rest of the suite.
node scripts/find-browser.mjs >/dev/null

echo "== cargo test (native core)"
PROPTEST_CASES="${PROPTEST_CASES:-256}" cargo test --lib --quiet

echo "== build"
bash scripts/build.sh

echo "== integration tests (local workerd)"
files=$(ls tests/*.test.mjs)
node --test --test-concurrency=1 --test-timeout=300000 $files
