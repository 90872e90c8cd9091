// The web app in a real browser (headless Debian Chromium via playwright-core)
// against the real worker on local workerd: a teacher and two learners in a
// live session, the learner's lack of authority, teacher loss and return, the
// author studio, and certificate verification in the browser.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startWorker, client } from "./support/worker.mjs";
import { launchBrowser, openPage, screenshot, withScreenshots } from "./support/browser.mjs";
import { DEMO_LESSON } from "../scripts/seed.mjs";
import { plan as assetPlan } from "../scripts/version-assets.mjs";

const ORG = "webtest";
const SHOTS = !!process.env.WEB_SCREENSHOTS; // also keep screenshots of passing steps
let w, api, browser, tokens, lesson;
const pages = {};

before(async () => {
  w = await startWorker();
  api = client(w.base);
  tokens = {
    ada: await api.token("ada", ORG, ["author"]),
    lea: await api.token("lea", ORG, ["learner"]),
    leo: await api.token("leo", ORG, ["learner"]),
    tom: await api.token("tom", ORG, ["teacher"]),
  };
  const r = await api.call("POST", "/v1/lessons", { token: tokens.ada, body: DEMO_LESSON });
  assert.equal(r.status, 201, r.text);
  lesson = r.json;
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close().catch(() => {});
  await w?.stop();
});

const shots = () => pages;
const canvasStep = (page) => page.locator("[data-testid=canvas]").getAttribute("data-step");
const svgOf = (page) => page.locator("[data-testid=canvas] svg").evaluate((svg) => {
  const copy = svg.cloneNode(true);
  copy.querySelector("title")?.remove(); // the accessible name differs per page
  return copy.outerHTML;
});
async function waitStep(page, step) {
  await page.waitForFunction((s) => document.querySelector("[data-testid=canvas]")?.dataset.step === String(s), step, { timeout: 10_000 });
}
async function waitConn(page, text) {
  await page.waitForFunction((t) => document.querySelector("[data-testid=conn-state]")?.textContent.includes(t), text, { timeout: 15_000 });
}

let session; // {id, code}
const PAGES = ["/", "/teach", "/learn", "/author", "/market", "/verify", "/replay"];

test("a teacher advances three steps and both learners show the same frame", { timeout: 120_000 }, () =>
  withScreenshots("live-follow", shots, async () => {
    // The teacher signs in through the development sign-in form.
    const teacher = (pages.teacher = await openPage(browser, w.base));
    await teacher.goto("/");
    await teacher.locator("[data-testid=whoami]").click();
    await teacher.fill("#si-user", "tom");
    await teacher.fill("#si-org", ORG);
    for (const role of ["author", "teacher", "reviewer", "learner", "governor"]) {
      await teacher.locator(`#si-role-${role}`).setChecked(role === "teacher");
    }
    await teacher.locator("[data-testid=dev-signin] button[type=submit]").click();
    await teacher.waitForFunction(() => document.querySelector("[data-testid=whoami]")?.textContent.startsWith("tom"));

    await teacher.goto("/teach");
    await teacher.locator(`[data-testid=lesson-select] option[value="${lesson.lesson_id}"]`).waitFor({ state: "attached" });
    await teacher.selectOption("[data-testid=lesson-select]", lesson.lesson_id);
    await teacher.locator("[data-testid=version-select] option").first().waitFor({ state: "attached" });
    await teacher.click("[data-testid=open-session]");
    await teacher.waitForFunction(() => /^[2-9A-Z]{6}$/.test(document.querySelector("[data-testid=join-code]")?.textContent || ""));
    const code = (await teacher.textContent("[data-testid=join-code]")).trim();
    session = { code, id: new URL(teacher.url()).searchParams.get("session") };
    assert.ok(session.id, "the console URL carries the session id");
    await waitConn(teacher, "live");
    await waitStep(teacher, 0);

    for (const name of ["lea", "leo"]) {
      const p = (pages[name] = await openPage(browser, w.base, { token: tokens[name], viewport: name === "leo" ? { width: 390, height: 844 } : undefined }));
      await p.goto(`/learn?code=${code}`);
      await waitConn(p, "live");
      await waitStep(p, 0);
    }
    await teacher.waitForFunction(() => document.querySelector("[data-testid=presence]")?.textContent === "3");

    for (let k = 1; k <= 3; k++) {
      await teacher.click("[data-testid=next]");
      await teacher.waitForFunction((s) => document.querySelector("[data-testid=step]")?.textContent.startsWith(`Step ${s} `), k);
    }
    await waitStep(teacher, 3);
    await waitStep(pages.lea, 3);
    await waitStep(pages.leo, 3);
    const [t, a, b] = [await svgOf(teacher), await svgOf(pages.lea), await svgOf(pages.leo)];
    assert.equal(a, b, "both learners render the same frame");
    assert.equal(a, t, "the learners render the teacher's frame");
    assert.match(a, /data-id="line"/, "frame 3 shows the number line");
    assert.equal(await pages.lea.textContent("[data-testid=narration]"), "Every fraction has a place on this line.");
    if (SHOTS) for (const [n, p] of Object.entries(pages)) await screenshot(p, `live-${n}`);
  }));

