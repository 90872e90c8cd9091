// Headless Chrome or Chromium through playwright-core for the web app's tests
// (found by scripts/find-browser.mjs: CHROME_PATH / CHROMIUM_PATH, then the
// usual install locations; Debian's chromium on this project's machines).
// Every page gets its own browser context (a fresh, empty profile: its own
// localStorage, cookies and service workers), so a teacher and two learners
// are three independent users.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "./worker.mjs";
import { findBrowser, installHint } from "../../scripts/find-browser.mjs";

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
