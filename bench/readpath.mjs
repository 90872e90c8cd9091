// The read side at the edge (issue 16), measured on its own worker whose D1
// holds 10,000 published listings (seeded with SQL before it starts, through
// the same migrations and triggers the product uses):
// - warm reads (marketplace list, public frame) next to the `/ping` floor,
//   with and without a far primary (`d1_delay_ms` = 150);
// - cold searches over the 10,000 listings (a new query every time);
// - D1 statements per warm public read and D1's rows_read per search, both
//   taken from the worker's own `Server-Timing` header.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT, startWorker, client, migrate } from "../tests/support/worker.mjs";
import { explanationsDone } from "./settle.mjs";

export const LISTINGS = 10_000;
const WORDS = ["algebra", "fractions", "geometry", "biology", "chemistry", "history", "poetry", "grammar", "physics", "music",
  "drawing", "coding", "economics", "statistics", "astronomy", "geology", "ethics", "logic", "spanish", "french"];
const TAGS = ["math", "science", "art", "language", "k12", "college", "intro", "advanced", "lab", "exam"];

const pct = (xs, p) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
};

/** `Server-Timing` → {d1, d1_rows, kv, r2, cache, total}. */
function timing(headers) {
  const out = {};
  for (const part of (headers.get("server-timing") ?? "").split(",")) {
    const [name, ...params] = part.trim().split(";");
    for (const p of params) {
      const [k, v] = p.split("=");
      const val = v?.replace(/"/g, "");
      out[name] = /^\d+(\.\d+)?$/.test(val) ? Number(val) : val;
    }
  }
  return out;
}

// A deterministic pseudo-random sequence (xorshift), so every run seeds the same marketplace.
function rng(seed) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    return x / 0x100000000;
  };
}

function seedSql() {
  const r = rng(16);
  const pick = (xs) => xs[Math.floor(r() * xs.length)];
  const q = (s) => `'${s.replace(/'/g, "''")}'`;
  const lines = [];
  for (let start = 0; start < LISTINGS; start += 50) {
    const values = [];
    for (let i = start; i < Math.min(LISTINGS, start + 50); i++) {
      const title = `${pick(WORDS)} ${pick(WORDS)} ${i}`;
      const summary = `A lesson on ${pick(WORDS)} and ${pick(WORDS)} for curious learners`;
      const tags = JSON.stringify([...new Set([pick(TAGS), pick(TAGS)])]);
      const n = Math.floor(r() * 40), sum = n === 0 ? 0 : Math.round(n * (1 + r() * 4));
      const at = 1_700_000_000_000 + i * 1000;
      values.push(`(${q(`bench-l-${i}`)}, 'seedorg', ${q(`bench-lesson-${i}`)}, 1, 'seeder', ${q(title)}, ${q(summary)}, ${q(tags)}, NULL, 'public', 'published', ${at}, ${at}, ${n}, ${sum}, CAST(ROUND(((17.5 + ${sum}) / (5.0 + ${n})) * 1000000.0) AS INTEGER))`);
    }
    lines.push(`INSERT INTO listings (id, org, lesson_id, version, author_id, title, summary, tags, price_cents, visibility, status, created_at, updated_at, rating_count, rating_sum, rank) VALUES\n${values.join(",\n")};`);
  }
  return lines.join("\n");
}

async function sample(api, n, pathFor, opts = {}) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const path = pathFor(i);
    const t0 = process.hrtime.bigint();
    const r = await api.call("GET", path, opts);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (r.status !== 200) throw new Error(`${path}: ${r.status} ${r.text.slice(0, 200)}`);
    out.push({ ms, path, t: timing(r.headers), bytes: Buffer.byteLength(r.text) });
  }
  return out;
}

/** `sample`, each request after a baseline `/ping` (kept in `floor`): the
 *  floor sees the same machine load as the reads it is compared with; with
 *  `ref`, each is followed by the baseline's read of the same bytes
 *  (`ref.pathFor`, samples kept in `ref.into`). */
async function sampleBeside(ping, floor, api, n, pathFor, ref) {
  const out = [];
  for (let i = 0; i < n; i++) {
    floor.push(...(await sample(ping, 1, () => "/ping")));
    out.push(...(await sample(api, 1, () => pathFor(i))));
    if (ref) ref.into.push(...(await sample(ping, 1, () => ref.pathFor(i))));
  }
  return out;
}

/** The baseline keeps each of our answers (the same bytes) as a cached
 *  entry, for its least consistent edge read (`GET /edge/{key}`). */
async function keepForBaseline(api, ping, paths) {
  for (const [key, path] of paths) {
    const r = await api.call("GET", path);
    if (r.status !== 200) throw new Error(`${path}: ${r.status}`);
    const kept = await ping.call("PUT", `/edge/${key}`, { body: { body: r.text } });
    if (kept.status !== 200) throw new Error(`baseline /edge/${key}: ${kept.status} ${kept.text}`);
  }
}