test("a learner cannot move the cursor: no controls, and a forced message is refused", { timeout: 60_000 }, () =>
  withScreenshots("learner-authority", shots, async () => {
    assert.ok(session, "needs the live session");
    const lea = pages.lea;
    for (const sel of ["[data-testid=next]", "[data-testid=prev]", "[data-testid=pause]", "[data-testid=end]"]) {
      assert.equal(await lea.locator(sel).count(), 0, `learner page has no ${sel}`);
    }
    assert.equal(await lea.getByRole("button", { name: /next|prev|pause|resume|end session/i }).count(), 0);
    // Force a teacher command through the page's own socket.
    const sent = await lea.evaluate(() => window.dropple.client.send({ type: "cursor", step: 0 }));
    assert.equal(sent, true);
    await lea.waitForFunction(() => document.querySelector("[data-testid=last-error]")?.dataset.code === "authority_violation");
    const status = await api.call("GET", `/v1/sessions/${session.id}`, { token: tokens.tom });
    assert.equal(status.json.cursor.step, 3, "the cursor did not move");
    await new Promise((r) => setTimeout(r, 300));
    for (const p of [pages.teacher, pages.lea, pages.leo]) assert.equal(await canvasStep(p), "3");
  }));

test("closing the teacher's page pauses both learners; reopening resumes", { timeout: 90_000 }, () =>
  withScreenshots("teacher-loss", shots, async () => {
    assert.ok(session, "needs the live session");
    await pages.teacher.context().close();
    delete pages.teacher;
    await waitConn(pages.lea, "paused");
    await waitConn(pages.leo, "paused");
    assert.equal(await canvasStep(pages.lea), "3", "the frame stays frozen");
    if (SHOTS) await screenshot(pages.leo, "paused-leo");

    const teacher = (pages.teacher = await openPage(browser, w.base, { token: tokens.tom }));
    await teacher.goto(`/teach?session=${session.id}&code=${session.code}`);
    await waitConn(teacher, "live");
    await waitConn(pages.lea, "live");
    await waitConn(pages.leo, "live");
    await waitStep(teacher, 3);
    assert.equal((await teacher.textContent("[data-testid=join-code]")).trim(), session.code);
    // Driving works again, with arrow keys this time.
    await teacher.locator("body").press("ArrowRight");
    await waitStep(pages.lea, 4);
    await waitStep(pages.leo, 4);
    if (SHOTS) await screenshot(teacher, "teacher-resumed");
  }));

