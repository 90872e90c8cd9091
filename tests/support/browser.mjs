// Headless Chrome or Chromium through playwright-core for the web app's tests
// (found by scripts/find-browser.mjs: CHROME_PATH / CHROMIUM_PATH, then the
// usual install locations; Debian's chromium on this project's machines).
// Every page gets its own browser context (a fresh, empty profile: its own
// localStorage, cookies and service workers), so a teacher and two learners
// are three independent users. Also the setup the browser test files share
// and the waits they use: every wait is for a condition the page code makes
// true, bounded in time, never a delay.
import { chromium } from "playwright-core";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { ROOT, startWorker, client } from "./worker.mjs";
import { findBrowser, installHint } from "../../scripts/find-browser.mjs";
import { DEMO_LESSON } from "../../scripts/seed.mjs";

export const RESULTS = join(ROOT, "test-results");
const ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

export async function launchBrowser() {
  const executablePath = findBrowser();
  if (!executablePath) throw new Error(installHint());
  return chromium.launch({ executablePath, args: ARGS, timeout: 60_000 });
}

/**
 * A new context and page on `base`. With `token`, the page starts signed in
 * (the token is put in localStorage before any script runs). Console errors
 * and page errors are collected in `page.problems`.
 */
export async function openPage(browser, base, { token, viewport = { width: 1200, height: 860 } } = {}) {
  const context = await browser.newContext({ baseURL: base, viewport });
  if (token) await context.addInitScript((t) => localStorage.setItem("dropple.token", t), token);
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  page.setDefaultNavigationTimeout(30_000);
  page.problems = [];
  page.on("pageerror", (e) => page.problems.push(`pageerror: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") page.problems.push(`console: ${m.text()}`); });
  return page;
}

/** Save a full-page screenshot to test-results/<name>.png (never throws). */
export async function screenshot(page, name) {
  try {
    mkdirSync(RESULTS, { recursive: true });
    const path = join(RESULTS, `${name.replace(/[^A-Za-z0-9._-]+/g, "-")}.png`);
    await page.screenshot({ path, fullPage: true, timeout: 10_000 });
    return path;
  } catch {
    return null;
  }
}

/** Run `fn`; on failure, screenshot every page still open, then rethrow. */
export async function withScreenshots(name, pages, fn) {
  try {
    return await fn();
  } catch (e) {
    for (const [label, page] of Object.entries(pages())) {
      if (page && !page.isClosed()) {
        const path = await screenshot(page, `${name}-${label}`);
        if (path) e.message += `\n  screenshot: ${path}`;
        if (page.problems?.length) e.message += `\n  ${label} problems: ${page.problems.slice(-5).join(" | ")}`;
      }
    }
    throw e;
  }
}

/**
 * What each browser test file starts from: the real worker (fresh state, a
 * free port), a development token for each of `users` (name → roles) in
 * `org`, the demo lesson published by `author`, and one browser. When a step
 * fails, what was already started is stopped before the error is thrown.
 */
export async function startWebApp({ org, users, author = "ada" }) {
  const w = await startWorker();
  try {
    const api = client(w.base);
    const tokens = {};
    for (const [name, roles] of Object.entries(users)) tokens[name] = await api.token(name, org, roles);
    const r = await api.call("POST", "/v1/lessons", { token: tokens[author], body: DEMO_LESSON });
    assert.equal(r.status, 201, r.text);
    const browser = await launchBrowser();
    return { w, api, tokens, lesson: r.json, browser };
  } catch (e) {
    await w.stop();
    throw e;
  }
}

/** Close the browser and stop the worker (both absent when `startWebApp` failed). */
export async function stopWebApp({ w, browser } = {}) {
  await browser?.close().catch(() => {});
  await w?.stop();
}

/** Wait until the page's canvas shows `step` (its data-step, set when that frame is drawn). */
export async function waitStep(page, step) {
  await page.waitForFunction((s) => document.querySelector("[data-testid=canvas]")?.dataset.step === String(s), step, { timeout: 10_000 });
}

/** Wait until the page's live connection badge says `text`. */
export async function waitConn(page, text) {
  await page.waitForFunction((t) => document.querySelector("[data-testid=conn-state]")?.textContent.includes(t), text, { timeout: 15_000 });
}

/**
 * A page is settled when it has loaded, its module has run and its header has
 * drawn the sign-in badge (which waits for a fetch: whether development
 * sign-in exists), and each of `content` (selectors of what the page fills
 * from its own fetches, see `pageContent`) is in the page.
 */
export async function settled(page, content = []) {
  await page.waitForLoadState("load");
  await page.waitForSelector("[data-testid=whoami]", { state: "attached", timeout: 15_000 });
  for (const s of content) await page.waitForSelector(s, { state: "attached", timeout: 15_000 });
}

/**
 * What the page at `path` fills from its own fetches once its module has run,
 * for a signed-in user with `roles` (an org with at least one lesson): a
 * teacher's lesson and version pickers, the lesson list, the listings and a
 * reviewer's or governor's queue, the past sessions and runs. Checks of a
 * whole page (accessibility, width, glyphs) read it once these are there.
 */
export function pageContent(path, roles) {
  const decides = roles.includes("reviewer") || roles.includes("governor");
  return {
    "/teach": roles.includes("teacher") ? ["[data-testid=version-select] option"] : [],
    "/learn": ["#lesson-list > li"],
    "/market": ["[data-testid=listings] > *", ...(decides ? ["[data-testid=queue] > li"] : [])],
    "/replay": ["[data-testid=my-sessions] > li", "[data-testid=my-runs] > li"],
  }[path] ?? [];
}

/** Wait until `selector` matches exactly `n` elements; on timeout, fail with how many it matched. */
export async function waitForCount(page, selector, n, message = selector, timeout = 15_000) {
  try {
    await page.waitForFunction(([s, k]) => document.querySelectorAll(s).length === k, [selector, n], { timeout });
  } catch (e) {
    if (e.name !== "TimeoutError") throw e;
    const seen = await page.locator(selector).count().catch(() => "?");
    assert.fail(`${message}: ${n} expected, still ${seen} after ${timeout} ms`);
  }
}
