// The documented contract against the real worker: schema/openapi.yaml and the
// JSON Schemas under schema/ are checked statically (OpenAPI 3.1, every $ref
// resolves, every schema compiles in Ajv's strict mode), for coverage in both
// directions (every documented path + method is served; every route of the
// router, read from src/edge/*.rs, is documented with every method it serves),
// and against real traffic: every HTTP response this suite receives must have a
// documented status and match its documented body schema; artifacts, events,
// credentials, errors and WebSocket / SSE messages of a real session validate
// against their JSON Schemas.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { randomUUID, createHash } from "node:crypto";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { parse as parseYaml } from "yaml";
import { startWorker, client, ROOT } from "./support/worker.mjs";
import { openSocket } from "./support/ws.mjs";
import { jcs } from "./support/jcs-verify.mjs";
import { DEMO_LESSON } from "../scripts/seed.mjs";

// ---------------------------------------------------------------- documents

const SCHEMA_DIR = join(ROOT, "schema");
const BASE = "https://dropple.example/schema/";
const OPENAPI_TEXT = readFileSync(join(SCHEMA_DIR, "openapi.yaml"), "utf8");
const doc = parseYaml(OPENAPI_TEXT);
const FILES = readdirSync(SCHEMA_DIR).filter((f) => f.endsWith(".schema.json")).sort();
const schemaFiles = Object.fromEntries(FILES.map((f) => [f, JSON.parse(readFileSync(join(SCHEMA_DIR, f), "utf8"))]));
const METHODS = ["get", "head", "post", "put", "patch", "delete", "options"];

const ajv = new Ajv2020({ strict: true, allErrors: true, allowUnionTypes: true });
addFormats(ajv);
for (const s of Object.values(schemaFiles)) ajv.addSchema(s);

/** The $ref target, or undefined. `from` is the document the ref appears in. */
function resolveRef(ref, from) {
  const [file, fragment = ""] = ref.split("#");
  const name = file.replace(/^\.\//, "");
  const target = file === "" ? from : name === "openapi.yaml" ? doc : schemaFiles[name];
  if (target === undefined) return undefined;
  let node = target;
  for (const raw of fragment.split("/").slice(1)) {
    const key = decodeURIComponent(raw).replaceAll("~1", "/").replaceAll("~0", "~");
    if (node === null || typeof node !== "object" || !(key in node)) return undefined;
    node = node[key];
  }
  return node;
}

function* walk(node, path = "") {
  if (node === null || typeof node !== "object") return;
  yield [node, path];
  for (const [k, v] of Object.entries(node)) yield* walk(v, `${path}/${k}`);
}

/** An OpenAPI object (response, parameter, header) with its $ref followed. */
const deref = (o) => (o && o.$ref ? deref(resolveRef(o.$ref, doc)) : o);

/** Schemas inside openapi.yaml refer to components as `#/components/schemas/X`
 * and to the files as `./x.schema.json`: register the components as one schema
 * beside the files so both resolve. */
function rewriteRefs(node) {
  if (Array.isArray(node)) return node.map(rewriteRefs);
  if (node === null || typeof node !== "object") return node;
  const out = {};
  for (const [k, v] of Object.entries(node)) {
    if (k === "$ref" && typeof v === "string" && v.startsWith("#/components/schemas/")) {
      out[k] = `openapi-components.json#/$defs/${v.slice("#/components/schemas/".length)}`;
    } else if (k === "$ref" && typeof v === "string" && v.startsWith("#")) {
      throw new Error(`a schema in openapi.yaml refers to ${v}; only #/components/schemas/… and the files are allowed`);
    } else out[k] = rewriteRefs(v);
  }
  return out;
}
ajv.addSchema({ $id: `${BASE}openapi-components.json`, $defs: rewriteRefs(doc.components.schemas) });

const compiled = new Map();
/** Compile a schema found in openapi.yaml (cached by its location). */
function openapiValidator(schema, where) {
  if (!compiled.has(where)) {
    compiled.set(where, ajv.compile({ ...rewriteRefs(schema), $id: `${BASE}openapi-inline-${compiled.size}.json` }));
  }
  return compiled.get(where);
}
const fileValidator = (ref) => {
  const v = ajv.getSchema(BASE + ref);
  assert.ok(v, `no schema ${ref}`);
  return v;
};

let validations = 0;
function assertValid(validate, data, what) {
  validations++;
  const ok = validate(data);
  assert.ok(ok, `${what} does not match its schema: ${ajv.errorsText(validate.errors, { separator: "\n  " })}\n` +
    `data: ${JSON.stringify(data).slice(0, 1500)}`);
}
const validAgainst = (ref, data, what = ref) => assertValid(fileValidator(ref), data, what);

// ---------------------------------------------------------------- traffic

let w, api;
const T = {};
const sockets = [];
/** Every (method template status) this suite saw answered, and the error statuses validated. */
const seen = new Set();
const errorStatuses = new Set();

const fill = (template, params = {}) => template.replace(/\{([^}]+)\}/g, (_, name) => {
  assert.ok(params[name] !== undefined, `no value for {${name}} in ${template}`);
  return encodeURIComponent(String(params[name]));
});

/** Check one HTTP answer against the documented operation. */
function conform(method, template, r, opts = {}) {
  const op = doc.paths[template]?.[method.toLowerCase()];
  assert.ok(op, `${method} ${template} is not documented`);
  const resp = deref(op.responses[String(r.status)]);
  assert.ok(resp, `${method} ${template} answered ${r.status}, an undocumented status: ${r.text?.slice(0, 300)}`);
  seen.add(`${method} ${template} ${r.status}`);
  const contentType = r.headers.get("content-type") ?? "";
  if (r.status >= 400 && method !== "HEAD") {
    assert.match(contentType, /^application\/json/, `${method} ${template} ${r.status} is not JSON`);
    validAgainst("error.schema.json", r.json, `the ${r.status} body of ${method} ${template}`);
    errorStatuses.add(r.status);
  }
  for (const name of Object.keys(resp.headers ?? {})) {
    if (["Retry-After", "ETag", "Cache-Control", "Location", "X-Cache", "X-Available-Decisions", "Content-Range"].includes(name)) {
      assert.ok(r.headers.has(name), `${method} ${template} ${r.status} lacks the documented header ${name}`);
    }
  }
  const media = resp.content?.["application/json"];
  if (media?.schema && method !== "HEAD" && r.status !== 101) {
    assert.match(contentType, /^application\/json/, `${method} ${template} ${r.status}: content-type ${contentType}`);
    assertValid(openapiValidator(media.schema, `${template} ${method} ${r.status}`), r.json,
      `the ${r.status} body of ${method} ${template}`);
  } else if (resp.content && method !== "HEAD" && r.status !== 304) {
    const types = Object.keys(resp.content);
    assert.ok(types.some((t) => contentType.startsWith(t.split(";")[0]) || t === "application/octet-stream"),
      `${method} ${template} ${r.status}: content-type ${contentType} is not one of ${types}`);
  }
  const reqSchema = op.requestBody?.content?.["application/json"]?.schema;
  if (opts.body !== undefined && reqSchema && r.status < 300) {
    assertValid(openapiValidator(reqSchema, `${template} ${method} request`), opts.body,
      `the accepted request body of ${method} ${template}`);
  }
}

