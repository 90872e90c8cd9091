// Benchmark baseline: a minimal plain-JavaScript Worker doing the same jobs as
// Dropple Edge with nothing on top (no auth, no validation beyond what keeps
// the answers meaningful, no build step, no dependencies). Its numbers are the
// floor the product's numbers are compared with.
//
//   GET  /ping                 {"ok":true}: the API-latency floor
//   GET  /room/{name}/ws       WebSocket into the broadcast room `name`
//   GET  /droom/{name}/ws      the durable room: each message appended to the
//                              room's SQLite storage, then relayed
//   POST /run                  {"run_id","org"}: creates the `runs` row
//   POST /insert               {"run_id","org","rows":[...]}: raw D1 inserts, one batch
//   GET  /scan?run_id=         reads every event of the run in seq order
//   PUT  /edge/{key}           {"body"}: keeps `body` as a cached entry under the current stamp
//   GET  /edge/{key}           the least a consistent cached read at the edge does:
//                              the stamp (KV) and the entry (Cache API) at once,
//                              the entry's body if it was kept under that stamp

import { DurableObject } from "cloudflare:workers";

// A hibernating broadcast room, modelled on cloudflare/workers-chat-demo
// (src/chat.mjs) with everything but the relay removed: no names, no
// history, no storage. Each message goes unchanged to every other socket.
export class Room extends DurableObject {
  async fetch(request) {
    if (request.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return json({ error: "expected a WebSocket upgrade" }, 426);
    }
    const [client, server] = Object.values(new WebSocketPair());
    // The hibernation API: the runtime owns the socket and calls the
    // webSocket* handlers below, so an idle room can be evicted from memory.
    this.ctx.acceptWebSocket(server);
    return new Response(null, { status: 101, webSocket: client });
  }

  webSocketMessage(ws, message) {
    for (const other of this.ctx.getWebSockets()) {
      if (other === ws) continue;
      try {
        other.send(message);
      } catch {
        // The peer is closing: its own webSocketClose/webSocketError follows.
      }
    }
  }

  // With this compatibility date the runtime does not answer a client's
  // close frame by itself: close our side to complete the handshake.
  webSocketClose(ws) {
    closeQuietly(ws);
  }

  webSocketError(ws) {
    closeQuietly(ws);
  }
}

// The fair reference for a product that commits every event before it
// broadcasts it: the same relay, but each message is first appended (with its
// seq) to the object's SQLite storage, as a durable room must. Nothing else:
// no auth, no parsing, no protocol.
export class DurableRoom extends Room {
  constructor(ctx, env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec("CREATE TABLE IF NOT EXISTS log (seq INTEGER PRIMARY KEY, body TEXT NOT NULL)");
  }

  webSocketMessage(ws, message) {
    this.sql.exec("INSERT INTO log (body) VALUES (?)", typeof message === "string" ? message : "");
    super.webSocketMessage(ws, message);
  }
}

function closeQuietly(ws) {
  try {
    ws.close(1000, "bye");
  } catch {
    // Already closed.
  }
}

// A cached read that honours a write at once in its location (API.md,
// Marketplace) must learn the current stamp on every read: one KV read,
// made at the same time as the Cache API lookup. Nothing else: no auth, no
// routing, no metering.
const EDGE_STAMP = "edge-stamp";
const edgeUrl = (key) => `https://edge-cache.baseline.invalid/${encodeURIComponent(key)}`;

async function keepEdgeEntry(env, key, body) {
  if (typeof body !== "string") throw new BadRequest("body: a string is required");
  let stamp = await env.KV.get(EDGE_STAMP);
  if (stamp === null) {
    stamp = String(Date.now());
    await env.KV.put(EDGE_STAMP, stamp);
  }
  await caches.default.put(edgeUrl(key), new Response(body, {
    headers: { "content-type": "application/json", "cache-control": "public, max-age=3600", "x-entry-stamp": stamp },
  }));
  return { ok: true };
}

