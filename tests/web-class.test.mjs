// The classroom as teachers and learners meet it (issue 21), in headless
// Chromium against the real worker: a session opens on its first step, shown
// as a title slide; slide thumbnails jump the cursor; the count of connected
// learners leaves the teacher out; a student list says who is here and who
// answered what; questions are surfaced as they arrive; a quiz question opens
// when the lesson reaches it, with instant feedback; a deliberate pause is
// said in words; self-paced quizzes open as the learner advances, cannot be
// submitted before the end, and a failed attempt says what was right and the
// pass mark; no emoji glyph anywhere (no emoji font on Debian's chromium);
// and a join typed before signing in goes on once signed in. One worker and
// one browser for the file; every step waits for a condition, not a delay.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import {
  startWebApp, stopWebApp, openPage, withScreenshots, waitStep, waitConn, settled, pageContent, waitForCount,
} from "./support/browser.mjs";
import { DEMO_LESSON } from "../scripts/seed.mjs";

const ORG = "webclass";
const USERS = { ada: ["author"], tom: ["teacher"], lea: ["learner"], leo: ["learner"] };
let w, browser, tokens, lesson;
const pages = {};
const shots = () => pages;

before(async () => ({ w, browser, tokens, lesson } = await startWebApp({ org: ORG, users: USERS })));
after(() => stopWebApp({ w, browser }));

const Q1_STEP = DEMO_LESSON.quiz[0].step;
const STEPS = DEMO_LESSON.timeline.length;
const text = (page, sel) => page.locator(sel).textContent();
/** Characters that need a color-emoji font (the 🎓 of issue 21 showed as an empty box). */
const EMOJI = /[\u{1F000}-\u{1FAFF}\u{2600}-\u{26FF}\u{2700}-\u{27BF}\u{FE0F}]/u;
const ALLOWED_SYMBOLS = /[✓✔✘★☆]/gu; // dingbats DejaVu Sans draws

let live; // {teacher, lea, code}

test("a new session opens on its first step as a title slide; thumbnails move the cursor; the count leaves the teacher out", { timeout: 120_000 }, () =>
  withScreenshots("class-open", shots, async () => {
    const teacher = (pages.teacher = await openPage(browser, w.base, { token: tokens.tom }));
    await teacher.goto(`/teach?lesson=${lesson.lesson_id}`);
    await teacher.locator(`[data-testid=lesson-select] option[value="${lesson.lesson_id}"]`).waitFor({ state: "attached" });
    await teacher.locator("[data-testid=version-select] option").first().waitFor({ state: "attached" });
    await teacher.click("[data-testid=open-session]");
    await teacher.waitForFunction(() => /^[2-9A-Z]{6}$/.test(document.querySelector("[data-testid=join-code]")?.textContent || ""));
    const code = (await text(teacher, "[data-testid=join-code]")).trim();
    await waitConn(teacher, "live");
    await waitStep(teacher, 1);
    // Step 1 is a bare chapter title: a title slide, not an empty canvas.
    assert.equal(await teacher.getAttribute("[data-testid=canvas]", "data-title"), "true");
    assert.match(await teacher.locator("[data-testid=canvas] svg").textContent(), new RegExp(DEMO_LESSON.timeline[0].payload.title));
    assert.doesNotMatch(await text(teacher, "[data-testid=narration]"), /Empty canvas/);

    const lea = (pages.lea = await openPage(browser, w.base, { token: tokens.lea }));
    await lea.goto(`/learn?code=${code}`);
    await waitConn(lea, "live");
    await waitStep(lea, 1);
    assert.equal(await lea.getAttribute("[data-testid=canvas]", "data-title"), "true", "the learner sees the title slide too");
    // One learner here: "1", the teacher not counted; and she is on the student list.
    await teacher.waitForFunction(() => document.querySelector("[data-testid=presence]")?.textContent === "1");
    const row = teacher.locator("[data-testid=students] li[data-student=lea]");
    await row.getByText("here").waitFor();

    // A thumbnail per step (drawn once the console has fetched the lesson); clicking one moves everyone there.
    await waitForCount(teacher, "[data-testid=thumbnails] li", STEPS, "a thumbnail per step");
    await teacher.locator("[data-testid=thumb-5]").scrollIntoViewIfNeeded();
    await teacher.locator("[data-testid=thumb-5] svg").waitFor();
    await teacher.click("[data-testid=thumb-5]");
    await waitStep(teacher, 5);
    await waitStep(lea, 5);
    assert.equal(await teacher.getAttribute("[data-testid=thumb-5]", "aria-current"), "step");
    assert.match(await teacher.getAttribute("[data-testid=thumb-6]", "aria-label"), /Chapter “Halves” begins/);
    live = { teacher, lea, code };
  }));

