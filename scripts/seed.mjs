// Seeds the demo org, users and a lesson through the public API (idempotent:
// the lesson is created only when the demo org has none), then prints
// ready-to-use development tokens.
const base = process.argv[2] ?? "http://127.0.0.1:8787";
const ORG = "demo";
const USERS = [
  ["ada", ["author"], "Ada (author)"],
  ["tom", ["teacher"], "Tom (teacher)"],
  ["lea", ["learner"], "Lea (learner)"],
  ["rex", ["reviewer"], "Rex (reviewer)"],
  ["gil", ["governor"], "Gil (governor)"],
];

async function waitForHealth() {
  for (let i = 0; i < 240; i++) {
    try {
      const r = await fetch(`${base}/v1/health`);
      if (r.ok) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error("the worker did not come up");
}

async function call(method, path, token, body) {
  const r = await fetch(base + path, {
    method,
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  return { status: r.status, json: text ? JSON.parse(text) : null };
}

export const DEMO_LESSON = {
  title: "Fractions on a number line",
  summary: "Halves and quarters, placed on a line step by step.",
  tags: ["math", "fractions"],
  timeline: [
    { type: "chapter", payload: { title: "The line" } },
    { type: "element.added", payload: { id: "line", kind: "line", x: 40, y: 200, w: 520, label: "0 to 1" } },
    { type: "narration", payload: { text: "Every fraction has a place on this line." } },
    { type: "element.added", payload: { id: "zero", kind: "label", x: 40, y: 230, text: "0" } },
    { type: "element.added", payload: { id: "one", kind: "label", x: 560, y: 230, text: "1" } },
    { type: "chapter", payload: { title: "Halves" } },
    { type: "element.added", payload: { id: "half", kind: "dot", x: 300, y: 200, text: "1/2" } },
    { type: "narration", payload: { text: "One half sits exactly in the middle." } },
    { type: "edge.added", payload: { id: "e1", from: "zero", to: "half" } },
    { type: "element.added", payload: { id: "quarter", kind: "dot", x: 170, y: 200, text: "1/4" } },
    { type: "narration", payload: { text: "A quarter is half of a half." } },
    { type: "element.moved", payload: { id: "quarter", x: 170, y: 190 } },
  ],
  quiz: [
    { id: "q1", prompt: "Where is 1/2?", choices: ["Near 0", "In the middle", "Near 1"], answer: 1, step: 8 },
    { id: "q2", prompt: "What is half of a half?", choices: ["1/3", "1/4", "2/4"], answer: 1, step: 12 },
  ],
  pass_threshold: 0.5,
};

async function main() {
  await waitForHealth();
  const tokens = {};
  for (const [sub, roles, display_name] of USERS) {
    const r = await call("POST", "/v1/dev/tokens", null, { sub, org: ORG, roles, display_name, ttl_secs: 30 * 24 * 3600 });
    if (r.status !== 201) throw new Error(`token for ${sub}: ${r.status} ${JSON.stringify(r.json)}`);
    tokens[sub] = r.json.token;
  }
  const list = await call("GET", "/v1/lessons", tokens.ada);
  if (list.status === 200 && list.json.lessons.length === 0) {
    const made = await call("POST", "/v1/lessons", tokens.ada, DEMO_LESSON);
    console.log(`seeded lesson ${made.json?.lesson_id ?? JSON.stringify(made.json)}`);
  } else if (list.status === 200) {
    console.log(`demo lesson already there: ${list.json.lessons[0].lesson_id}`);
  }
  console.log(`\nDropple Edge is up on ${base}  (web app: ${base}/)\nDemo org "${ORG}" — development tokens (30 days):`);
  for (const [sub, roles] of USERS) console.log(`  ${sub.padEnd(4)} ${roles.join(",").padEnd(9)} ${tokens[sub]}`);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((e) => { console.error(`seed failed: ${e.message}`); process.exit(1); });
}
