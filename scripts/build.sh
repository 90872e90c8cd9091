#!/usr/bin/env bash
# Build of the worker into build/ (release, or `--dev`), and its size (raw and gzipped).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PWD/node_modules/.bin:$PATH"
export WASM_BINDGEN_BIN="$(command -v wasm-bindgen)"
export WASM_OPT_BIN="$PWD/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$PWD/node_modules/.bin/esbuild"

# `--dev` (npm run dev): the `wasm-dev` cargo profile (no LTO, parallel and
# incremental codegen) and no wasm-opt: a bigger, slower wasm in a fraction of
# the time. Without it: the release build (npm start, npm test, bench, deploy).
mode=release
if [ "${1:-}" = "--dev" ]; then mode=dev; fi

# Skip the build when the last one was of the same kind and nothing it reads
# changed since it started (the stamp is taken before building, so an edit
# made during a build is seen by the next one).
stamp=build/.stamp
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$mode" ] && [ -z "$(find src Cargo.toml Cargo.lock -newer "$stamp" -print -quit)" ]; then
  echo "build: up to date ($mode)"
else
  mkdir -p build
  rm -f "$stamp"
  echo "$mode" > build/.stamp.next
  if [ "$mode" = dev ]; then
    worker-build --profile wasm-dev --no-opt
  else
    worker-build --release
    # -Oz, every feature the compiler may emit (binaryen rejects the module
    # otherwise), and no names section: panics are not part of the design.
    echo "build: wasm-opt -Oz"
    wasm-opt build/index_bg.wasm -o build/index_bg.wasm -Oz --all-features --strip-debug --strip-producers
  fi
  mv build/.stamp.next "$stamp"
fi

wasm=$(ls build/*.wasm 2>/dev/null | head -1 || true)
if [ -n "$wasm" ]; then
  echo "build: size"
  raw=$(wc -c < "$wasm")
  if [ "$(cat "$stamp" 2>/dev/null)" = dev ]; then
    echo "build: wasm $(( raw / 1024 )) KiB raw (development build, not optimized)"
  else
    gz=$(gzip -9 -c "$wasm" | wc -c)
    echo "build: wasm $(( raw / 1024 )) KiB raw, $(( gz / 1024 )) KiB gzipped (goal ≤ 350 KiB gzipped)"
  fi
fi