test("a live quiz question opens when the teacher reaches its step; the learner gets instant feedback; the teacher sees who answered what, marked", { timeout: 120_000 }, () =>
  withScreenshots("class-quiz", shots, async () => {
    assert.ok(live, "needs the live session");
    const { teacher, lea } = live;
    // Before its step, no question: a line says when they come.
    await lea.getByTestId("quiz-waiting").getByText(/when the teacher reaches them/).waitFor();
    assert.equal(await lea.locator("#live-quiz fieldset").count(), 0);
    await teacher.click(`[data-testid=thumb-${Q1_STEP - 1}]`);
    await waitStep(lea, Q1_STEP - 1);
    assert.equal(await lea.locator("#live-quiz fieldset").count(), 0, "not one step early");
    await teacher.click("[data-testid=next]");
    await waitStep(lea, Q1_STEP);
    const q1 = lea.locator("#live-quiz fieldset[data-quiz=q1]");
    await q1.waitFor();
    assert.equal(await lea.locator("#live-quiz fieldset[data-quiz=q2]").count(), 0, "q2 waits for its own step");
    await lea.locator("#quiz-news").getByText(/New question/).waitFor();

    // A wrong answer: told at once, with the right one.
    await q1.getByRole("button", { name: "Near 0" }).click();
    const fb = q1.getByTestId("live-feedback");
    await fb.waitFor();
    assert.equal(await fb.getAttribute("data-correct"), "false");
    assert.match(await fb.textContent(), /the answer is In the middle/);

    // The teacher: the key marked on the tally, the answer on the student list, marked wrong.
    await teacher.waitForFunction(() => document.querySelector("[data-testid=tally-q1-0]")?.textContent === "1");
    const marked = await teacher.locator("[data-testid=quiz-tally] [data-quiz=q1] [data-correct=true]").allTextContents();
    assert.deepEqual(marked.map((t) => t.replace(/\s*\(correct answer\)/, "").trim()), ["In the middle"]);
    const chip = teacher.locator("[data-testid=students] li[data-student=lea] .answer-chip[data-question=q1]");
    await chip.waitFor();
    assert.match(await chip.getAttribute("class"), /wrong/);
    assert.match(await chip.textContent(), /Q1: Near 0/);
  }));

test("a learner's question is surfaced to the teacher as it arrives", { timeout: 60_000 }, () =>
  withScreenshots("class-ask", shots, async () => {
    assert.ok(live, "needs the live session");
    const { teacher, lea } = live;
    assert.equal(await teacher.locator("[data-testid=question-toast]").isHidden(), true);
    await lea.fill("#ask-text", "Is 2/4 the same as 1/2?");
    await lea.getByRole("button", { name: "Ask", exact: true }).click();
    const toast = teacher.getByTestId("question-toast");
    await toast.getByText("Is 2/4 the same as 1/2?").waitFor();
    assert.match(await toast.textContent(), /New question from lea/);
    assert.match(await text(teacher, "[data-testid=open-questions]"), /1 open/);
    // "Answer it" takes the teacher to the answer box.
    await toast.getByRole("link", { name: "Answer it" }).click();
    assert.equal(await teacher.evaluate(() => document.activeElement?.dataset.testid), "answer-input");
    await teacher.keyboard.type("Yes: two quarters make a half.");
    await teacher.keyboard.press("Enter");
    await toast.waitFor({ state: "hidden" });
    assert.equal(await text(teacher, "[data-testid=open-questions]"), "");
  }));

