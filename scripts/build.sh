#!/usr/bin/env bash
# Build of the worker into build/ (release, or `--dev`), and its size (raw and gzipped).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PWD/node_modules/.bin:$PATH"
export WASM_BINDGEN_BIN="$(command -v wasm-bindgen)"
export WASM_OPT_BIN="$PWD/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$PWD/node_modules/.bin/esbuild"

# `--dev` (npm run dev): the `wasm-dev` cargo profile (this crate unoptimized
# and incremental) and no wasm-opt, into build-dev/: a bigger, slower wasm in
# a fraction of the time, kept apart from the release build in build/ (npm
# start, npm test, bench, deploy), so switching between the two rebuilds nothing.
out=build
if [ "${1:-}" = "--dev" ]; then out=build-dev; fi

# Skip the build when nothing it reads changed since the last one started (the
# stamp is taken before building, so an edit made during a build is seen by
# the next one).
stamp=$out/.stamp
if [ -f "$stamp" ] && [ -f "$out/index.js" ] && [ -z "$(find src Cargo.toml Cargo.lock -newer "$stamp" -print -quit)" ]; then
  echo "build: up to date ($out/)"
else
  mkdir -p "$out"
  rm -f "$stamp"
  touch "$out/.stamp.next"
  if [ "$out" = build-dev ]; then
    worker-build --profile wasm-dev --no-opt --out-dir build-dev
  else
    worker-build --release
    # -Oz, every feature the compiler may emit (binaryen rejects the module
    # otherwise), and no names section: panics are not part of the design.
    echo "build: wasm-opt -Oz"
    wasm-opt build/index_bg.wasm -o build/index_bg.wasm -Oz --all-features --strip-debug --strip-producers
  fi
  mv "$out/.stamp.next" "$stamp"
fi

wasm=$(ls "$out"/*.wasm 2>/dev/null | head -1 || true)
if [ -n "$wasm" ]; then
  echo "build: size"
  raw=$(wc -c < "$wasm")
  if [ "$out" = build-dev ]; then
    echo "build: wasm $(( raw / 1024 )) KiB raw (development build, not optimized)"
  else
    gz=$(gzip -9 -c "$wasm" | wc -c)
    echo "build: wasm $(( raw / 1024 )) KiB raw, $(( gz / 1024 )) KiB gzipped (goal ≤ 350 KiB gzipped)"
  fi
fi
