#!/usr/bin/env bash
# npm run dev: like npm start (local D1, R2, KV, Queues and Durable Objects,
# state kept in .state/, demo org seeded), plus a rebuild-and-reload loop:
# a change under src/ (or Cargo.toml / Cargo.lock) rebuilds the worker (the
# fast development build, scripts/build.sh --dev) and wrangler reloads it,
# keeping local state; a change under public/ is served at once (module and
# stylesheet stamps are rewritten by scripts/version-assets.mjs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh --dev   # into build-dev/
export PATH="$PWD/node_modules/.bin:$PATH" WRANGLER_SEND_METRICS=false
echo "== migrations"
CI=true wrangler d1 migrations apply DB --local --persist-to .state | tail -3
exec node scripts/dev.mjs
