#!/usr/bin/env bash
# Release build of the worker into build/, and its size (raw and gzipped).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PWD/node_modules/.bin:$PATH"
export WASM_BINDGEN_BIN="$(command -v wasm-bindgen)"
export WASM_OPT_BIN="$PWD/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$PWD/node_modules/.bin/esbuild"

# Skip the build when nothing it reads changed since the last one.
stamp=build/.stamp
if [ -f "$stamp" ] && [ -z "$(find src Cargo.toml Cargo.lock -newer "$stamp" -print -quit)" ]; then
  echo "build: up to date"
else
  worker-build --release
  # -Oz, every feature the compiler may emit (binaryen rejects the module
  # otherwise), and no names section: panics are not part of the design.
  wasm-opt build/index_bg.wasm -o build/index_bg.wasm -Oz --all-features --strip-debug --strip-producers
  touch "$stamp"
fi

wasm=$(ls build/*.wasm 2>/dev/null | head -1 || true)
if [ -n "$wasm" ]; then
  raw=$(wc -c < "$wasm"); gz=$(gzip -9 -c "$wasm" | wc -c)
  echo "build: wasm $(( raw / 1024 )) KiB raw, $(( gz / 1024 )) KiB gzipped (goal ≤ 350 KiB gzipped)"
fi