/** A documented call: `template` is an openapi.yaml path. */
async function call(method, template, params = {}, opts = {}) {
  const query = opts.query ? `?${new URLSearchParams(opts.query)}` : "";
  const r = await api.call(method, fill(template, params) + query, opts);
  conform(method, template, r, opts);
  return r;
}

const isUnknownRoute = (r) => r.status === 404 && r.json?.error?.code === "not_found" && r.json?.error?.message === "route not found";
const isMethodRefused = (r, method = "GET") => r.status === 405 && (method === "HEAD" || r.json?.error?.code === "method_not_allowed");

async function eventually(fn, ms = 15_000) {
  const end = Date.now() + ms;
  for (;;) {
    try { return await fn(); } catch (e) { if (Date.now() > end) throw e; }
    await new Promise((r) => setTimeout(r, 150));
  }
}

before(async () => {
  // Small plan limits so 402 and 429 are cheap to reach: one open session and
  // one counted AI job per minute per org (publish-time explanations are not counted).
  w = await startWorker({ vars: { PLAN_OVERRIDES: JSON.stringify({ free: { live_sessions: 1, ai_jobs_per_minute: 1 } }) } });
  api = client(w.base);
  T.author = await api.token("ana", "acme", ["author"]);
  T.teacher = await api.token("tom", "acme", ["teacher"]);
  T.learner = await api.token("lea", "acme", ["learner"]);
  T.reviewer = await api.token("rex", "acme", ["reviewer"]);
  T.governor = await api.token("gil", "acme", ["governor"]);
  T.probe = await api.token("pat", "probe", ["author", "teacher", "reviewer", "learner", "governor"]);
  T.uAuthor = await api.token("uma", "umbrella", ["author"]);
  T.uTeacher = await api.token("ugo", "umbrella", ["teacher"]);
  T.uLearner = await api.token("ula", "umbrella", ["learner"]);
});
after(async () => {
  for (const s of sockets) { try { s.ws.close(); } catch {} }
  await w?.stop();
});

// ---------------------------------------------------------------- static