test("a deliberate pause is said to learners in words", { timeout: 60_000 }, () =>
  withScreenshots("class-pause", shots, async () => {
    assert.ok(live, "needs the live session");
    const { teacher, lea } = live;
    await teacher.click("[data-testid=pause]");
    await waitConn(lea, "paused");
    const words = lea.getByTestId("conn-detail");
    await words.getByText("The teacher paused the class").waitFor();
    assert.equal(await words.isVisible(), true);
    await teacher.click("[data-testid=resume]");
    await waitConn(lea, "live");
    await words.waitFor({ state: "hidden" });
  }));

test("self-paced: questions open as the learner advances, no submit before the end, and a failed attempt says what was right and the pass mark", { timeout: 120_000 }, () =>
  withScreenshots("class-self", shots, async () => {
    const p = (pages.self = await openPage(browser, w.base, { token: tokens.leo }));
    await p.goto(`/learn?lesson=${lesson.lesson_id}&version=1`);
    await waitStep(p, 1); // the first step, a title slide, not the empty canvas
    assert.equal(await p.getAttribute("[data-testid=canvas]", "data-title"), "true");
    const panel = p.locator("[data-testid=quiz-form]");
    await panel.getByTestId("submit-quiz").waitFor();
    assert.doesNotMatch(await panel.textContent(), /\bnull\b/, "no literal null under the quiz");
    assert.equal(await p.getByTestId("submit-quiz").isDisabled(), true, "nothing to submit before any content");
    assert.equal(await panel.locator("fieldset:visible").count(), 0);
    assert.match(await text(p, "[data-testid=quiz-gate]"), /appear as you go through the lesson/);
    assert.match(await panel.textContent(), new RegExp(`Pass mark: ${Math.round(DEMO_LESSON.pass_threshold * 100)}%`));

    const scrub = p.getByTestId("scrubber");
    await scrub.fill(String(Q1_STEP));
    await waitStep(p, Q1_STEP);
    await panel.locator("fieldset[data-quiz=q1]").waitFor({ state: "visible" });
    assert.equal(await panel.locator("fieldset[data-quiz=q2]").isHidden(), true);
    assert.equal(await p.getByTestId("submit-quiz").isDisabled(), true, "q2 still to come");
    // Going back keeps an opened question open.
    await p.getByRole("button", { name: "Previous step" }).click();
    await waitStep(p, Q1_STEP - 1);
    assert.equal(await panel.locator("fieldset[data-quiz=q1]").isVisible(), true);
    await scrub.fill(String(STEPS));
    await waitStep(p, STEPS);
    await panel.locator("fieldset[data-quiz=q2]").waitFor({ state: "visible" });
    assert.equal(await p.getByTestId("submit-quiz").isEnabled(), true);

    // Both wrong: not passed, each question says so, the pass mark is given, and the key is not handed out.
    await panel.locator("fieldset[data-quiz=q1]").getByLabel("Near 1").check();
    await panel.locator("fieldset[data-quiz=q2]").getByLabel("1/3").check();
    await p.click("[data-testid=submit-quiz]");
    await p.waitForFunction(() => document.querySelector("#quiz-status")?.dataset.passed === "false", null, { timeout: 20_000 });
    const status = await text(p, "#quiz-status");
    assert.match(status, /Score 0% — not passed/);
    assert.match(status, /0 of 2 right/);
    assert.match(status, new RegExp(`pass mark is ${Math.round(DEMO_LESSON.pass_threshold * 100)}%`));
    const fb = panel.getByTestId("question-feedback");
    assert.deepEqual(await fb.evaluateAll((els) => els.map((e) => e.dataset.correct)), ["false", "false"]);
    assert.match(await fb.first().textContent(), /your answer: Near 1/);
    assert.doesNotMatch(await panel.textContent(), /the answer is/, "a failed attempt does not hand out the key");

    // Try again: one right is a pass (pass mark 50%), the certificate comes with a drawn icon.
    await p.getByTestId("retry-quiz").click();
    assert.equal(await fb.first().isHidden(), true);
    await panel.locator("fieldset[data-quiz=q1]").getByLabel("In the middle").check();
    await panel.locator("fieldset[data-quiz=q2]").getByLabel("1/3").check();
    await p.click("[data-testid=submit-quiz]");
    await p.waitForFunction(() => document.querySelector("#quiz-status")?.dataset.passed === "true", null, { timeout: 20_000 });
    assert.deepEqual(await fb.evaluateAll((els) => els.map((e) => e.dataset.correct)), ["true", "false"]);
    assert.match(await fb.nth(1).textContent(), /the answer is 1\/4/, "once passed, the key is shown");
    const cert = p.getByTestId("certificate");
    await cert.locator("svg.icon").waitFor();
    assert.doesNotMatch(await cert.textContent(), EMOJI);
  }));