test("an author builds and publishes a lesson in the studio", { timeout: 90_000 }, () =>
  withScreenshots("author", shots, async () => {
    const p = (pages.author = await openPage(browser, w.base, { token: tokens.ada }));
    await p.goto("/author");
    await p.fill("[data-testid=title]", "Plants need light");
    await p.fill("[data-testid=summary]", "Leaves turn light into sugar.");
    const canvas = p.locator("[data-testid=canvas] svg");
    await canvas.waitFor();
    const box = await canvas.boundingBox();
    const at = (fx, fy) => ({ x: box.x + box.width * fx, y: box.y + box.height * fy });

    await p.fill("[data-testid=element-text]", "Sun");
    await p.click("[data-testid=tool-dot]");
    let pt = at(0.2, 0.25);
    await p.mouse.click(pt.x, pt.y);
    await p.fill("[data-testid=element-text]", "Leaf");
    await p.click("[data-testid=tool-box]");
    pt = at(0.6, 0.6);
    await p.mouse.click(pt.x, pt.y);
    await p.fill("[data-testid=element-text]", "Photosynthesis");
    await p.click("[data-testid=tool-label]");
    pt = at(0.5, 0.9);
    await p.mouse.click(pt.x, pt.y);
    await p.click("[data-testid=tool-connect]");
    await p.locator('[data-id="dot1"] circle').click();
    await p.locator('[data-id="box1"] rect').first().click();
    // Drag the leaf with the select tool.
    await p.getByRole("button", { name: "Select / move" }).click();
    const leaf = await p.locator('[data-id="box1"] rect').first().boundingBox();
    await p.mouse.move(leaf.x + leaf.width / 2, leaf.y + leaf.height / 2);
    await p.mouse.down();
    await p.mouse.move(leaf.x + leaf.width / 2 + 40, leaf.y + leaf.height / 2 - 30, { steps: 5 });
    await p.mouse.up();
    // Remove the label again.
    await p.click("[data-testid=tool-remove]");
    await p.locator('[data-id="label1"] text').click();
    await p.fill("[data-testid=narration-input]", "The sun shines on the leaf.");
    await p.press("[data-testid=narration-input]", "Enter");
    await p.fill("[data-testid=chapter-input]", "Light");
    await p.press("[data-testid=chapter-input]", "Enter");
    await p.fill("[data-testid=quiz-prompt]", "What do leaves need?");
    await p.fill("[data-testid=quiz-choices]", "Light\nNoise\nWind");
    await p.fill("[data-testid=quiz-answer]", "1");
    await p.getByRole("button", { name: "Add question" }).click();

    const types = await p.locator("[data-testid=timeline] li").evaluateAll((lis) => lis.map((li) => li.dataset.type));
    assert.deepEqual(types, ["element.added", "element.added", "element.added", "edge.added", "element.moved", "element.removed", "narration", "chapter"]);
    await p.click("[data-testid=publish]");
    await p.waitForFunction(() => document.querySelector("[data-testid=publish-status]")?.dataset.lessonId);
    const status = p.locator("[data-testid=publish-status]");
    assert.match(await status.textContent(), /Published “Plants need light” version 1/);
    const lessonId = await status.getAttribute("data-lesson-id");
    if (SHOTS) await screenshot(p, "author-published");

    const artifact = await api.call("GET", `/v1/lessons/${lessonId}/versions/1`, { token: tokens.ada });
    assert.equal(artifact.status, 200, artifact.text);
    assert.equal(artifact.json.title, "Plants need light");
    assert.deepEqual(artifact.json.timeline.map((i) => i.type), types);
    assert.equal(artifact.json.quiz.length, 1);
    const last = await api.call("GET", `/v1/lessons/${lessonId}/versions/1/frames/8`, { token: tokens.lea });
    assert.deepEqual(Object.keys(last.json.state.elements).sort(), ["box1", "dot1"]);
    assert.ok(Object.keys(last.json.state.edges).length === 1);

    // A learner plays it self-paced and sees the final frame.
    const learner = (pages.selfpaced = await openPage(browser, w.base, { token: tokens.lea }));
    await learner.goto(`/learn?lesson=${lessonId}&version=1&step=8`);
    await waitStep(learner, 8);
    assert.equal(await learner.locator("[data-testid=canvas] [data-id]").evaluateAll((els) => els.filter((e) => e.classList.contains("el")).length), 2);
    if (SHOTS) await screenshot(learner, "selfpaced");
  }));

test("the verify page shows valid for a real certificate and invalid for a tampered one", { timeout: 90_000 }, () =>
  withScreenshots("verify", shots, async () => {
    const probe = await api.call("POST", "/v1/attempts", { token: tokens.lea, body: { lesson_id: lesson.lesson_id, version: 1 } });
    assert.equal(probe.status, 201, probe.text);
    const attempt = probe.json.attempt_id;
    for (const q of DEMO_LESSON.quiz) {
      const r = await api.call("POST", `/v1/attempts/${attempt}/answers`, { token: tokens.lea, body: { question_id: q.id, answer: q.answer } });
      assert.ok(r.status < 300, r.text);
    }
    const sub = await api.call("POST", `/v1/attempts/${attempt}/submit`, { token: tokens.lea, body: {} });
    assert.equal(sub.status, 200, sub.text);
    assert.equal(sub.json.passed, true);
    const certId = sub.json.certificate_id;
    assert.ok(certId);

    const p = (pages.verify = await openPage(browser, w.base, { token: tokens.lea }));
    await p.goto(`/verify?id=${encodeURIComponent(certId)}`);
    await p.waitForFunction(() => document.querySelector("[data-testid=verdict]")?.dataset.valid !== undefined, null, { timeout: 20_000 });
    assert.equal(await p.getAttribute("[data-testid=verdict]", "data-valid"), "true", await p.textContent("#browser-checks"));
    assert.equal(await p.getAttribute("[data-testid=browser-verdict]", "data-valid"), "true");
    assert.equal(await p.locator("[data-testid=browser-checks] li[data-check=proof][data-ok=true]").count(), 1);
    if (SHOTS) await screenshot(p, "verify-valid");

    // Tamper: change who earned it.
    const doc = JSON.parse(await p.inputValue("[data-testid=credential]"));
    doc.credentialSubject = { ...doc.credentialSubject, id: `${doc.credentialSubject?.id ?? "urn:x"}-forged` };
    await p.fill("[data-testid=credential]", JSON.stringify(doc, null, 2));
    await p.click("[data-testid=verify]");
    await p.waitForFunction(() => document.querySelector("[data-testid=verdict]")?.dataset.valid === "false", null, { timeout: 20_000 });
    assert.equal(await p.getAttribute("[data-testid=browser-verdict]", "data-valid"), "false");
    assert.equal(await p.locator("[data-testid=browser-checks] li[data-check=proof][data-ok=false]").count(), 1);
    if (SHOTS) await screenshot(p, "verify-tampered");
  }));