test("openapi.yaml is OpenAPI 3.1, well-formed, and every $ref resolves", () => {
  assert.match(doc.openapi, /^3\.1\.\d+$/);
  assert.ok(doc.info?.title && doc.info?.version);
  assert.ok(doc.components.securitySchemes.bearerAuth.scheme === "bearer");
  let refs = 0;
  for (const [node, path] of walk(doc)) {
    if (typeof node.$ref === "string") {
      refs++;
      assert.notEqual(resolveRef(node.$ref, doc), undefined, `openapi.yaml${path}: $ref ${node.$ref} does not resolve`);
    }
  }
  for (const [file, schema] of Object.entries(schemaFiles)) {
    for (const [node, path] of walk(schema)) {
      if (typeof node.$ref === "string") {
        refs++;
        assert.notEqual(resolveRef(node.$ref, schema), undefined, `${file}${path}: $ref ${node.$ref} does not resolve`);
      }
    }
  }
  assert.ok(refs > 100, `only ${refs} $refs`);
  const operationIds = new Set();
  const tags = new Set(doc.tags.map((t) => t.name));
  for (const [template, item] of Object.entries(doc.paths)) {
    assert.match(template, /^\/v1\//);
    const pathParams = [...template.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
    for (const method of METHODS.filter((m) => item[m])) {
      const op = item[method];
      const where = `${method.toUpperCase()} ${template}`;
      assert.ok(op.operationId && !operationIds.has(op.operationId), `${where}: missing or duplicate operationId`);
      operationIds.add(op.operationId);
      assert.ok(op.summary, `${where}: no summary`);
      for (const t of op.tags ?? []) assert.ok(tags.has(t), `${where}: unknown tag ${t}`);
      const params = [...(item.parameters ?? []), ...(op.parameters ?? [])].map(deref);
      const declared = params.filter((p) => p.in === "path").map((p) => p.name);
      assert.deepEqual([...declared].sort(), [...pathParams].sort(), `${where}: path parameters`);
      for (const p of params) assert.ok(p.schema, `${where}: parameter ${p.name} has no schema`);
      assert.ok(Object.keys(op.responses).length > 0, `${where}: no responses`);
      for (const [status, r] of Object.entries(op.responses)) {
        assert.match(status, /^[1-5]\d\d$/, `${where}: status ${status}`);
        assert.ok(deref(r).description, `${where} ${status}: no description`);
        if (Number(status) >= 400) {
          const schema = deref(r).content?.["application/json"]?.schema;
          if (schema) assert.deepEqual(schema, { $ref: "#/components/schemas/Error" }, `${where} ${status}: errors use the one Error schema`);
        }
      }
      for (const req of op.security ?? doc.security) {
        for (const scheme of Object.keys(req)) assert.ok(doc.components.securitySchemes[scheme], `${where}: unknown scheme ${scheme}`);
      }
    }
  }
  assert.deepEqual(deref(doc.components.responses.TooManyRequests).headers["Retry-After"].$ref, "#/components/headers/RetryAfter");
  assert.equal(doc.components.schemas.Error.$ref, "./error.schema.json");
});

test("every JSON Schema file is draft 2020-12 and compiles in strict mode; every schema in openapi.yaml compiles", () => {
  for (const name of ["lesson", "event", "ws-client-message", "ws-server-message", "credential", "error"]) {
    assert.ok(schemaFiles[`${name}.schema.json`], `schema/${name}.schema.json is missing`);
  }
  for (const [file, schema] of Object.entries(schemaFiles)) {
    assert.equal(schema.$schema, "https://json-schema.org/draft/2020-12/schema", file);
    assert.equal(schema.$id, BASE + file, `${file}: $id`);
    assert.ok(schema.description, `${file}: no description`);
    assert.ok(ajv.getSchema(schema.$id), `${file} does not compile`);
    for (const [, def] of Object.entries(schema.$defs ?? {})) assert.ok(typeof def === "object");
    for (const name of Object.keys(schema.$defs ?? {})) assert.ok(ajv.getSchema(`${schema.$id}#/$defs/${name}`), `${file}#/$defs/${name}`);
  }
  let n = 0;
  for (const [node, path] of walk(doc.paths)) {
    if (node.schema && typeof node.schema === "object" && !path.endsWith("/properties")) {
      openapiValidator(node.schema, `static ${path}`);
      n++;
    }
  }
  for (const name of Object.keys(doc.components.schemas)) assert.ok(ajv.getSchema(`${BASE}openapi-components.json#/$defs/${name}`), name);
  assert.ok(n > 80, `only ${n} schemas in paths`);
});

test("the schemas are not vacuous: they refuse what the worker refuses", () => {
  const artifact = {
    format: "dropple.lesson/1", lesson_id: "l1", version: 1, title: "T", summary: "", tags: ["a"], language: "en",
    author_id: "ana", org: "acme", created_at: "2026-01-01T00:00:00.000Z",
    timeline: [{ type: "element.added", payload: { id: "a", kind: "box", x: 1, y: 2 } }],
    quiz: [{ id: "q1", prompt: "?", choices: ["a", "b"], answer: 0 }], pass_threshold: 0.7, sha256: "0".repeat(64),
  };
  const lesson = fileValidator("lesson.schema.json");
  assert.equal(lesson(artifact), true, ajv.errorsText(lesson.errors));
  const bad = [
    (a) => { delete a.sha256; },
    (a) => { a.pass_threshold = 1.5; },
    (a) => { a.title = "   "; },
    (a) => { a.title = "x".repeat(201); },
    (a) => { a.tags = Array.from({ length: 21 }, (_, i) => `t${i}`); },
    (a) => { a.timeline[0].payload.x = "1"; },
    (a) => { a.timeline[0].type = "teleport"; },
    (a) => { a.timeline = [{ type: "narration", payload: { text: "" } }]; },
    (a) => { a.quiz[0].choices = ["only"]; },
    (a) => { a.sha256 = "ABC"; },
    (a) => { a.language = "e"; },
    (a) => { a.extra = 1; },
  ];
  for (const mutate of bad) {
    const a = structuredClone(artifact);
    mutate(a);
    assert.equal(lesson(a), false, `accepted ${mutate}`);
  }
  const client = fileValidator("ws-client-message.schema.json");
  for (const m of [{ type: "hello" }, { type: "cursor", step: 2, x: 1.5 }, { type: "ask", text: "why?" }, { type: "ping" },
    { type: "annotate", kind: "arrow", points: [[0, 0], [1, 1]] }, { type: "respond", question_id: "q1", choice: 0 }]) {
    assert.equal(client(m), true, `${JSON.stringify(m)}: ${ajv.errorsText(client.errors)}`);
  }
  for (const m of [{ type: "teleport" }, { type: "cursor" }, { type: "ask", text: " " }, { type: "ask", text: "x".repeat(2001) },
    { type: "respond", question_id: "q 1", choice: 0 }, { type: "annotate", kind: "a", points: [[0, 0, 0]] }, {}]) {
    assert.equal(client(m), false, `accepted ${JSON.stringify(m)}`);
  }
  const error = fileValidator("error.schema.json");
  assert.equal(error({ error: { code: "not_found", message: "run not found" } }), true);
  for (const e of [{ error: { code: "NotFound", message: "x" } }, { error: { code: "x" } }, { code: "x", message: "y" }]) {
    assert.equal(error(e), false, JSON.stringify(e));
  }
});

// ---------------------------------------------------------------- coverage

/** The router's path shapes, read from the match arms of src/edge/mod.rs
 * `route` and of the per-resource functions it delegates `rest @ ..` to. Each
 * shape is a list of segments: a string literal, or null for a parameter. The
 * parser fails loudly on any arm it does not understand, so a new routing style
 * cannot silently escape this check; the methods each shape serves are then
 * asked of the running worker (not parsed). */
function routerShapes() {
  const source = (file) => readFileSync(join(ROOT, "src", "edge", file), "utf8");
  const fnBody = (src, name, file) => {
    const at = src.search(new RegExp(`\\bfn ${name}\\s*[(<]`));
    assert.ok(at >= 0, `fn ${name} not found in src/edge/${file}`);
    let i = src.indexOf("{", src.indexOf(")", at));
    const start = i;
    let depth = 0;
    for (; i < src.length; i++) {
      const c = src[i];
      if (c === '"') { i++; while (i < src.length && src[i] !== '"') i += src[i] === "\\" ? 2 : 1; continue; }
      if (c === "/" && src[i + 1] === "/") { i = src.indexOf("\n", i); continue; }
      if (c === "{") depth++;
      if (c === "}" && --depth === 0) return src.slice(start, i + 1);
    }
    throw new Error(`unbalanced braces in fn ${name} of src/edge/${file}`);
  };
  const arms = (body) => [...body.matchAll(/^\s*(\[[^\]\n]*\](?:\s*\|\s*\[[^\]\n]*\])*)\s*(?:if [^=\n]*)?=>\s*([^\n]*)$/gm)]
    .map(([, patterns, rhs]) => ({
      alternatives: patterns.split("|").map((p) => p.trim().slice(1, -1).split(",").map((s) => s.trim()).filter(Boolean).map((seg) => {
        if (/^"[^"]*"$/.test(seg)) return { lit: seg.slice(1, -1) };
        if (/^[a-z_][a-z0-9_]*$/.test(seg)) return { param: seg };
        if (/^[a-z_][a-z0-9_]* @ \.\.$/.test(seg)) return { rest: true };
        throw new Error(`cannot read the route pattern segment ${seg} in ${patterns}`);
      })),
      rhs,
    }));
  const files = Object.fromEntries(readdirSync(join(ROOT, "src", "edge")).filter((f) => f.endsWith(".rs")).map((f) => [f.slice(0, -3), source(f)]));
  const shapes = [];
  const seenShape = new Set();
  const add = (segs) => {
    const key = segs.map((s) => (s.lit !== undefined ? s.lit : "{}")).join("/");
    if (!seenShape.has(key)) { seenShape.add(key); shapes.push(key); }
  };
  const rootArms = arms(fnBody(files.mod, "route", "mod.rs"));
  assert.ok(rootArms.length >= 10, "too few arms in src/edge/mod.rs route");
  for (const { alternatives, rhs } of rootArms) {
    for (const segs of alternatives) {
      if (!segs.at(-1)?.rest) { add(segs); continue; }
      const m = rhs.match(/^(\w+)::(\w+)\(ctx, rest\)/);
      assert.ok(m, `cannot follow the delegation ${rhs}`);
      const [, module, fn] = m;
      assert.ok(files[module], `no src/edge/${module}.rs`);
      const inner = arms(fnBody(files[module], fn, `${module}.rs`));
      assert.ok(inner.length > 0, `no route arms in ${module}::${fn}`);
      for (const arm of inner) {
        for (const tail of arm.alternatives) {
          assert.ok(!tail.some((s) => s.rest), `nested rest pattern in ${module}::${fn}`);
          add([...segs.slice(0, -1), ...tail]);
        }
      }
    }
  }
  return shapes;
}

const DUMMY = "00000000-0000-4000-8000-00000000d0d0";
const shapeOf = (template) => template.slice(1).split("/").map((s) => (s.startsWith("{") ? "{}" : s)).join("/");
const probePath = (shape) => `/${shape.split("/").map((s) => (s === "{}" ? DUMMY : s)).join("/")}`;
async function probe(method, path) {
  const withBody = !["GET", "HEAD", "OPTIONS"].includes(method);
  return api.call(method, path, { token: T.probe, ...(withBody ? { body: {} } : {}) });
}

