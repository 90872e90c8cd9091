#!/usr/bin/env bash
# `npm run bench`: build everything the benchmarks need, then measure every
# performance goal next to its baseline and rewrite BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PWD/node_modules/.bin:$PATH"

echo "== build (release wasm)"
bash scripts/build.sh
echo "== build (native hot-path example, load generator)"
cargo build --release --quiet --example hotpath
cargo build --release --quiet --manifest-path bench/loadgen/Cargo.toml
if ! command -v valgrind >/dev/null; then
  echo "bench: valgrind missing, installing it for instruction counts"
  apt-get install -y valgrind >/dev/null || echo "bench: could not install valgrind; instruction counts will be n/a"
fi

echo "== measure"
node bench/run.mjs