test("no page shows an emoji glyph (there is no emoji font to draw it)", { timeout: 90_000 }, () =>
  withScreenshots("class-glyphs", shots, async () => {
    const found = {};
    const check = async (label, page) => {
      const t = (await page.evaluate(() => document.body.innerText)).replace(ALLOWED_SYMBOLS, "");
      const m = t.match(EMOJI);
      if (m) found[label] = m[0];
    };
    for (const [label, page] of Object.entries(pages)) if (!page.isClosed()) await check(label, page);
    const p = (pages.glyphs = await openPage(browser, w.base, { token: tokens.lea }));
    for (const path of ["/", "/learn", "/teach", "/market", "/verify", "/replay", "/author"]) {
      await p.goto(path);
      await settled(p, pageContent(path, USERS.lea)); // the text the page fetched too
      await check(path, p);
    }
    assert.deepEqual(found, {});
  }));

test("on a phone, a code typed before signing in joins once signed in, without pressing Join again", { timeout: 90_000 }, () =>
  withScreenshots("class-phone-join", shots, async () => {
    assert.ok(live, "needs the live session");
    const p = (pages.phone = await openPage(browser, w.base, { viewport: { width: 375, height: 740 } }));
    await p.goto("/");
    await p.locator("[data-testid=dev-signin]").waitFor({ state: "attached" }); // the sign-in panel is built
    await p.fill("#join-code", live.code);
    await p.getByRole("button", { name: "Join", exact: true }).click();
    const status = p.locator("#join-status");
    await status.getByText(/Sign in first/).waitFor();
    // Sign in through the development form (it opened by itself).
    await p.locator("#si-user").waitFor({ state: "visible" });
    await p.fill("#si-user", "lia");
    await p.fill("#si-org", ORG);
    for (const role of ["author", "teacher", "reviewer", "learner", "governor"]) await p.locator(`#si-role-${role}`).setChecked(role === "learner");
    await p.locator("[data-testid=dev-signin] button[type=submit]").click();
    await p.waitForURL((u) => u.pathname === "/learn" && u.searchParams.get("code") === live.code, { timeout: 15_000 });
    await waitConn(p, "live");
    assert.equal(await p.locator("#need-signin").isHidden(), true);
    // Measure the player drawn: the lesson fetched (its title) and a frame on the canvas.
    await p.waitForFunction((t) => document.querySelector("#live-title")?.textContent === t && document.querySelector("[data-testid=canvas] svg"), DEMO_LESSON.title);
    assert.equal(await p.evaluate(() => document.documentElement.scrollWidth <= 376), true, "no sideways scroll");
  }));
