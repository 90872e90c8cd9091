#!/usr/bin/env bash
# Build of the worker into build/ (release, or `--dev`), and of the browser core
# into public/core/ (git-ignored), and their sizes (raw and gzipped).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PWD/node_modules/.bin:$PATH"
export WASM_BINDGEN_BIN="$(command -v wasm-bindgen)"
export WASM_OPT_BIN="$PWD/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$PWD/node_modules/.bin/esbuild"

# How both release wasm builds (the worker and the browser core) are compiled
# for size; `release_env CMD…` runs CMD so.
# - -Zlocation-detail=none: no file, line and column for panic sites in this
#   crate and its dependencies (-8 KB gzipped of paths and location tables).
#   lib.rs denies every panicking call outside tests; a panic in a dependency
#   aborts the instance whatever its message says.
# - With rustup's rust-src (std's sources) on the machine, std is built with
#   the crate (build-std) as panic=immediate-abort: a panic is the `unreachable`
#   trap at once, without the formatting and hook machinery (the glue still
#   logs the trap as "Critical" and starts a fresh instance, as it does after
#   any abort); and with std's `optimize_for_size` (its smaller sort and
#   integer formatting). -19 KB gzipped on the worker, -14 KB on the browser
#   core. Without rust-src, std stays the prebuilt one.
# The flags are unstable: RUSTC_BOOTSTRAP lets the stable compiler take them,
# for these builds only (it also names symbols in v0 mangling, which wasm-opt
# strips; bench/size.mjs reads both).
release_env() {
  local flags="-Zlocation-detail=none" std=()
  if [ -d "$(rustc --print sysroot)/lib/rustlib/src/rust/library/std" ]; then
    flags="$flags -Zunstable-options -Cpanic=immediate-abort"
    std=(CARGO_UNSTABLE_BUILD_STD=std,panic_abort CARGO_UNSTABLE_BUILD_STD_FEATURES=optimize_for_size)
  else
    echo "build: no rust-src, std stays prebuilt (a bigger wasm)"
  fi
  # (An empty array expands to nothing even under bash 3.2 with `set -u`.)
  env RUSTC_BOOTSTRAP=1 ${std[@]+"${std[@]}"} CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="$flags" "$@"
}

# Two wasm-opt settings for gzip, measured on both wasm files:
# - binaryen inlines a function into its only caller whatever its size, so
#   every handler ends up one huge function whose code compresses far worse
#   than the same code in pieces. Only small ones (≤ 15 instructions) are
#   inlined so: the worker 415,111 -> 386,047 B gzipped (+2 % raw), the
#   browser core 123,638 -> 115,783 (with -Os; with -Oz, its level before,
#   115,921). 5 to 20 come within 1 KB of each other; 50 loses 5 KB,
#   unlimited (binaryen's default) 29 KB.
# - functions in the order of their names (Rust paths, as wasm-bindgen keeps
#   them in the names section until wasm-opt strips them): a type's instances and a
#   module's functions lie together, in reach of gzip's 32 KiB window
#   (worker -5.7 KB, browser core -0.9 KB). Ordered by call count instead:
#   +8 KB.
WASM_OPT_SIZE="--one-caller-inline-max-function-size=15 --reorder-functions-by-name"

# `--dev` (npm run dev): the `wasm-dev` cargo profile (this crate unoptimized
# and incremental) and no wasm-opt, into build-dev/: a bigger, slower wasm in
# a fraction of the time, kept apart from the release build in build/ (npm
# start, npm test, bench, deploy), so switching between the two rebuilds nothing.
out=build
if [ "${1:-}" = "--dev" ]; then out=build-dev; fi

# Skip the build when nothing it reads (the sources, and how they are built)
# changed since the last one started (the stamp is taken before building, so
# an edit made during a build is seen by the next one).
stamp=$out/.stamp
if [ -f "$stamp" ] && [ -f "$out/index.js" ] && [ -z "$(find src Cargo.toml Cargo.lock scripts/build.sh scripts/strip-exports.mjs -newer "$stamp" -print -quit)" ]; then
  echo "build: up to date ($out/)"
else
  mkdir -p "$out"
  rm -f "$stamp"
  touch "$out/.stamp.next"
  if [ "$out" = build-dev ]; then
    worker-build --profile wasm-dev --no-opt --out-dir build-dev
  else
    release_env worker-build --release
    # Exports of classes the glue can never hold an object of (their code
    # would otherwise stay: an export is a root).
    node scripts/strip-exports.mjs build/index.js build/index_bg.wasm
    # The wasm as wasm-bindgen wrote it, names and all: bench/size.mjs
    # optimizes a copy with names to say what the shipped bytes are made of.
    mkdir -p target/size && cp build/index_bg.wasm target/size/index_bg.wasm
    # -Os, every feature the compiler may emit (binaryen rejects the module
    # otherwise), and no names section: panics are not part of the design.
    # -Os rather than -Oz: 2 % more raw bytes but 4.6 KiB fewer gzipped (what
    # a cold start loads and the platform's limit counts); measured on this
    # worker, the cargo side stays at opt-level z (opt-level s: +49 KiB gzipped).
    # --low-memory-unused (addresses below 1024 are never used, so constant
    # offsets fold into loads and stores; -5 KiB gzipped): rustc links the
    # stack first, so that is the far end of the 1 MiB stack.
    # $WASM_OPT_SIZE: see its definition (-35 KB gzipped). (--converge:
    # nothing more, for 1.6x the wasm-opt time.) --all-features accepts what
    # rustc and wasm-bindgen wrote; binaryen's compact import section (one
    # of those features) is 0.6 KB larger gzipped than the classic one.
    echo "build: wasm-opt -Os"
    wasm-opt build/index_bg.wasm -o build/index_bg.wasm -Os $WASM_OPT_SIZE --all-features --disable-compact-imports --strip-debug --strip-producers --low-memory-unused
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