test("every documented path and method is served by the worker", { timeout: 120_000 }, async () => {
  let ops = 0;
  for (const [template, item] of Object.entries(doc.paths)) {
    for (const method of METHODS.filter((m) => item[m])) {
      const M = method.toUpperCase();
      const op = item[method];
      const r = await probe(M, probePath(shapeOf(template)));
      ops++;
      assert.ok(!isUnknownRoute(r), `${M} ${template} is documented but the worker has no such route`);
      const statuses = Object.keys(op.responses);
      if (statuses.length === 1 && statuses[0] === "405") {
        assert.ok(isMethodRefused(r, M), `${M} ${template} is documented as refused (405) but answered ${r.status}`);
      } else {
        assert.ok(!isMethodRefused(r, M), `${M} ${template} is documented but the worker refuses the method: ${r.text}`);
      }
      // With dummy ids and an empty body, the answer must still be a documented one.
      conform(M, template, r, {});
    }
  }
  assert.ok(ops >= 55, `only ${ops} operations documented`);
});

test("every route of the router is documented, with every method it serves", { timeout: 180_000 }, async () => {
  const shapes = routerShapes();
  assert.ok(shapes.length >= 40, `only ${shapes.length} route shapes found in src/edge`);
  const documented = new Map(Object.entries(doc.paths).map(([t, item]) => [shapeOf(t), { template: t, item }]));
  const served = [];
  for (const shape of shapes) {
    const d = documented.get(shape);
    assert.ok(d, `the route /${shape} (src/edge) is not in openapi.yaml`);
    for (const method of METHODS) {
      const M = method.toUpperCase();
      const r = await probe(M, probePath(shape));
      if (isMethodRefused(r, M) || isUnknownRoute(r)) continue;
      served.push(`${M} /${shape}`);
      assert.ok(d.item[method], `${M} ${d.template} is served (answered ${r.status}) but not documented`);
    }
  }
  for (const shape of documented.keys()) assert.ok(shapes.includes(shape), `openapi.yaml documents /${shape}, which the router parse did not find`);
  assert.ok(served.length >= 50, `only ${served.length} served operations: ${served}`);
  // And an unknown route is reported as such (the distinction the checks above rely on).
  const unknown = await api.call("GET", "/v1/no-such-thing", { token: T.probe });
  assert.ok(isUnknownRoute(unknown), unknown.text);
  validAgainst("error.schema.json", unknown.json);
});

// ---------------------------------------------------------------- artifacts, runs, events

let lesson;
test("lesson artifacts as stored and as read by authors and learners match lesson.schema.json", { timeout: 120_000 }, async () => {
  assertValid(openapiValidator(doc.paths["/v1/lessons"].post.requestBody.content["application/json"].schema, "draft"), DEMO_LESSON, "DEMO_LESSON as a draft");
  const created = await call("POST", "/v1/lessons", {}, { token: T.author, body: DEMO_LESSON });
  assert.equal(created.status, 201, created.text);
  lesson = created.json;
  const p = { lesson_id: lesson.lesson_id, version: 1 };
  const full = await call("GET", "/v1/lessons/{lesson_id}/versions/{version}", p, { token: T.author });
  assert.equal(full.status, 200);
  validAgainst("lesson.schema.json", full.json, "the author's artifact");
  assert.ok(full.json.quiz.every((q) => "answer" in q), "the author sees the answer key");
  const { sha256, ...content } = full.json;
  assert.equal(createHash("sha256").update(jcs(content), "utf8").digest("hex"), sha256, "sha256 is the hash of the canonical JSON");
  assert.equal(full.headers.get("etag"), `"${sha256}"`);
  const reviewer = await call("GET", "/v1/lessons/{lesson_id}/versions/{version}", p, { token: T.reviewer });
  assert.deepEqual(reviewer.json, full.json);
  const seenByLearner = await call("GET", "/v1/lessons/{lesson_id}/versions/{version}", p, { token: T.learner });
  assert.equal(seenByLearner.status, 200);
  validAgainst("lesson.schema.json", seenByLearner.json, "the learner's artifact");
  assert.ok(seenByLearner.json.quiz.length > 0 && seenByLearner.json.quiz.every((q) => !("answer" in q)), "no answer key for learners");
  assert.equal(seenByLearner.json.sha256, sha256);
  const notModified = await call("GET", "/v1/lessons/{lesson_id}/versions/{version}", p, { token: T.learner, headers: { "if-none-match": `"${sha256}"` } });
  assert.equal(notModified.status, 304);

  const v2 = await call("POST", "/v1/lessons/{lesson_id}/versions", p, { token: T.author, body: { ...DEMO_LESSON, title: "Fractions, again", tags: [" Math ", "LINES"], language: "pt-BR", pass_threshold: null } });
  assert.equal(v2.status, 201, v2.text);
  const a2 = await call("GET", "/v1/lessons/{lesson_id}/versions/{version}", { ...p, version: 2 }, { token: T.author });
  validAgainst("lesson.schema.json", a2.json, "version 2");
  assert.deepEqual([a2.json.tags, a2.json.language, a2.json.pass_threshold], [["math", "lines"], "pt-BR", 0.7]);
  await call("GET", "/v1/lessons/{lesson_id}", p, { token: T.learner });
  await call("GET", "/v1/lessons", {}, { token: T.learner });
  for (const cursor of [0, 2, DEMO_LESSON.timeline.length]) {
    const f = await call("GET", "/v1/lessons/{lesson_id}/versions/{version}/frames/{cursor}", { ...p, cursor }, { token: T.learner });
    assert.equal(f.status, 200, f.text);
    const cached = await call("GET", "/v1/lessons/{lesson_id}/versions/{version}/frames/{cursor}", { ...p, cursor }, { token: T.learner, headers: { "if-none-match": f.headers.get("etag") } });
    assert.equal(cached.status, 304);
  }
  const past = await call("GET", "/v1/lessons/{lesson_id}/versions/{version}/frames/{cursor}", { ...p, cursor: 99 }, { token: T.learner });
  assert.equal(past.json.error.code, "frame_out_of_range");
  await call("GET", "/v1/lessons/{lesson_id}/versions/{version}/explanations", p, { token: T.learner });

  // Import round trip: the author's artifact is a valid draft and imports as is.
  const imported = await call("POST", "/v1/lessons/import", {}, { token: T.author, body: full.json });
  assert.equal(imported.status, 201, imported.text);
  const tampered = await call("POST", "/v1/lessons/import", {}, { token: T.author, body: { ...full.json, title: "Changed" } });
  assert.equal(tampered.status, 422);
  const invalid = await call("POST", "/v1/lessons", {}, { token: T.author, body: { ...DEMO_LESSON, pass_threshold: 2 } });
  assert.equal(invalid.status, 400);
  assert.match(invalid.json.error.message, /^pass_threshold/);
});

