// Foundation: health, the error mapping, JWT acceptance and every rejection,
// dev tokens, and start/stop of the real worker on local workerd.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { startWorker, client, ROOT } from "./support/worker.mjs";

let w, api;
// Log level "log": the worker's own request log lines are read back below.
before(async () => { w = await startWorker({ logLevel: "log" }); api = client(w.base); });
after(async () => { await w?.stop(); });

const b64 = (o) => Buffer.from(typeof o === "string" ? o : JSON.stringify(o)).toString("base64url");
const secret = readFileSync(join(ROOT, ".dev.vars"), "utf8").match(/^AUTH_SECRET=(.*)$/m)[1];
function sign(header, claims, key = secret) {
  const input = `${b64(header)}.${b64(claims)}`;
  return `${input}.${createHmac("sha256", key).update(input).digest("base64url")}`;
}
const now = () => Math.floor(Date.now() / 1000);

function assertError(r, status, code) {
  assert.equal(r.status, status, r.text);
  assert.match(r.headers.get("content-type") ?? "", /application\/json/);
  assert.equal(typeof r.json?.error?.code, "string", r.text);
  assert.equal(typeof r.json.error.message, "string");
  if (code) assert.equal(r.json.error.code, code);
}

test("health answers ok with a version", async () => {
  const r = await api.call("GET", "/v1/health");
  assert.equal(r.status, 200);
  assert.equal(r.json.ok, true);
  assert.match(r.json.version, /^\d+\.\d+\.\d+/);
});

test("unknown routes are 404 JSON, wrong methods 405", async () => {
  assertError(await api.call("GET", "/v1/nope"), 404, "not_found");
  assertError(await api.call("GET", "/v1/runs/x/y/z/w"), 404);
  assertError(await api.call("DELETE", "/v1/health"), 405, "method_not_allowed");
  assertError(await api.call("GET", "/v1/runs"), 405, "method_not_allowed");
});

test("malformed JSON is 400 and oversized bodies 413", async () => {
  const token = await api.token("ana", "acme", ["author"]);
  assertError(await api.call("POST", "/v1/runs", { token, raw: "{not json", headers: { "content-type": "application/json" } }), 400, "malformed_json");
  assertError(await api.call("POST", "/v1/runs", { token, raw: "[1,2]" }), 400, "malformed_json");
  assertError(await api.call("POST", "/v1/runs", { token, raw: "" }), 400, "malformed_json");
  assertError(await api.call("POST", "/v1/runs", { token, raw: "x".repeat(1024 * 1024 + 1) }), 413, "payload_too_large");
});

test("a valid token is accepted", async () => {
  const token = sign({ alg: "HS256", typ: "JWT" }, { sub: "ana", org: "acme", roles: ["author"], exp: now() + 60 });
  const r = await api.call("POST", "/v1/runs", { token, body: {} });
  assert.equal(r.status, 201, r.text);
});

test("every bad token is 401", async () => {
  const claims = { sub: "ana", org: "acme", roles: ["author"], exp: now() + 60 };
  const good = sign({ alg: "HS256", typ: "JWT" }, claims);
  const cases = {
    missing: undefined,
    "bad signature": sign({ alg: "HS256", typ: "JWT" }, claims, "another-secret-entirely"),
    "alg none": `${b64({ alg: "none", typ: "JWT" })}.${b64(claims)}.`,
    expired: sign({ alg: "HS256", typ: "JWT" }, { ...claims, exp: now() - 1 }),
    malformed: "not.a.token",
    "two parts": good.split(".").slice(0, 2).join("."),
    "forged claims": `${good.split(".")[0]}.${b64({ ...claims, roles: ["governor"] })}.${good.split(".")[2]}`,
    "bad sub": sign({ alg: "HS256", typ: "JWT" }, { ...claims, sub: "../x" }),
  };
  for (const [name, token] of Object.entries(cases)) {
    const r = await api.call("POST", "/v1/runs", { token, body: {} });
    assert.equal(r.status, 401, `${name}: ${r.text}`);
    assert.equal(r.json.error.code, "unauthorized");
  }
});

test("dev tokens validate their input", async () => {
  assertError(await api.call("POST", "/v1/dev/tokens", { body: { sub: "a", org: "o", roles: ["wizard"] } }), 400);
  assertError(await api.call("POST", "/v1/dev/tokens", { body: { sub: "a/b", org: "o", roles: [] } }), 400);
  assertError(await api.call("POST", "/v1/dev/tokens", { body: { sub: "a", org: "o", roles: [], extra: 1 } }), 400);
});

test("one structured JSON log line per request: method, route, status, duration, org", async () => {
  const token = await api.token("ana", "acme", ["author"]);
  const run = (await api.call("POST", "/v1/runs", { token, body: {} })).json.run_id;
  await api.call("GET", `/v1/runs/${run}/events`, { token });
  const deadline = Date.now() + 5000;
  let line;
  while (!line && Date.now() < deadline) {
    line = w.log().split("\n").map((l) => l.slice(l.indexOf("{"))).filter((l) => l.startsWith("{"))
      .map((l) => { try { return JSON.parse(l); } catch { return null; } })
      .find((l) => l?.route === "/v1/runs/:id/events" && l.method === "GET");
    if (!line) await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(line, w.log().slice(-2000));
  assert.equal(line.status, 200);
  assert.equal(line.org, "acme");
  assert.equal(typeof line.ms, "number");
  assert.ok(!w.log().includes(token), "tokens never reach the log");
});

test("dev tokens are off outside development; the body limit is configurable", async () => {
  const prod = await startWorker({ vars: { ENVIRONMENT: "production", MAX_BODY_BYTES: "2000" } });
  try {
    const r = await client(prod.base).call("POST", "/v1/dev/tokens", { body: { sub: "a", org: "o", roles: ["author"] } });
    assertError(r, 404, "not_found");
    assert.equal((await client(prod.base).call("GET", "/v1/health")).status, 200);
    const token = sign({ alg: "HS256", typ: "JWT" }, { sub: "ana", org: "acme", roles: ["author"], exp: now() + 60 });
    const small = await client(prod.base).call("POST", "/v1/runs", { token, body: { kind: "x".repeat(10) } });
    assert.equal(small.status, 201, small.text);
    const big = await client(prod.base).call("POST", "/v1/runs", { token, raw: JSON.stringify({ kind: "x".repeat(2100) }) });
    assertError(big, 413, "payload_too_large");
  } finally {
    await prod.stop();
  }
  // Stopped means stopped: the port no longer answers.
  await assert.rejects(fetch(`${prod.base}/v1/health`, { signal: AbortSignal.timeout(2000) }));
});
