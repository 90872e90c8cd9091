// Small DOM helpers and the page shell (header, navigation, sign-in, service
// worker). No framework: pages build their DOM with `h` and update it directly.

import { claims } from "./api.js?v=f3c5674699";
import { mountSignIn } from "./auth.js?v=b17be0e652";

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

/** h("button", {class: "x", onclick: fn}, "text", child, ...) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "text") el.textContent = v;
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Show a message in a status line: kind = info | ok | error. */
export function say(el, text, kind = "info") {
  if (!el) return;
  el.textContent = text || "";
  el.dataset.kind = kind;
  el.hidden = !text;
}

const NAV = [
  ["/", "Home", null],
  ["/teach", "Teach", "teacher"],
  ["/learn", "Learn", null],
  ["/author", "Author", "author"],
  ["/market", "Market", null],
  ["/replay", "Replay", null],
  ["/verify", "Verify", null],
];

function renderNav(nav) {
  const c = claims();
  const here = location.pathname.replace(/\.html$/, "").replace(/\/$/, "") || "/";
  nav.replaceChildren(
    ...NAV.filter(([, , role]) => !role || !c || c.roles.includes(role)).map(([href, label]) =>
      h("a", { href, "aria-current": (href === here || (href === "/" && here === "/index")) ? "page" : null }, label),
    ),
  );
}

/**
 * Build the shared header into `<header id="app-header">` and register the
 * service worker. `onAuth` runs now and whenever the identity changes.
 */
export function shell({ onAuth } = {}) {
  const header = document.getElementById("app-header");
  if (header) {
    const nav = h("nav", { class: "main-nav", "aria-label": "Main" });
    const who = h("div", { class: "who" });
    header.replaceChildren(
      h("a", { class: "brand", href: "/" }, h("span", { class: "logo", "aria-hidden": "true" }, "◆"), " Dropple"),
      nav,
      who,
    );
    renderNav(nav);
    mountSignIn(who);
    window.addEventListener("dropple:auth", () => renderNav(nav));
  }
  if (onAuth) {
    onAuth(claims());
    window.addEventListener("dropple:auth", () => onAuth(claims()));
  }
  if ("serviceWorker" in navigator && location.protocol !== "file:") {
    navigator.serviceWorker.register("/sw.js").catch(() => {});
  }
}

// Was this page already controlled by the service worker when it loaded?
const controlledAtLoad = !!globalThis.navigator?.serviceWorker?.controller;

/**
 * Run `fn` once the service worker controls this page, when it did not at
 * load (a first visit): what the page fetched before did not pass through
 * the worker's caches, so `fn` fetches it again to keep it for offline use.
 */
export function onFirstControl(fn) {
  const sw = globalThis.navigator?.serviceWorker;
  if (!sw || controlledAtLoad) return;
  if (sw.controller) fn();
  else sw.addEventListener("controllerchange", () => fn(), { once: true });
}

// Icons drawn inline: emoji need a color-emoji font, which many systems
// (Debian's chromium among them) lack, and then show an empty box.
const ICONS = {
  cap: "M12 3 1 9l11 6 9-4.9V17h2V9L12 3zm-7 9.2V16c0 2 3.1 4 7 4s7-2 7-4v-3.8l-7 3.8-7-3.8z",
  check: "M9 16.2 4.8 12l-1.4 1.4L9 19 21 7l-1.4-1.4L9 16.2z",
  cross: "M19 6.4 17.6 5 12 10.6 6.4 5 5 6.4 10.6 12 5 17.6 6.4 19 12 13.4 17.6 19 19 17.6 13.4 12z",
  hand: "M4 4h16v12H7l-3 3V4zm7 3v4h2V7h-2zm0 5v2h2v-2h-2z",
  pause: "M6 5h4v14H6zM14 5h4v14h-4z",
};

/** An inline SVG icon (decorative: the text beside it says the same). */
export function icon(name, cls = "icon") {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("class", cls);
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute("d", ICONS[name] || "");
  path.setAttribute("fill", "currentColor");
  svg.append(path);
  return svg;
}

export function params() {
  return new URLSearchParams(location.search);
}

export function fmtPct(x) {
  return typeof x === "number" && isFinite(x) ? `${Math.round(x * 100)}%` : "—";
}

export function fmtTime(ms) {
  try { return new Date(ms).toLocaleTimeString(); } catch { return ""; }
}