test("recorded runs: events match event.schema.json, export carries a source", { timeout: 120_000 }, async () => {
  const run = await call("POST", "/v1/runs", {}, { token: T.author, body: { kind: "recording" } });
  assert.equal(run.status, 201, run.text);
  const r = { run_id: run.json.run_id };
  const events = [
    { id: randomUUID().toUpperCase(), type: "element.added", payload: { id: "a", kind: "box", x: 1, y: 2, label: "A" } },
    { id: randomUUID(), type: "element.added", payload: { id: "b", kind: "box", x: 5.5, y: -2 } },
    { id: randomUUID(), type: "edge.added", payload: { id: "e", from: "a", to: "b" } },
    { id: randomUUID(), type: "narration", payload: { text: "A to B" } },
    { id: randomUUID(), type: "x_custom.marker", payload: {} },
    { id: randomUUID(), type: "chapter" , payload: { title: "End" } },
  ];
  const appended = await call("POST", "/v1/runs/{run_id}/events", r, { token: T.author, body: { events, expected_seq: 0 } });
  assert.equal(appended.status, 201, appended.text);
  const again = await call("POST", "/v1/runs/{run_id}/events", r, { token: T.author, body: { events: events.slice(0, 2) } });
  assert.equal(again.status, 200);
  assert.equal(again.json.duplicate, true);
  const conflict = await call("POST", "/v1/runs/{run_id}/events", r, { token: T.author, body: { events: [{ id: randomUUID(), type: "narration", payload: { text: "late" } }], expected_seq: 1 } });
  assert.equal(conflict.status, 409);
  const page = await call("GET", "/v1/runs/{run_id}/events", r, { token: T.author, query: { after: 0, limit: 4 } });
  assert.equal(page.json.next_after, 4);
  const all = await call("GET", "/v1/runs/{run_id}/events", r, { token: T.teacher });
  assert.equal(all.json.events.length, events.length);
  for (const e of all.json.events) validAgainst("event.schema.json", e, `event ${e.seq}`);
  assert.equal(all.json.events[0].id, events[0].id.toLowerCase());
  for (const M of ["PUT", "PATCH", "DELETE"]) {
    assert.equal((await call(M, "/v1/runs/{run_id}/events", r, { token: T.author, body: {} })).status, 405);
    assert.equal((await call(M, "/v1/runs/{run_id}/events/{event_id}", { ...r, event_id: all.json.events[0].id }, { token: T.author, body: {} })).status, 405);
  }
  await call("GET", "/v1/runs/{run_id}", r, { token: T.author });
  await call("GET", "/v1/runs/{run_id}/state", r, { token: T.author, query: { at_seq: 3 } });
  await call("GET", "/v1/runs/{run_id}/state", r, { token: T.author, query: { at: new Date().toISOString() } });
  assert.equal((await call("GET", "/v1/runs/{run_id}/state", r, { token: T.author, query: { at_seq: 99 } })).json.error.code, "seq_out_of_range");
  await call("GET", "/v1/runs/{run_id}/xapi", r, { token: T.author });
  assert.equal((await call("GET", "/v1/runs/{run_id}/verify", r, { token: T.author })).json.ok, true);
  // The operator paths (open in development): an archive pass, a restore page, a repair of an intact run.
  await call("POST", "/v1/ops/archive", {}, { body: {} });
  await call("GET", "/v1/ops/archive", {}, { query: { manifests: "false" } });
  assert.equal((await call("POST", "/v1/ops/restore", {}, { body: { phase: "runs", after: "~", limit: 5 } })).json.runs, 0);
  assert.deepEqual((await call("POST", "/v1/ops/repair", {}, { body: { run_id: r.run_id } })).json.repaired, []);

  const exported = await call("POST", "/v1/runs/{run_id}/export", r, { token: T.author, body: { title: "Exported", summary: "From a run" } });
  assert.equal(exported.status, 201, exported.text);
  const artifact = await call("GET", "/v1/lessons/{lesson_id}/versions/{version}", { lesson_id: exported.json.lesson_id, version: 1 }, { token: T.author });
  validAgainst("lesson.schema.json", artifact.json, "an exported artifact");
  assert.deepEqual(artifact.json.source, { run_id: r.run_id, from_seq: 1, to_seq: events.length });
  assert.equal(artifact.json.timeline.length, events.length - 1, "the custom event is left out");

  const empty = await call("POST", "/v1/runs", {}, { token: T.author, body: {} });
  const none = await call("POST", "/v1/runs/{run_id}/export", { run_id: empty.json.run_id }, { token: T.author, body: { title: "Nothing" } });
  assert.equal(none.status, 422);
});

// ---------------------------------------------------------------- live classroom

const wsUrl = (sid, token) => `${w.base.replace("http", "ws")}/v1/sessions/${sid}/ws?token=${token}`;
const serverMsgs = [];
const clientMsgs = [];
async function connect(sid, token) {
  const c = await openSocket(wsUrl(sid, token), { hello: false });
  seen.add("GET /v1/sessions/{session_id}/ws 101");
  c.ws.addEventListener("message", (ev) => serverMsgs.push(JSON.parse(ev.data)));
  const send = c.send.bind(c);
  c.send = (msg) => { clientMsgs.push(msg); send(msg); };
  sockets.push(c);
  return c;
}

/** Read an SSE stream until `done(frames)` or the timeout; frames are {id, event, data}. */
async function readSse(path, done, ms = 8000) {
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), ms);
  const frames = [];
  try {
    const r = await fetch(w.base + path, { signal: ctrl.signal });
    assert.equal(r.status, 200);
    assert.match(r.headers.get("content-type"), /^text\/event-stream/);
    seen.add("GET /v1/sessions/{session_id}/sse 200");
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    while (!done(frames)) {
      const { value, done: end } = await reader.read();
      if (end) break;
      buf += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        const f = {};
        for (const line of block.split("\n")) {
          const [k, ...v] = line.split(": ");
          f[k] = v.join(": ");
        }
        if (f.data !== undefined) frames.push({ id: Number(f.id), event: f.event, data: JSON.parse(f.data) });
      }
    }
  } finally {
    clearTimeout(timer);
    ctrl.abort();
  }
  return frames;
}

