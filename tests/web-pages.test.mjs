// The author, market, verify and replay pages read as a product (issue 21),
// in headless Chromium against the real worker: the studio speaks in words
// (no ids or hashes, a human timeline), edits and deletes placed elements as
// new steps, drops its connect hint once connected, takes a price in dollars
// and offers "Teach it" only to teachers; a certificate reads as one, is
// shared by link and a cut-off paste clears the old verdict; replay opens on
// "my past sessions", resolves a join code, names events, marks the current
// one and shows the questions beside the canvas, for a learner who attended;
// a learner replays their own quiz attempt.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { runEventsThrough } from "./support/worker.mjs";
import { startWebApp, stopWebApp, openPage, withScreenshots, settled } from "./support/browser.mjs";
import { openSocket } from "./support/ws.mjs";
import { auditPage } from "./support/a11y.mjs";
import { DEMO_LESSON } from "../scripts/seed.mjs";

const ORG = "pages";
const USERS = { ada: ["author"], zed: ["author", "teacher"], tom: ["teacher"], lea: ["learner"], leo: ["learner"] };
let w, api, browser, tokens, lesson;
const pages = {};
const shots = () => pages;

before(async () => ({ w, api, browser, tokens, lesson } = await startWebApp({ org: ORG, users: USERS })));
after(() => stopWebApp({ w, browser }));

async function closePages() {
  for (const [k, p] of Object.entries(pages)) {
    await p.context().close().catch(() => {});
    delete pages[k];
  }
}

/** The studio with a fresh draft, the canvas ready; `at(fx, fy)` is a point on it. */
async function studio(token) {
  const p = await openPage(browser, w.base, { token });
  await p.goto("/author");
  await p.evaluate(() => localStorage.removeItem("dropple.author.draft"));
  await p.reload();
  await settled(p); // the sign-in badge can change the header's height: measure the canvas after it
  const svg = p.locator("[data-testid=canvas] svg");
  await svg.waitFor();
  const box = await svg.boundingBox();
  p.at = (fx, fy) => ({ x: box.x + box.width * fx, y: box.y + box.height * fy });
  p.place = async (tool, text, fx, fy) => {
    await p.fill("[data-testid=element-text]", text);
    await p.click(`[data-testid=tool-${tool}]`);
    const pt = p.at(fx, fy);
    await p.mouse.click(pt.x, pt.y);
  };
  return p;
}
/** Labels and AA contrast of the page as it is now, and at 375 px nothing scrolls sideways. */
async function accessibleAndFits(p, label) {
  const { problems } = await p.evaluate(auditPage);
  assert.deepEqual(problems, [], `${label}: accessibility`);
  const before = p.viewportSize();
  await p.setViewportSize({ width: 375, height: 740 });
  try {
    await p.waitForFunction(() => innerWidth === 375);
    const width = await p.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 376, `${label}: the page is ${width}px wide at 375px`);
  } finally {
    await p.setViewportSize(before);
  }
}
const timelineTexts = (p) => p.locator("[data-testid=timeline] li").evaluateAll((lis) => lis.map((li) => li.lastElementChild.textContent));
const ID_OR_HASH = /[0-9a-f]{8}-[0-9a-f]{4}-|[0-9a-f]{16}|sha256/i;

// ---------------------------------------------------------------- author