async function edgeRead(env, key) {
  const [stamp, hit] = await Promise.all([env.KV.get(EDGE_STAMP), caches.default.match(edgeUrl(key))]);
  if (!hit || hit.headers.get("x-entry-stamp") !== stamp) return json({ error: "miss" }, 404);
  return new Response(hit.body, { headers: { "content-type": "application/json" } });
}

function json(body, status = 200) {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });
}

class BadRequest extends Error {}

async function readJson(request) {
  try {
    return await request.json();
  } catch {
    throw new BadRequest("the body is not JSON");
  }
}

function requireString(value, name) {
  if (typeof value !== "string" || value === "") throw new BadRequest(`${name}: a non-empty string is required`);
  return value;
}

// The same INSERT per row that the product's writer binds (8 values each).
const INSERT_EVENT =
  "INSERT INTO events (run_id, seq, id, type, payload, timestamp, author_id, org) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

async function insertEvents(env, body) {
  const runId = requireString(body.run_id, "run_id");
  const org = requireString(body.org, "org");
  if (!Array.isArray(body.rows) || body.rows.length === 0) throw new BadRequest("rows: a non-empty array is required");
  const insert = env.DB.prepare(INSERT_EVENT);
  const statements = body.rows.map((r) =>
    insert.bind(runId, r.seq, r.id, r.type, JSON.stringify(r.payload ?? {}), r.timestamp, r.author_id, org),
  );
  // One batch: D1 runs it as one transaction, like the product's append.
  await env.DB.batch(statements);
  return { inserted: statements.length };
}

async function createRun(env, body) {
  const runId = requireString(body.run_id, "run_id");
  const org = requireString(body.org, "org");
  // `events` has no foreign key to `runs`, so inserts work without this row;
  // it exists so a benchmark can set up the same rows the product has.
  await env.DB.prepare(
    "INSERT OR IGNORE INTO runs (id, org, kind, creator, created_at) VALUES (?1, ?2, 'bench', 'bench', ?3)",
  )
    .bind(runId, org, Date.now())
    .run();
  return { ok: true };
}

async function scan(env, url) {
  const runId = requireString(url.searchParams.get("run_id") ?? "", "run_id");
  const { results } = await env.DB.prepare(
    "SELECT id, seq, type, payload, timestamp, author_id FROM events WHERE run_id = ?1 ORDER BY seq",
  )
    .bind(runId)
    .all();
  return { rows: results.length };
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const method = request.method;
    const durable = url.pathname.match(/^\/droom\/([^/]+)\/ws$/);
    if (durable && method === "GET") {
      return env.DURABLE_ROOM.get(env.DURABLE_ROOM.idFromName(decodeURIComponent(durable[1]))).fetch(request);
    }
    const room = url.pathname.match(/^\/room\/([^/]+)\/ws$/);
    const edge = url.pathname.match(/^\/edge\/([^/]+)$/);
    try {
      if (edge && method === "GET") return await edgeRead(env, decodeURIComponent(edge[1]));
      if (edge && method === "PUT") return json(await keepEdgeEntry(env, decodeURIComponent(edge[1]), (await readJson(request)).body));
      if (room && method === "GET") {
        return env.ROOM.get(env.ROOM.idFromName(decodeURIComponent(room[1]))).fetch(request);
      }
      switch (`${method} ${url.pathname}`) {
        case "GET /ping":
          return json({ ok: true });
        case "POST /run":
          return json(await createRun(env, await readJson(request)));
        case "POST /insert":
          return json(await insertEvents(env, await readJson(request)));
        case "GET /scan":
          return json(await scan(env, url));
        default:
          return json({ error: "not found" }, 404);
      }
    } catch (e) {
      if (e instanceof BadRequest) return json({ error: e.message }, 400);
      return json({ error: String(e?.message ?? e) }, 500);
    }
  },
};