test("a live session: every WebSocket and SSE message in both directions matches its schema", { timeout: 120_000 }, async () => {
  assert.ok(lesson, "needs the lesson of the artifacts test");
  const s = await call("POST", "/v1/sessions", {}, { token: T.teacher, body: { lesson_id: lesson.lesson_id, version: 1 } });
  assert.equal(s.status, 201, s.text);
  const sid = { session_id: s.json.session_id };
  await call("GET", "/v1/join/{join_code}", { join_code: s.json.join_code.toLowerCase() }, { token: T.learner });
  const noUpgrade = await call("GET", "/v1/sessions/{session_id}/ws", sid, { token: T.learner });
  assert.equal(noUpgrade.status, 426);
  assert.equal((await call("GET", "/v1/sessions/{session_id}", sid, { token: T.uLearner })).status, 404, "another org's session is unknown");
  assert.equal((await call("GET", "/v1/join/{join_code}", { join_code: s.json.join_code }, { token: T.uLearner })).status, 404);

  const t = await connect(s.json.session_id, T.teacher);
  t.send({ type: "hello", version: 1 });
  const snap = await t.next((m) => m.type === "snapshot");
  assert.equal(snap.state.status, "live");
  t.send({ type: "cursor", step: 1, x: 10.5, y: 20 });
  await t.next((m) => m.type === "event" && m.event.type === "cursor.moved");

  const o = await connect(s.json.session_id, T.learner);
  o.send({ type: "ping" });
  assert.equal((await o.next((m) => m.type === "pong")).type, "pong");
  o.send({ type: "ask", text: "too early" });
  assert.equal((await o.next((m) => m.type === "error")).code, "hello_required");
  o.send({ type: "hello" });
  await o.next((m) => m.type === "snapshot");
  await t.next((m) => m.type === "presence" && m.count === 2);
  o.send({ type: "ask", text: "  Why halves?  " });
  const asked = await t.next((m) => m.type === "event" && m.event.type === "question.asked");
  assert.equal(asked.event.payload.text, "Why halves?");
  o.send({ type: "cursor", step: 2 });
  assert.equal((await o.next((m) => m.type === "error")).code, "authority_violation");
  t.send({ type: "answer", question_id: asked.event.payload.question_id, text: "Because." });
  await o.next((m) => m.type === "event" && m.event.type === "question.answered");
  o.send({ type: "respond", question_id: "q1", choice: 1 });
  await t.next((m) => m.type === "event" && m.event.type === "quiz.responded");
  o.send({ type: "respond", question_id: "q1", choice: 1 });
  assert.equal((await o.next((m) => m.type === "error")).code, "already_responded");
  t.send({ type: "annotate", id: "a1", kind: "arrow", text: "look", points: [[0, 0], [10.5, 10]], color: "red" });
  await o.next((m) => m.type === "event" && m.event.type === "annotation.added");
  t.send({ type: "annotate", kind: "note" });
  await o.next((m) => m.type === "event" && m.event.type === "annotation.added");
  t.send({ type: "clear_annotations" });
  await o.next((m) => m.type === "event" && m.event.type === "annotations.cleared");
  t.send({ type: "pause" });
  await o.next((m) => m.type === "event" && m.event.type === "session.paused");
  t.send({ type: "cursor", step: 3 });
  assert.equal((await t.next((m) => m.type === "error")).code, "session_paused");
  t.send({ type: "resume" });
  await o.next((m) => m.type === "event" && m.event.type === "session.resumed");
  t.send({ type: "cursor", step: 999 });
  assert.equal((await t.next((m) => m.type === "error")).code, "invalid_cursor");
  t.send({ type: "explain", step: 2 });
  await o.next((m) => m.type === "event" && m.event.type === "explanation.requested");
  // Invalid frames: refused with an error message, and refused by the client schema too.
  for (const [raw, code] of [["{oops", "malformed_message"], [JSON.stringify({ type: "teleport" }), "unknown_message_type"], [JSON.stringify({ type: "respond", question_id: "q1", choice: "one" }), "invalid_message"]]) {
    o.ws.send(raw);
    assert.equal((await o.next((m) => m.type === "error")).code, code);
    let parsed;
    try { parsed = JSON.parse(raw); } catch { continue; }
    assert.equal(fileValidator("ws-client-message.schema.json")(parsed), false, `the client schema accepts ${raw}`);
  }

  // An observer that reconnects with last_seq gets exactly the events it missed.
  const status = await call("GET", "/v1/sessions/{session_id}", sid, { token: T.learner });
  await o.close();
  t.send({ type: "cursor", step: 4 });
  await t.next((m) => m.type === "event" && m.event.type === "cursor.moved" && m.event.payload.step === 4);
  const back = await connect(s.json.session_id, T.learner);
  back.send({ type: "hello", last_seq: status.json.seq });
  const missed = await back.next((m) => m.type === "event");
  assert.equal(missed.seq, status.json.seq + 1);

  // SSE: every event from the start, then a snapshot without a position.
  const seq = (await call("GET", "/v1/sessions/{session_id}", sid, { token: T.learner })).json.seq;
  const sseFrames = await readSse(`/v1/sessions/${s.json.session_id}/sse?after=0&token=${T.learner}`, (f) => f.length >= seq);
  // (An explanation may arrive meanwhile: at least every event up to `seq`, gapless.)
  assert.ok(sseFrames.length >= seq, "every event over SSE");
  assert.deepEqual(sseFrames.map((f) => f.id), Array.from({ length: sseFrames.length }, (_, i) => i + 1));
  const snapFrames = await readSse(`/v1/sessions/${s.json.session_id}/sse?token=${T.learner}`, (f) => f.length >= 1);
  for (const f of [...sseFrames, ...snapFrames]) {
    validAgainst("ws-server-message.schema.json", f.data, `SSE frame ${f.id}`);
    assert.equal(f.event, f.data.type);
  }
  assert.equal(snapFrames[0].event, "snapshot");
  assert.equal(sseFrames[0].data.event.type, "session.started");

  // The teacher leaving pauses the session; coming back resumes it; end ends it.
  await t.close();
  const paused = await back.next((m) => m.type === "event" && m.event.type === "session.paused");
  assert.equal(paused.event.payload.reason, "teacher_disconnected");
  const t2 = await connect(s.json.session_id, T.teacher);
  t2.send({ type: "hello", last_seq: 0 });
  await back.next((m) => m.type === "event" && m.event.type === "session.resumed");
  t2.send({ type: "end" });
  await back.next((m) => m.type === "event" && m.event.type === "session.ended");
  t2.send({ type: "cursor", step: 1 });
  assert.equal((await t2.next((m) => m.type === "error")).code, "session_ended");

  for (const m of clientMsgs) validAgainst("ws-client-message.schema.json", m, `client message ${JSON.stringify(m).slice(0, 80)}`);
  for (const m of serverMsgs) validAgainst("ws-server-message.schema.json", m, `server message ${JSON.stringify(m).slice(0, 80)}`);
  const types = new Set(serverMsgs.map((m) => m.type));
  for (const t of ["snapshot", "event", "presence", "error", "pong", "roster", "answer_key", "quiz_feedback"]) assert.ok(types.has(t), `no ${t} message seen`);
  const clientTypes = new Set(clientMsgs.map((m) => m.type));
  for (const t of ["hello", "cursor", "annotate", "clear_annotations", "pause", "resume", "end", "answer", "ask", "respond", "explain", "ping"]) {
    assert.ok(clientTypes.has(t), `no ${t} message sent`);
  }

  // The session's run in D1 (through the outbox): every event a sessionEvent.
  const stored = await eventually(async () => {
    const r = await call("GET", "/v1/runs/{run_id}/events", { run_id: s.json.run_id }, { token: T.teacher, query: { limit: 1000 } });
    assert.ok(r.json.events.some((e) => e.type === "session.ended"), "outbox not drained yet");
    return r.json.events;
  });
  const sessionEvent = fileValidator("event.schema.json#/$defs/sessionEvent");
  for (const e of stored) {
    validAgainst("event.schema.json", e, `session event ${e.seq}`);
    assertValid(sessionEvent, e, `session event ${e.seq} (${e.type})`);
  }
  const storedTypes = new Set(stored.map((e) => e.type));
  for (const t of ["session.started", "cursor.moved", "annotation.added", "annotations.cleared", "session.paused", "session.resumed", "session.ended", "question.asked", "question.answered", "quiz.responded", "explanation.requested"]) {
    assert.ok(storedTypes.has(t), `no ${t} event stored`);
  }
  const final = await call("GET", "/v1/sessions/{session_id}", sid, { token: T.teacher });
  assert.equal(final.json.status, "ended");
  // "My past sessions" of the attendee and of the teacher, as documented.
  for (const token of [T.learner, T.teacher]) {
    const mine = await call("GET", "/v1/me/sessions", {}, { token });
    assert.ok(mine.json.sessions.some((x) => x.session_id === s.json.session_id), mine.text);
  }
});