test("author: the timeline reads in words and publishing says so without ids or hashes", { timeout: 90_000 }, () =>
  withScreenshots("pages-author-words", shots, async () => {
    const p = (pages.ada = await studio(tokens.ada));
    await p.place("dot", "Sun", 0.2, 0.25);
    await p.place("box", "Photosynthesis", 0.6, 0.6);
    await p.click("[data-testid=tool-connect]");
    await p.locator('[data-id="dot1"] circle').click();
    await p.locator('[data-id="box1"] rect').first().click();
    await p.click("[data-testid=tool-remove]");
    await p.locator('[data-id="dot1"] circle').click();
    assert.deepEqual(await timelineTexts(p), [
      "Dot “Sun” added",
      "Box “Photosynthesis” added",
      "Dot “Sun” connected to box “Photosynthesis”",
      "Dot “Sun” removed",
    ]);
    await p.fill("[data-testid=title]", "Light and leaves");
    await p.click("[data-testid=publish]");
    await p.waitForFunction(() => document.querySelector("[data-testid=publish-status]")?.dataset.lessonId);
    assert.equal(await p.textContent("[data-testid=publish-status]"), "Published “Light and leaves” version 1 (4 steps).");
    assert.match(await p.getAttribute("[data-testid=play-it]", "href"), /^\/learn\?lesson=.+&version=1$/);
    const shown = await p.locator("#publish-status, #published").allTextContents();
    assert.doesNotMatch(shown.join(" "), ID_OR_HASH, "no internal id or hash on screen");
    // ada is an author, not a teacher: she is not offered a live class.
    assert.equal(await p.locator("[data-testid=teach-it]").count(), 0);
    assert.equal(await p.getByRole("link", { name: "Teach it" }).count(), 0);
    await p.getByRole("button", { name: "Select / move" }).click();
    await p.locator('[data-id="box1"]').focus();
    await p.keyboard.press("Enter");
    await p.locator("[data-testid=inspector]").waitFor();
    // Publishing ends by reloading "Publish as" (a long option at 375 px) and picking the new lesson there.
    await p.waitForFunction(() => document.querySelector("#base").value === document.querySelector("[data-testid=publish-status]").dataset.lessonId);
    await accessibleAndFits(p, "studio with the editor open, published");

    // A teacher who authors is offered one.
    const z = (pages.zed = await studio(tokens.zed));
    await z.place("box", "Roots", 0.5, 0.5);
    await z.fill("[data-testid=title]", "Roots drink");
    await z.click("[data-testid=publish]");
    await z.locator("[data-testid=teach-it]").waitFor();
    assert.match(await z.getAttribute("[data-testid=teach-it]", "href"), /^\/teach\?lesson=.+&version=1$/);
    await closePages();
  }));

test("author: a placed element is edited (text, position, size) and deleted as new steps", { timeout: 90_000 }, () =>
  withScreenshots("pages-author-edit", shots, async () => {
    const p = (pages.ada = await studio(tokens.ada));
    await p.place("box", "Leaf", 0.5, 0.5);
    // The new element is selected: its editor shows its text.
    await p.locator("[data-testid=inspector]").waitFor();
    assert.equal(await p.inputValue("[data-testid=insp-text]"), "Leaf");
    await p.fill("[data-testid=insp-text]", "Green leaf");
    await p.getByLabel("Width", { exact: true }).fill("200");
    await p.getByLabel("Left", { exact: true }).fill("40");
    await p.click("[data-testid=insp-save]");
    await p.locator('[data-testid=timeline] li[data-type="element.updated"]').waitFor();
    assert.deepEqual(await timelineTexts(p), ["Box “Leaf” added", "Box “Leaf” renamed “Green leaf”, resized, moved"]);
    assert.match(await p.locator('[data-id="box1"]').textContent(), /Green leaf/);
    const rect = await p.locator('[data-id="box1"] rect').first().evaluate((r) => [r.getAttribute("x"), r.getAttribute("width")]);
    assert.deepEqual(rect, ["40", "200"]);
    // Click off it (the editor goes), select it again from the keyboard and delete it from the editor.
    await p.getByRole("button", { name: "Select / move" }).click();
    const off = p.at(0.03, 0.03);
    await p.mouse.click(off.x, off.y);
    await p.locator("[data-testid=inspector]").waitFor({ state: "hidden" });
    await p.locator('[data-id="box1"]').focus();
    await p.keyboard.press("Enter");
    await p.click("[data-testid=insp-delete]");
    await p.locator('[data-testid=timeline] li[data-type="element.removed"]').waitFor();
    assert.equal(await p.locator('[data-testid=canvas] [data-id="box1"]').count(), 0);
    assert.equal(await p.locator("[data-testid=inspector]").isHidden(), true);
    assert.equal(await p.textContent("[data-testid=timeline-count]"), "3", "edits append: nothing was rewritten");
    await closePages();
  }));

test("author: the connect hint goes once the connection is made", { timeout: 60_000 }, () =>
  withScreenshots("pages-author-connect", shots, async () => {
    const p = (pages.ada = await studio(tokens.ada));
    await p.place("dot", "A", 0.2, 0.3);
    await p.place("dot", "B", 0.7, 0.3);
    await p.click("[data-testid=tool-connect]");
    await p.locator('[data-id="dot1"] circle').click();
    assert.match(await p.textContent("#canvas-status"), /now click the element to connect to/);
    await p.locator('[data-id="dot2"] circle').click();
    await p.locator('[data-testid=timeline] li[data-type="edge.added"]').waitFor();
    assert.equal(await p.locator("#canvas-status").isHidden(), true, "no stale hint");
    assert.doesNotMatch(await p.textContent("#canvas-status"), /connect to/);
    await closePages();
  }));

