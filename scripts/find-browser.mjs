#!/usr/bin/env node
// Finds a Chrome or Chromium for the browser tests, the way people expect:
// CHROME_PATH or CHROMIUM_PATH, then the usual install locations (Linux,
// macOS), then the usual command names on PATH. One list, used by
// scripts/setup.sh (which installs Debian's `chromium` when nothing is found
// and apt-get exists) and by tests/support/browser.mjs.
//
// As a command: prints the path and exits 0, or prints what to install and
// exits 1. Runs on the machine's Node (20+), before npm packages exist.
import { accessSync, constants, statSync } from "node:fs";
import { homedir, platform } from "node:os";
import { delimiter, join } from "node:path";
import { fileURLToPath } from "node:url";

const MAC_APPS = [
  "Google Chrome.app/Contents/MacOS/Google Chrome",
  "Chromium.app/Contents/MacOS/Chromium",
  "Google Chrome for Testing.app/Contents/MacOS/Google Chrome for Testing",
];
const LINUX_PATHS = [
  "/usr/bin/chromium", // Debian, Ubuntu's deb, Arch
  "/usr/bin/chromium-browser", // Fedora, older Ubuntu
  "/usr/bin/google-chrome", // Google's deb and rpm
  "/usr/bin/google-chrome-stable",
  "/snap/bin/chromium", // Ubuntu's snap
];
const COMMANDS = ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"];

function executable(p) {
  try {
    if (!statSync(p).isFile()) return false;
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Every place looked at, in order (env vars first). */
export function candidates(env = process.env, os = platform()) {
  const out = [];
  for (const name of ["CHROME_PATH", "CHROMIUM_PATH"]) if (env[name]) out.push({ path: env[name], from: name });
  if (os === "darwin") {
    for (const dir of ["/Applications", join(homedir(), "Applications")])
      for (const app of MAC_APPS) out.push({ path: join(dir, app), from: "install location" });
  } else {
    for (const p of LINUX_PATHS) out.push({ path: p, from: "install location" });
  }
  for (const dir of (env.PATH ?? "").split(delimiter).filter(Boolean))
    for (const c of COMMANDS) out.push({ path: join(dir, c), from: "PATH" });
  return out;
}

/** The browser to use, or null. A set variable that names no executable is
 *  an error, not a reason to quietly pick another browser. */
export function findBrowser(env = process.env, os = platform()) {
  for (const c of candidates(env, os)) {
    if (executable(c.path)) return c.path;
    if (c.from !== "install location" && c.from !== "PATH")
      throw new Error(`${c.from}=${c.path} is not an executable file`);
  }
  return null;
}

export function installHint(os = platform()) {
  const lines = ["No Chrome or Chromium found for the browser tests (tests/web.test.mjs).", "Install one, or point CHROME_PATH at one:"];
  if (os === "darwin") {
    lines.push("  brew install --cask chromium      (or Google Chrome from https://www.google.com/chrome/)");
    lines.push("  export CHROME_PATH=\"/Applications/Chromium.app/Contents/MacOS/Chromium\"  (if it lives elsewhere)");
  } else {
    lines.push("  Debian / Ubuntu: sudo apt-get install chromium   (Ubuntu may name it chromium-browser)");
    lines.push("  Fedora: sudo dnf install chromium     Arch: sudo pacman -S chromium");
    lines.push("  export CHROME_PATH=/path/to/chrome    (any Chrome or Chromium ≥ 120)");
  }
  return lines.join("\n");
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  let found = null;
  try {
    found = findBrowser();
  } catch (e) {
    console.error(`find-browser: ${e.message}`);
    process.exit(2);
  }
  if (found) console.log(found);
  else {
    console.error(installHint());
    process.exit(1);
  }
}