// ---------------------------------------------------------------- certificates

test("an issued certificate matches credential.schema.json; so do the issuer, the status list and verification", { timeout: 120_000 }, async () => {
  assert.ok(lesson, "needs the lesson of the artifacts test");
  const a = await call("POST", "/v1/attempts", {}, { token: T.learner, body: { lesson_id: lesson.lesson_id, version: 1 } });
  assert.equal(a.status, 201, a.text);
  const at = { attempt_id: a.json.attempt_id };
  for (const [question_id, answer] of [["q1", 1], ["q2", "1/4"]]) {
    const r = await call("POST", "/v1/attempts/{attempt_id}/answers", at, { token: T.learner, body: { question_id, answer } });
    assert.equal(r.status, 201, r.text);
  }
  assert.equal((await call("POST", "/v1/attempts/{attempt_id}/answers", at, { token: T.learner, body: { question_id: "zz", answer: 0 } })).status, 422);
  const submitted = await call("POST", "/v1/attempts/{attempt_id}/submit", at, { token: T.learner });
  assert.equal(submitted.json.passed, true, submitted.text);
  const again = await call("POST", "/v1/attempts/{attempt_id}/submit", at, { token: T.learner });
  assert.equal(again.json.resubmitted, true);
  assert.equal((await call("POST", "/v1/attempts/{attempt_id}/answers", at, { token: T.learner, body: { question_id: "q1", answer: 0 } })).status, 409);
  await call("GET", "/v1/attempts/{attempt_id}", at, { token: T.learner });
  const c = { certificate_id: submitted.json.certificate_id };
  const cred = await call("GET", "/v1/certificates/{certificate_id}", c, { token: T.learner });
  assert.equal(cred.status, 200);
  validAgainst("credential.schema.json", cred.json, "the issued credential");
  const issuer = await call("GET", "/v1/issuer");
  assertValid(fileValidator("credential.schema.json#/$defs/issuerProfile"), issuer.json, "the issuer profile");
  assert.ok(issuer.json.assertionMethod.includes(cred.json.proof.verificationMethod));
  const verified = await call("POST", "/v1/certificates/verify", {}, { body: cred.json });
  assert.equal(verified.json.valid, true, verified.text);
  const wrapped = await call("POST", "/v1/certificates/verify", {}, { body: { credential: cred.json } });
  assert.equal(wrapped.json.valid, true);
  await call("GET", "/v1/certificates", {}, { token: T.learner, query: { learner_id: "lea" } });
  await call("GET", "/v1/certificates", {}, { token: T.teacher, query: { lesson_id: lesson.lesson_id } });
  assert.equal((await call("POST", "/v1/certificates/{certificate_id}/revoke", c, { token: T.teacher })).status, 403);
  assert.equal((await call("POST", "/v1/certificates/{certificate_id}/revoke", c, { token: T.governor, body: { reason: "schema test" } })).status, 200);
  const revoked = await call("POST", "/v1/certificates/verify", {}, { body: cred.json });
  assert.equal(revoked.json.valid, false);
  const list = await call("GET", "/v1/status-lists/{list_id}", { list_id: new URL(cred.json.credentialStatus.statusListCredential).pathname.split("/").pop() });
  assertValid(fileValidator("credential.schema.json#/$defs/statusListCredential"), list.json, "the status list");
  // The attempt's run: every event an attemptEvent.
  const events = await call("GET", "/v1/runs/{run_id}/events", { run_id: a.json.run_id }, { token: T.teacher });
  const attemptEvent = fileValidator("event.schema.json#/$defs/attemptEvent");
  assert.deepEqual(events.json.events.map((e) => e.type), ["attempt.started", "attempt.answered", "attempt.answered", "attempt.submitted", "attempt.graded"]);
  for (const e of events.json.events) assertValid(attemptEvent, e, `attempt event ${e.type}`);
});

// ---------------------------------------------------------------- marketplace, AI, system

