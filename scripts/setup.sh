#!/usr/bin/env bash
# Idempotent setup: everything a fresh machine (rustup's Rust, Node 20, npm)
# lacks to build and run Dropple Edge. Quick when all is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PWD/node_modules/.bin:$PATH"

step() { printf '\n== setup: %s\n' "$*"; }

if ! rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$'; then
  step "rust target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

WORKER_BUILD_VERSION=0.8.7
if ! worker-build --version 2>/dev/null | grep -q "$WORKER_BUILD_VERSION"; then
  step "worker-build $WORKER_BUILD_VERSION"
  cargo install worker-build --version "$WORKER_BUILD_VERSION" --locked
fi

# worker-build refuses any wasm-bindgen CLI but the exact library version.
BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
if ! wasm-bindgen --version 2>/dev/null | grep -q " $BINDGEN_VERSION\$"; then
  step "wasm-bindgen-cli $BINDGEN_VERSION"
  # --locked first; a lock entry missing from the registry falls back to fresh resolution.
  cargo install wasm-bindgen-cli --version "$BINDGEN_VERSION" --locked \
    || cargo install wasm-bindgen-cli --version "$BINDGEN_VERSION" --force
fi

# npm packages: wrangler (workerd inside), Node 22, binaryen's wasm-opt, playwright-core.
if [ ! -x node_modules/.bin/wrangler ] || [ ! -x node_modules/.bin/node ] || [ package-lock.json -nt node_modules/.stamp ]; then
  step "npm packages"
  npm ci --no-audit --no-fund || npm install --no-audit --no-fund
  touch node_modules/.stamp
fi

# Local secrets, random per machine, never committed.
if [ ! -f .dev.vars ]; then
  step ".dev.vars (random AUTH_SECRET and certificate signing key)"
  {
    echo "AUTH_SECRET=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
    echo "CERT_SIGNING_KEY=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
    echo "CERT_KEY_ID=key-1"
  } > .dev.vars
fi

# Headless browser for the web app's tests (tests/web.test.mjs): Debian's Chromium.
if [ ! -x /usr/bin/chromium ]; then
  step "chromium (Debian package, for the browser tests)"
  apt-get update && apt-get install -y chromium
fi