test("author: the marketplace price is typed in dollars and sent in cents", { timeout: 60_000 }, () =>
  withScreenshots("pages-author-price", shots, async () => {
    const p = (pages.ada = await studio(tokens.ada));
    await p.place("box", "Cells", 0.5, 0.5);
    await p.fill("[data-testid=title]", "Cells and more cells");
    await p.click("[data-testid=publish]");
    await p.locator("#market-form").waitFor();
    assert.match(await p.textContent("label[for=price]"), /dollars/);
    assert.doesNotMatch(await p.textContent("label[for=price]"), /cents/i);
    await p.fill("[data-testid=price]", "4.99");
    await p.click("[data-testid=submit-market]");
    const link = p.locator("#market-status a");
    await link.waitFor();
    assert.match(await p.textContent("#market-status"), /^Submitted for review — a reviewer will look at it\. See the listing$/);
    const id = new URL(await link.getAttribute("href"), w.base).searchParams.get("listing");
    const listing = await api.call("GET", `/v1/marketplace/listings/${id}`, { token: tokens.ada });
    assert.equal(listing.status, 200, listing.text);
    assert.equal(listing.json.price_cents, 499);
    await closePages();
  }));

// ---------------------------------------------------------------- verify

async function certificate(token) {
  const a = await api.call("POST", "/v1/attempts", { token, body: { lesson_id: lesson.lesson_id, version: 1 } });
  assert.equal(a.status, 201, a.text);
  for (const q of DEMO_LESSON.quiz) {
    const r = await api.call("POST", `/v1/attempts/${a.json.attempt_id}/answers`, { token, body: { question_id: q.id, answer: q.answer } });
    assert.ok(r.status < 300, r.text);
  }
  const s = await api.call("POST", `/v1/attempts/${a.json.attempt_id}/submit`, { token });
  assert.equal(s.status, 200, s.text);
  assert.ok(s.json.certificate_id, s.text);
  return s.json.certificate_id;
}
const waitVerdict = (p) => p.waitForFunction(() => document.querySelector("[data-testid=verdict]")?.dataset.valid !== undefined, null, { timeout: 20_000 });