# The browser build of the pure core (src/browser.rs): the same crate without
# the default feature `edge`, so without `worker`, bound with wasm-bindgen
# --target web, served from the git-ignored public/core/. Its own target dir:
# building it never invalidates the worker's artifacts. `--dev` builds it as
# it builds the worker (the wasm-dev profile, no wasm-opt, glue as written):
# a development rebuild then takes seconds, not the release core's ~17 s.
# Each kind is built into its own directory with its own stamp (taken before
# building, so an edit made during a build is seen by the next one) and
# copied into public/core/, so switching between `npm run dev` and `npm
# start` or `npm test` copies instead of rebuilding.
if [ "$out" = build-dev ]; then core_kind=dev; core_profile=wasm-dev; else core_kind=release; core_profile=release; fi
core_out=target/browser/core-$core_kind
core_stamp=target/browser/.stamp-$core_kind
core=public/core/dropple_core_bg.wasm
if [ -f "$core_stamp" ] && [ -f "$core_out/dropple_core_bg.wasm" ] && [ -z "$(find src Cargo.toml Cargo.lock scripts/build.sh -newer "$core_stamp" -print -quit)" ]; then
  echo "build: browser core up to date"
else
  mkdir -p target/browser
  rm -f "$core_stamp"
  touch "$core_stamp.next"
  core_build=(cargo build --target wasm32-unknown-unknown --profile "$core_profile" --no-default-features --features browser --lib --target-dir target/browser)
  if [ "$core_kind" = release ]; then release_env "${core_build[@]}"; else "${core_build[@]}"; fi
  rm -rf "$core_out" && mkdir -p "$core_out"
  wasm-bindgen --target web --no-typescript --out-dir "$core_out" --out-name dropple_core \
    "target/browser/wasm32-unknown-unknown/$core_profile/dropple_edge.wasm"
  if [ "$core_kind" = release ]; then
    # As for the worker, a copy with names: `node bench/size.mjs
    # target/size/dropple_core_bg.wasm` says what the browser core is made of.
    mkdir -p target/size && cp "$core_out/dropple_core_bg.wasm" target/size/dropple_core_bg.wasm
    # Only features every current browser runs (--all-features would let
    # binaryen write e.g. compact imports, which Chromium rejects).
    # --low-memory-unused as for the worker (the same layout: the stack below
    # 1 MiB, growing down; -0.7 KiB gzipped).
    wasm-opt "$core_out/dropple_core_bg.wasm" -o "$core_out/dropple_core_bg.wasm" -Os $WASM_OPT_SIZE --strip-debug --strip-producers --low-memory-unused \
      --enable-bulk-memory --enable-bulk-memory-opt --enable-sign-ext --enable-mutable-globals \
      --enable-nontrapping-float-to-int --enable-reference-types --enable-multivalue --enable-call-indirect-overlong
    # The glue as the browser needs it: wasm-bindgen writes it for reading
    # (every doc comment of src/browser.rs, long local names); minified it is
    # half as big gzipped. Exports and the names of the wasm's imports stay.
    esbuild "$core_out/dropple_core.js" --minify --format=esm --log-level=warning \
      --outfile="$core_out/dropple_core.js" --allow-overwrite
  fi
  mv "$core_stamp.next" "$core_stamp"
fi
if ! cmp -s "$core_out/dropple_core_bg.wasm" "$core" || ! cmp -s "$core_out/dropple_core.js" public/core/dropple_core.js; then
  rm -rf public/core && cp -r "$core_out" public/core
fi
raw=$(wc -c < "$core")
if [ "$core_kind" = dev ]; then
  echo "build: browser core $(( raw / 1024 )) KiB raw (development build, not optimized)"
else
  gz=$(gzip -9 -c "$core" | wc -c); js=$(gzip -9 -c public/core/dropple_core.js | wc -c)
  echo "build: browser core $(( raw / 1024 )) KiB raw, $(( gz / 1024 )) KiB gzipped + $(( js / 1024 )) KiB JS glue gzipped (budget ≤ 150 KiB gzipped)"
fi

# The core's stamp is a hash of the Rust sources: keep every reference current.
node scripts/version-assets.mjs
