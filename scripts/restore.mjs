// npm run restore: rebuild an empty D1 from the R2 archive through the
// worker's operator path (POST /v1/ops/restore): tables first, then every run's events.
//
//   npm run restore                      # the running `npm start` on 127.0.0.1:${PORT:-8787}
//   npm run restore -- --url https://dropple.example.com --remote
//
// Locally the operator path is open (development). `--remote` is for a deployed
// worker: it needs `--url` and OPERATOR_SECRET in the environment (the same
// value as `wrangler secret put OPERATOR_SECRET`), and the deployed D1 must be
// empty and migrated first: `wrangler d1 migrations apply DB --remote --env <env>`.
// Rows already in D1 are kept (the restore inserts what is missing), so running
// it twice is harmless.
const args = process.argv.slice(2);
const flag = (name) => args.includes(name);
const value = (name) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : undefined; };

const remote = flag("--remote");
const base = (value("--url") ?? `http://127.0.0.1:${process.env.PORT ?? 8787}`).replace(/\/$/, "");
if (remote && !value("--url")) {
  console.error("restore --remote needs --url https://<your worker>");
  process.exit(2);
}
const headers = { "content-type": "application/json" };
if (process.env.OPERATOR_SECRET) headers["x-operator-secret"] = process.env.OPERATOR_SECRET;
if (remote && !process.env.OPERATOR_SECRET) {
  console.error("restore --remote needs OPERATOR_SECRET in the environment");
  process.exit(2);
}

async function post(path, body, base) {
  const r = await fetch(base + path, { method: "POST", headers, body: JSON.stringify(body), signal: AbortSignal.timeout(120_000) });
  const text = await r.text();
  if (r.status !== 200) throw new Error(`${path} ${JSON.stringify(body)}: ${r.status} ${text}`);
  return JSON.parse(text);
}

/** Restore through the worker at `base`; returns what was restored and how long it took. */
export async function restore({ base: at = base, log = console.log } = {}) {
  const started = Date.now();
  const tables = await post("/v1/ops/restore", { phase: "tables" }, at);
  const rows = Object.values(tables.tables).reduce((a, b) => a + b, 0);
  log(`restore: ${rows} rows in ${Object.keys(tables.tables).length} tables (snapshot of ${new Date(tables.snapshot_at).toISOString()})`);
  let after = "", runs = 0, events = 0, missing = 0, sessionsResynced = 0;
  for (;;) {
    const page = await post("/v1/ops/restore", { phase: "runs", after, limit: 50 }, at);
    runs += page.runs; events += page.events; missing += page.runs_without_archive; sessionsResynced += page.sessions_resynced ?? 0;
    if (!page.next_after) break;
    after = page.next_after;
  }
  const ms = Date.now() - started;
  log(`restore: ${events} events in ${runs} runs (${missing} runs without archived events) in ${ms} ms; ${sessionsResynced} live-session objects forward their logs again`);
  return { rows, runs, events, missing, sessionsResynced, ms };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  restore().catch((e) => { console.error(e.message); process.exit(1); });
}