test("every page loads its stamped modules and stylesheet without script errors", { timeout: 60_000 }, () =>
  withScreenshots("pages", shots, async () => {
    const { stamps } = assetPlan();
    const p = (pages.tour = await openPage(browser, w.base, { token: tokens.tom }));
    const loaded = [];
    p.on("response", (r) => {
      const u = new URL(r.url());
      if (/^\/(js|css)\//.test(u.pathname)) loaded.push({ path: u.pathname, v: u.searchParams.get("v"), status: r.status(), page: new URL(p.url()).pathname });
    });
    for (const path of PAGES) {
      await p.goto(path);
      await p.waitForLoadState("load");
      await p.waitForTimeout(300);
      assert.ok(await p.locator("#app-header nav").count(), `${path} has the header`);
      if (SHOTS) await screenshot(p, `page${path.replace("/", "-") || "-home"}`);
    }
    const problems = p.problems.filter((m) => !/Failed to load resource/.test(m));
    assert.deepEqual(problems, []);
    assert.ok(loaded.length >= PAGES.length * 3, `${loaded.length} module/stylesheet loads seen`);
    for (const l of loaded) {
      assert.equal(l.v, stamps[l.path.slice(1)], `${l.page} loaded ${l.path} with the current stamp`);
      assert.ok(l.status === 200 || l.status === 304, `${l.path}: ${l.status}`);
    }
    for (const page of ["/teach", "/learn", "/replay"]) {
      const mods = new Set(loaded.filter((l) => l.page === page).map((l) => l.path));
      for (const m of ["/js/api.js", "/js/ui.js", "/js/auth.js", "/js/canvas.js", "/js/classroom-client.js", "/css/app.css"]) assert.ok(mods.has(m), `${page} loaded ${m} (imports carry stamps too)`);
    }
  }));

// ---------------------------------------------------------------- caching

test("static assets: stamped names are cached for a year, pages and the service worker are revalidated", { timeout: 60_000 }, async () => {
  const { stamps } = assetPlan();
  const get = (path, headers = {}) => fetch(w.base + path, { headers, redirect: "manual", signal: AbortSignal.timeout(10_000) });
  for (const path of [...PAGES, "/sw.js", "/manifest.webmanifest"]) {
    const r = await get(path);
    assert.equal(r.status, 200, path);
    assert.equal(r.headers.get("cache-control"), "no-cache", path);
    const body = await r.text();
    const etag = r.headers.get("etag");
    assert.ok(etag, `${path} has an ETag to revalidate against`);
    assert.equal((await get(path, { "if-none-match": etag })).status, 304, `${path} revalidates to 304`);
    if (path.startsWith("/") && !path.includes(".")) {
      const refs = [...body.matchAll(/(?:src|href)="(\/(?:js|css)\/[^"]+)"/g)].map((m) => m[1]);
      assert.equal(refs.length, 2, `${path} references one module and one stylesheet`);
      for (const ref of refs) assert.equal(ref.split("?v=")[1], stamps[ref.slice(1).split("?")[0]], `${path} → ${ref}`);
    }
  }
  for (const [key, v] of Object.entries(stamps)) {
    const r = await get(`/${key}?v=${v}`);
    assert.equal(r.status, 200, key);
    assert.equal(r.headers.get("cache-control"), "public, max-age=31536000, immutable", key);
    assert.match(r.headers.get("content-type"), key.endsWith(".css") ? /^text\/css/ : /javascript/, key);
    await r.arrayBuffer();
  }
  const headersFile = await get("/_headers");
  assert.notEqual(headersFile.status, 200, "the _headers file itself is not served");
  await headersFile.arrayBuffer();
});