/** Everything measured; `ping` is the baseline worker's client. */
export async function readPath(ping) {
  const dir = mkdtempSync(join(tmpdir(), "dropple-readpath-"));
  migrate(dir);
  const sqlFile = join(dir, "seed.sql");
  writeFileSync(sqlFile, seedSql());
  const seeded = spawnSync(join(ROOT, "node_modules/.bin/wrangler"), ["d1", "execute", "DB", "--local", "--persist-to", dir, "--file", sqlFile], {
    cwd: ROOT, encoding: "utf8", timeout: 600_000, env: { ...process.env, CI: "true", WRANGLER_SEND_METRICS: "false" },
  });
  if (seeded.status !== 0) throw new Error(`seeding listings failed: ${seeded.stdout}\n${seeded.stderr}`);
  const w = await startWorker({ persistDir: dir });
  try {
    const api = client(w.base);
    // One real public lesson (R2 artifact) for frame reads.
    const author = await api.token("rp-author", "rp", ["author"]);
    const reviewer = await api.token("rp-reviewer", "rp", ["reviewer"]);
    const governor = await api.token("rp-gov", "rp", ["governor"]);
    const timeline = Array.from({ length: 40 }, (_, i) => ({ type: "element.added", payload: { id: `e${i}`, kind: "box", x: i, y: i } }));
    const lesson = (await api.call("POST", "/v1/lessons", { token: author, body: { title: "Frames", summary: "read path", timeline } })).json;
    const listing = (await api.call("POST", "/v1/marketplace/listings", { token: author, body: { lesson_id: lesson.lesson_id, version: 1, visibility: "public" } })).json.listing_id;
    await api.call("POST", `/v1/marketplace/listings/${listing}/decisions`, { token: reviewer, body: { decision: "approve" } });
    const pub = await api.call("POST", `/v1/marketplace/listings/${listing}/decisions`, { token: governor, body: { decision: "publish" } });
    if (pub.status !== 200) throw new Error(`publish: ${pub.text}`);
    await explanationsDone(api, author, lesson.lesson_id, 1);

    const N = 200;
    const listPath = () => "/v1/marketplace/listings";
    const framePath = (i) => `/v1/lessons/${lesson.lesson_id}/versions/1/frames/${i % 41}`;
    // Warm: every entry cached, and both workers past their first requests
    // (V8 compiles hot wasm and JavaScript again, optimized, after some
    // calls): the steady state. A fresh instance's first answers are the
    // start rows' business.
    await sampleBeside(ping, [], api, 50, listPath);
    await sampleBeside(ping, [], api, 82, framePath); // every frame, twice
    // The least consistent edge read, in the baseline: the same bytes from
    // its Cache API behind a KV stamp read at the same time (warmed alike).
    await keepForBaseline(api, ping, [["list", listPath()], ...Array.from({ length: 41 }, (_, i) => [`frame-${i}`, framePath(i)])]);
    const listRef = { into: [], pathFor: () => "/edge/list" }, frameRef = { into: [], pathFor: (i) => `/edge/frame-${i % 41}` };
    await sampleBeside(ping, [], api, 50, listPath, { into: [], pathFor: listRef.pathFor });
    await sampleBeside(ping, [], api, 82, framePath, { into: [], pathFor: frameRef.pathFor });
    const floor = [];
    const list = await sampleBeside(ping, floor, api, N, listPath, listRef);
    const frame = await sampleBeside(ping, floor, api, N, framePath, frameRef);
    // Cold searches: a new query every time (text, tag, both; both orders).
    const r = rng(7);
    const searchPath = (i) => {
      const w1 = WORDS[Math.floor(r() * WORDS.length)], w2 = WORDS[Math.floor(r() * WORDS.length)];
      const tag = TAGS[Math.floor(r() * TAGS.length)];
      const sort = i % 2 ? "new" : "rating";
      const kinds = [`q=${w1}`, `tag=${tag}`, `q=${w1}%20${w2.slice(0, 4)}`, `q=${w1}&tag=${tag}`, ""];
      return `/v1/marketplace/listings?${kinds[i % kinds.length]}&sort=${sort}&limit=${10 + (i % 41)}`;
    };
    const search = await sample(api, N, searchPath);
    // The same with a far primary: warm reads should not notice.
    const far = await api.call("PUT", "/v1/dev/faults", { body: { d1_delay_ms: 150 } });
    if (far.status !== 200) throw new Error(`fault switch: ${far.text}`);
    const listFar = await sampleBeside(ping, floor, api, N, listPath);
    const searchFar = await sample(api, 20, (i) => searchPath(1000 + i));
    await api.call("PUT", "/v1/dev/faults", { body: { d1_delay_ms: 0 } });
    const warmD1 = [...list, ...frame, ...listFar].map((s) => s.t.d1);
    const misses = search.filter((s) => s.t.cache !== "miss").length;
    return {
      floor: floor.map((s) => s.ms),
      list: list.map((s) => s.ms),
      frame: frame.map((s) => s.ms),
      listRef: listRef.into.map((s) => s.ms),
      frameRef: frameRef.into.map((s) => s.ms),
      bodyBytes: { list: list[0]?.bytes, frame: Math.round(frame.reduce((a, s) => a + s.bytes, 0) / frame.length) },
      listFar: listFar.map((s) => s.ms),
      search: search.map((s) => s.ms),
      searchFar: searchFar.map((s) => s.ms),
      searchRows: search.map((s) => s.t.d1_rows),
      searchHeaviest: [...search].sort((a, b) => b.ms - a.ms).slice(0, 8).map((s) => `${s.t.d1_rows} rows ${s.ms.toFixed(0)} ms ${s.path}`),
      searchStatements: search.map((s) => s.t.d1),
      warmD1Max: Math.max(...warmD1),
      warmHits: [...list, ...frame, ...listFar].filter((s) => s.t.cache === "hit").length,
      warmCount: warmD1.length,
      searchNotMiss: misses,
      pct,
    };
  } finally {
    await w.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