test("marketplace, AI jobs, orgs and the audit log answer as documented", { timeout: 120_000 }, async () => {
  assert.ok(lesson);
  const submit = await call("POST", "/v1/marketplace/listings", {}, { token: T.author, body: { lesson_id: lesson.lesson_id, version: 1, visibility: "public", price_cents: 0 } });
  assert.equal(submit.status, 201, submit.text);
  const l = { listing_id: submit.json.listing_id };
  await call("GET", "/v1/marketplace/queue", {}, { token: T.reviewer });
  assert.equal((await call("POST", "/v1/marketplace/listings/{listing_id}/decisions", l, { token: T.reviewer, body: { decision: "reject" } })).status, 422);
  assert.equal((await call("POST", "/v1/marketplace/listings/{listing_id}/decisions", l, { token: T.reviewer, body: { decision: "approve", reason: "fine" } })).status, 200);
  assert.equal((await call("POST", "/v1/marketplace/listings/{listing_id}/decisions", l, { token: T.reviewer, body: { decision: "approve" } })).status, 409);
  assert.equal((await call("POST", "/v1/marketplace/listings/{listing_id}/decisions", l, { token: T.governor, body: { decision: "publish" } })).status, 200);
  assert.equal((await call("POST", "/v1/marketplace/listings/{listing_id}/reviews", l, { token: T.learner, body: { rating: 5, text: "Clear." } })).status, 201);
  assert.equal((await call("POST", "/v1/marketplace/listings/{listing_id}/reviews", l, { token: T.learner, body: { rating: 4 } })).status, 409);
  await call("GET", "/v1/marketplace/listings/{listing_id}/reviews", l);
  const detail = await call("GET", "/v1/marketplace/listings/{listing_id}", l, { token: T.governor });
  assert.equal(detail.json.rating_count, 1);
  await call("GET", "/v1/marketplace/listings/{listing_id}", l);
  const search = await call("GET", "/v1/marketplace/listings", {}, { query: { q: "fractions", sort: "new", limit: 5 } });
  assert.ok(search.json.listings.some((x) => x.listing_id === l.listing_id));
  assert.equal((await call("GET", "/v1/marketplace/listings", {}, { query: { sort: "worst" } })).status, 400);
  // A publicly published version is readable without a token.
  await call("GET", "/v1/lessons/{lesson_id}/versions/{version}", { lesson_id: lesson.lesson_id, version: 1 });

  // Another org, so the small limits of this suite are its own: one session, one AI job a minute.
  const uLesson = (await call("POST", "/v1/lessons", {}, { token: T.uAuthor, body: DEMO_LESSON })).json;
  const ref = { lesson_id: uLesson.lesson_id, version: 1 };
  assert.equal((await call("POST", "/v1/sessions", {}, { token: T.uTeacher, body: ref })).status, 201);
  const full = await call("POST", "/v1/sessions", {}, { token: T.uTeacher, body: ref });
  assert.equal(full.status, 402);
  assert.equal(full.json.error.code, "plan_limit_reached");
  const jobs = [];
  for (let i = 0; i < 3; i++) jobs.push(await call("POST", "/v1/ai/jobs", {}, { token: T.uLearner, body: { kind: "answer", ...ref, input: { question: "Where is one half?" } } }));
  assert.equal(jobs[0].status, 202, jobs[0].text);
  const limited = jobs.find((j) => j.status === 429);
  assert.ok(limited, `no 429 among ${jobs.map((j) => j.status)}`);
  assert.match(limited.headers.get("retry-after"), /^[1-9]\d*$/);
  const job = await eventually(async () => {
    const r = await call("GET", "/v1/ai/jobs/{job_id}", { job_id: jobs[0].json.job_id }, { token: T.uLearner });
    assert.equal(r.json.status, "succeeded", r.text);
    return r.json;
  }, 30_000);
  const jobEvents = await call("GET", "/v1/runs/{run_id}/events", { run_id: job.run_id }, { token: T.uAuthor });
  const aiJobEvent = fileValidator("event.schema.json#/$defs/aiJobEvent");
  assert.ok(jobEvents.json.events.length >= 3);
  for (const e of jobEvents.json.events) assertValid(aiJobEvent, e, `AI job event ${e.type}`);
  assert.equal((await call("POST", "/v1/ai/jobs", {}, { token: T.uLearner, body: { kind: "teleport", ...ref, input: {} } })).status, 400);

  await call("GET", "/v1/orgs/{org_id}/usage", { org_id: "acme" }, { token: T.learner });
  assert.equal((await call("GET", "/v1/orgs/{org_id}/usage", { org_id: "umbrella" }, { token: T.learner })).status, 404);
  const audit = await call("GET", "/v1/audit", {}, { token: T.governor, query: { limit: 500 } });
  assert.ok(audit.json.entries.some((e) => e.action === "classroom.authority_violation"));
  assert.equal((await call("GET", "/v1/audit", {}, { token: T.learner })).status, 403);
  const metrics = await call("GET", "/v1/metrics", {}, { token: T.governor });
  assert.match(metrics.text, /^# TYPE /m);
  await call("GET", "/v1/users/{user_id}", { user_id: "lea" }, { token: T.learner });
  await call("GET", "/v1/health");
  assert.equal((await call("PUT", "/v1/dev/faults", {}, { body: { d1_writes: "ok" } })).status, 200);
  assert.equal((await call("PUT", "/v1/dev/orgs/{org_id}/plan", { org_id: "umbrella" }, { body: { plan: "free" } })).status, 200);
  const dev = await call("POST", "/v1/dev/tokens", {}, { body: { sub: "dee", org: "acme", roles: ["learner"], ttl_secs: 60, display_name: "Dee" } });
  assert.equal(dev.status, 201);
  assert.equal((await call("DELETE", "/v1/users/{user_id}/personal-data", { user_id: "dee" }, { token: dev.json.token })).status, 200);
});

test("error bodies: each documented error status was seen and matches error.schema.json", { timeout: 60_000 }, async (t) => {
  assert.equal((await call("POST", "/v1/runs", {}, { token: T.author, raw: "{oops", headers: { "content-type": "application/json" } })).status, 400);
  assert.equal((await call("GET", "/v1/lessons")).status, 401);
  assert.equal((await call("GET", "/v1/lessons", {}, { headers: { authorization: "Bearer not.a.token" } })).status, 401);
  assert.equal((await call("POST", "/v1/lessons", {}, { token: T.learner, body: DEMO_LESSON })).status, 403);
  assert.equal((await call("GET", "/v1/runs/{run_id}", { run_id: DUMMY }, { token: T.author })).status, 404);
  const big = await call("POST", "/v1/runs", {}, { token: T.author, raw: JSON.stringify({ kind: "x".repeat(1_100_000) }), headers: { "content-type": "application/json" } });
  assert.equal(big.status, 413);
  const media = await call("POST", "/v1/assets", {}, { token: T.author, raw: "not an image", headers: { "content-type": "image/png" } });
  assert.equal(media.status, 422);
  const png = Buffer.concat([Buffer.from("\x89PNG\r\n\x1a\n", "latin1"), Buffer.from(randomUUID())]);
  const up = await call("POST", "/v1/assets", {}, { token: T.author, raw: png, headers: { "content-type": "image/png" } });
  assert.equal(up.status, 201, up.text);
  const sha = { sha256: up.json.sha256 };
  // The same bytes again from the same org: 200, nothing rewritten.
  assert.equal((await call("POST", "/v1/assets", {}, { token: T.author, raw: png, headers: { "content-type": "image/png" } })).status, 200);
  // Media no public lesson references need the org's token.
  assert.equal((await call("GET", "/v1/assets/{sha256}", sha)).status, 401);
  assert.equal((await call("HEAD", "/v1/assets/{sha256}", sha)).status, 401);
  const auth = { token: T.author };
  assert.equal((await call("GET", "/v1/assets/{sha256}", sha, auth)).status, 200);
  assert.equal((await call("GET", "/v1/assets/{sha256}", sha, { ...auth, headers: { range: "bytes=0-3" } })).status, 206);
  assert.equal((await call("GET", "/v1/assets/{sha256}", sha, { ...auth, headers: { range: "bytes=900-" } })).status, 416);
  assert.equal((await call("HEAD", "/v1/assets/{sha256}", sha, auth)).status, 200);
  for (const status of [400, 401, 402, 403, 404, 405, 409, 413, 415, 416, 422, 426, 429]) {
    assert.ok(errorStatuses.has(status), `no ${status} error body was validated`);
  }
  assert.equal((await call("HEAD", "/v1/assets/{sha256}", sha, { ...auth, headers: { range: "bytes=0-3" } })).status, 206);
  for (const M of ["GET", "HEAD"]) {
    assert.equal((await call(M, "/v1/assets/{sha256}", sha, { ...auth, headers: { "if-none-match": `"${sha.sha256}"` } })).status, 304);
  }
  // Every documented success answer was exercised (and its body validated).
  const missing = [];
  for (const [template, item] of Object.entries(doc.paths)) {
    for (const method of METHODS.filter((m) => item[m])) {
      for (const status of Object.keys(item[method].responses).filter((s) => Number(s) < 400)) {
        const key = `${method.toUpperCase()} ${template} ${status}`;
        if (!seen.has(key)) missing.push(key);
      }
    }
  }
  assert.deepEqual(missing, [], "documented success answers never exercised");
  assert.ok(validations > 300, `only ${validations} validations`);
  t.diagnostic(`${seen.size} (method, path, status) answers checked against openapi.yaml; ${validations} schema validations; ` +
    `${serverMsgs.length} server and ${clientMsgs.length} client WebSocket messages`);
});