test("verify: a readable certificate above the checks, shared by a link that verifies for anyone", { timeout: 90_000 }, () =>
  withScreenshots("pages-verify-share", shots, async () => {
    const id = await certificate(tokens.lea);
    const p = (pages.lea = await openPage(browser, w.base, { token: tokens.lea }));
    await p.goto(`/verify?id=${encodeURIComponent(id)}`);
    await waitVerdict(p);
    assert.equal(await p.getAttribute("[data-testid=verdict]", "data-valid"), "true");
    const cert = p.locator("[data-testid=certificate]");
    assert.equal(await p.textContent("[data-testid=cert-recipient]"), "lea");
    assert.equal(await p.textContent("[data-testid=cert-lesson]"), DEMO_LESSON.title);
    const issued = new Date(JSON.parse(await p.inputValue("[data-testid=credential]")).validFrom);
    const month = issued.toLocaleString("en-GB", { month: "long", timeZone: "UTC" });
    assert.match(await p.textContent("[data-testid=cert-date]"), new RegExp(`^\\d{1,2} ${month} ${issued.getUTCFullYear()}$`));
    assert.ok((await p.textContent("[data-testid=cert-issuer]")).trim().length > 0);
    // Above the technical checks.
    const [certBottom, checksTop] = await p.evaluate(() => [
      document.querySelector("[data-testid=certificate]").getBoundingClientRect().bottom,
      document.querySelector("[data-testid=browser-checks]").getBoundingClientRect().top]);
    assert.ok(certBottom <= checksTop, `${certBottom} ≤ ${checksTop}`);
    assert.equal(await cert.getAttribute("data-valid"), "true");
    await accessibleAndFits(p, "a verified certificate");

    // The share link carries the credential itself; opened signed out, the
    // page checks it with the browser core and shows the same certificate.
    const link = await p.getAttribute("[data-testid=share-link]", "href");
    assert.match(link, /\/verify#credential=[A-Za-z0-9_-]+$/);
    const anyone = (pages.anyone = await openPage(browser, w.base));
    await anyone.goto(link);
    await waitVerdict(anyone);
    assert.equal(await anyone.getAttribute("[data-testid=verdict]", "data-valid"), "true");
    assert.equal(await anyone.getAttribute("[data-testid=browser-verdict]", "data-valid"), "true");
    assert.equal(await anyone.textContent("[data-testid=cert-recipient]"), "lea");
    // The certificate comes before the paste box for whoever opens a link.
    const order = await anyone.evaluate(() => document.querySelector("#result").getBoundingClientRect().top < document.querySelector("#credential").getBoundingClientRect().top);
    assert.ok(order, "the certificate first");
    await closePages();
  }));

test("verify: a click that comes before the core has loaded still verifies", { timeout: 90_000 }, () =>
  withScreenshots("pages-verify-early-click", shots, async () => {
    const id = await certificate(tokens.leo);
    const cred = (await api.call("GET", `/v1/certificates/${encodeURIComponent(id)}`, { token: tokens.leo })).json;
    const p = (pages.early = await openPage(browser, w.base));
    // The core's wasm arrives late, after the page's load event.
    let release;
    const held = new Promise((r) => { release = r; });
    await p.route(/\/core\/dropple_core_bg\.wasm/, async (route) => { await held; await route.continue(); });
    await p.goto("/verify");
    await p.fill("[data-testid=credential]", JSON.stringify(cred));
    // Loaded, but not wired yet: the button must not take a click it would drop.
    assert.equal(await p.isDisabled("[data-testid=verify]"), true, "Verify is disabled until the page can verify");
    release();
    await p.click("[data-testid=verify]"); // waits until it is enabled
    await waitVerdict(p);
    assert.equal(await p.getAttribute("[data-testid=verdict]", "data-valid"), "true", await p.textContent("#browser-checks"));
  }));

test("verify: a cut-off paste says so in words and clears the previous verdict", { timeout: 90_000 }, () =>
  withScreenshots("pages-verify-truncated", shots, async () => {
    const id = await certificate(tokens.leo);
    const p = (pages.leo = await openPage(browser, w.base, { token: tokens.leo }));
    await p.goto(`/verify?id=${encodeURIComponent(id)}`);
    await waitVerdict(p);
    assert.equal(await p.getAttribute("[data-testid=verdict]", "data-valid"), "true");
    const text = await p.inputValue("[data-testid=credential]");
    await p.fill("[data-testid=credential]", text.slice(0, Math.floor(text.length / 2)));
    await p.click("[data-testid=verify]");
    await p.waitForFunction(() => document.querySelector("#load-status")?.dataset.kind === "error");
    const msg = await p.textContent("#load-status");
    assert.match(msg, /cut off/);
    assert.doesNotMatch(msg, /JSON\.parse|Unexpected|position \d+/, "no raw parser message");
    assert.equal(await p.locator("[data-testid=verdict]").isHidden(), true, "the stale verdict is gone");
    assert.equal(await p.locator("[data-testid=certificate]").isHidden(), true);
    assert.equal(await p.locator("[data-testid=browser-checks] li").count(), 0);
    assert.equal(await p.locator("[data-testid=server-checks] li").count(), 0);
    assert.equal(await p.textContent("[data-testid=browser-verdict]"), "—");
    await closePages();
  }));

// ---------------------------------------------------------------- replay

const wsUrl = (sid, token) => `${w.base.replace("http", "ws")}/v1/sessions/${sid}/ws?token=${token}`;

test("replay: a learner opens on the classes she attended, replays one with events in words, the current one marked, the questions beside the canvas", { timeout: 120_000 }, () =>
  withScreenshots("pages-replay", shots, async () => {
    const s = await api.call("POST", "/v1/sessions", { token: tokens.tom, body: { lesson_id: lesson.lesson_id, version: 1 } });
    assert.equal(s.status, 201, s.text);
    const { session_id, join_code } = s.json;
    const teacher = await openSocket(wsUrl(session_id, tokens.tom));
    await teacher.next((m) => m.type === "snapshot");
    const lea = await openSocket(wsUrl(session_id, tokens.lea));
    await lea.next((m) => m.type === "snapshot");
    teacher.send({ type: "cursor", step: 2 });
    await lea.next((m) => m.type === "event" && m.event.type === "cursor.moved");
    lea.send({ type: "ask", text: "Why is a half in the middle?" });
    const asked = await teacher.next((m) => m.type === "event" && m.event.type === "question.asked");
    teacher.send({ type: "answer", question_id: asked.event.payload.question_id, text: "Because two halves make the whole line." });
    await lea.next((m) => m.type === "event" && m.event.type === "question.answered");
    teacher.send({ type: "cursor", step: 3 });
    const last = await lea.next((m) => m.type === "event" && m.event.type === "cursor.moved" && m.event.payload.step === 3);
    // The run in D1 (the outbox drains on its own): wait until it holds the last event.
    await runEventsThrough(api, s.json.run_id, tokens.tom, last.seq);
    lea.ws.close();

    const p = (pages.lea = await openPage(browser, w.base, { token: tokens.lea }));
    await p.goto("/replay");
    const item = p.locator(`[data-testid=my-sessions] li[data-session="${session_id}"]`);
    await item.waitFor();
    assert.match(await item.textContent(), new RegExp(`${DEMO_LESSON.title}.*You attended.*code ${join_code}`));
    await accessibleAndFits(p, "my past sessions");
    await item.locator("a").click();
    await p.locator("[data-testid=events] li").first().waitFor();
    assert.equal(await p.textContent("#title"), `Class: ${DEMO_LESSON.title}`);
    const words = await p.locator("[data-testid=events] li .what").allTextContents();
    assert.ok(words.includes("Moved to step 2"), words.join(" | "));
    assert.ok(words.includes("Question asked: “Why is a half in the middle?”"), words.join(" | "));
    assert.ok(!words.some((t) => /^[a-z]+\.[a-z_]+$/.test(t)), `no raw type names: ${words.join(" | ")}`);

    // Scrub to the answer: it is the current event, marked, and the Q&A shows beside the canvas.
    const answerSeq = await p.locator('[data-testid=events] li[data-type="question.answered"]').getAttribute("data-seq");
    await p.locator(`[data-testid=events] li[data-seq="${answerSeq}"] button`).click();
    await p.waitForFunction((s) => document.querySelector("[data-testid=seq]")?.textContent === s, answerSeq);
    const current = p.locator("[data-testid=events] li[aria-current]");
    assert.equal(await current.getAttribute("data-seq"), answerSeq);
    const bg = await current.evaluate((li) => getComputedStyle(li).backgroundColor);
    assert.notEqual(bg, await p.locator(`[data-testid=events] li:not([aria-current])`).first().evaluate((li) => getComputedStyle(li).backgroundColor), "the current event looks different");
    assert.match(await p.textContent("[data-testid=now]"), /Question answered/);
    assert.match(await p.textContent("[data-testid=qa]"), /Why is a half in the middle\?/);
    assert.match(await p.textContent("[data-testid=qa-answer]"), /two halves make the whole line/);
    // One event earlier the question is there, its answer not yet.
    await p.getByRole("button", { name: "Previous event" }).click();
    await p.waitForFunction((s) => document.querySelector("[data-testid=seq]")?.textContent === String(Number(s) - 1), answerSeq);
    assert.equal(await p.locator("[data-testid=qa-answer]").count(), 0);
    const side = await p.evaluate(() => {
      const c = document.querySelector("[data-testid=canvas]").getBoundingClientRect();
      const q = document.querySelector("#qa-panel").getBoundingClientRect();
      return q.left >= c.right && q.top < c.bottom;
    });
    assert.ok(side, "the questions sit beside the canvas at 1200 px");
    await accessibleAndFits(p, "a class replayed");

    // The join code typed in the box finds the class too.
    await p.goto("/replay");
    await p.locator(`[data-testid=my-sessions] li[data-session="${session_id}"]`).waitFor();
    await p.fill("[data-testid=run-id]", join_code.toLowerCase());
    await p.click("#load-form button");
    await p.locator("[data-testid=events] li").first().waitFor();
    assert.equal(await p.textContent("#title"), `Class: ${DEMO_LESSON.title}`);

    // leo was not there: the class is not his to list or replay.
    const leo = (pages.leo = await openPage(browser, w.base, { token: tokens.leo }));
    await leo.goto("/replay");
    await leo.locator("[data-testid=my-sessions] li.hint").waitFor();
    await leo.goto(`/replay?run=${s.json.run_id}&lesson=${lesson.lesson_id}&version=1`);
    await leo.waitForFunction(() => document.querySelector("#status")?.dataset.kind === "error");
    assert.match(await leo.textContent("#status"), /classes you taught or attended/);
    // His own quiz attempt is his to replay, in words.
    await certificate(tokens.leo);
    await leo.goto("/replay");
    const attempt = leo.locator("[data-testid=my-runs] li a", { hasText: `Quiz attempt: ${DEMO_LESSON.title}` });
    await attempt.first().click();
    await leo.locator("[data-testid=events] li").first().waitFor();
    assert.equal(await leo.textContent("#title"), `Quiz attempt: ${DEMO_LESSON.title}`);
    const steps = await leo.locator("[data-testid=events] li .what").allTextContents();
    assert.deepEqual(steps.slice(-2), ["Submitted 2 answers", "Graded: 100%, passed"]);
    assert.equal(await leo.locator("[data-testid=canvas]").isHidden(), true, "nothing drawn to show for a quiz");
    teacher.ws.close();
    await closePages();
  }));
