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

# npm test lints with clippy (no unwrap, expect or panic outside tests).
if ! cargo clippy --version >/dev/null 2>&1; then
  step "rust component clippy"
  rustup component add clippy
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

# npm packages: wrangler (workerd inside), Node 22, binaryen's wasm-opt,
# playwright-core. Always `npm ci`: it installs exactly package-lock.json and
# never writes it (the lock holds every platform's optional packages, e.g.
# @cloudflare/workerd-darwin-arm64, so the same lock installs on macOS,
# Windows and Linux). After changing package.json, refresh the lock in a tree
# without node_modules (`rm -rf node_modules && npm install --package-lock-only`):
# npm >= 10.3 prunes other platforms' packages from a lock rewritten next to an
# installed node_modules (npm/cli#7961), tests/lockfile.test.mjs catches it.
if [ ! -x node_modules/.bin/wrangler ] || [ ! -x node_modules/.bin/node ] || [ package-lock.json -nt node_modules/.stamp ]; then
  step "npm packages (npm ci)"
  if ! npm ci --no-audit --no-fund; then
    echo "setup: npm ci failed; if it says package.json and package-lock.json are out of sync, refresh the lock as described in scripts/setup.sh" >&2
    exit 1
  fi
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

# A Chrome or Chromium for the web app's tests (tests/web.test.mjs), found by
# scripts/find-browser.mjs (CHROME_PATH / CHROMIUM_PATH, the usual install
# locations on Linux and macOS, PATH). None found: Debian's package where
# apt-get exists, otherwise say what to install (npm start does not need one).
browser=0
node scripts/find-browser.mjs >/dev/null 2>&1 || browser=$?
if [ "$browser" -eq 1 ] && command -v apt-get >/dev/null 2>&1; then
  step "chromium (Debian package, for the browser tests)"
  sudo=""
  if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo=sudo; fi
  $sudo apt-get update && $sudo apt-get install -y chromium
elif [ "$browser" -ne 0 ]; then
  step "browser for the tests"
  node scripts/find-browser.mjs >/dev/null || true
fi
