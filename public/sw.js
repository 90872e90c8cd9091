// Offline player. Pages are network-first with a cached fallback; modules and
// stylesheets carry a content stamp (`/js/x.js?v=<hash>`, written by
// scripts/version-assets.mjs) and never change under one name, so they are
// cache-first, like published lesson artifacts and frames (the API marks them
// immutable): a lesson played or saved once plays without a network.
// Everything else under /v1 (events, cursor, sessions, writes) goes to the
// network only: truth is never cached.
//
// VERSION is a hash of every asset stamp (rewritten by the same script), so a
// new release is a new service worker with a new shell cache; the old one is
// deleted on activation.

const VERSION = "f581a9f904";
const SHELL = `dropple-shell-${VERSION}`;
const LESSONS = "dropple-lessons-v1";
const SHELL_URLS = [
  "/", "/teach", "/learn", "/author", "/market", "/verify", "/replay",
  "/css/app.css?v=2e114e0aa9", "/manifest.webmanifest", "/icon.svg",
  "/js/api.js?v=f3c5674699", "/js/auth.js?v=b17be0e652", "/js/ui.js?v=62c75c3c3d", "/js/canvas.js?v=f1ffe275e9", "/js/classroom-client.js?v=629e650211", "/js/jcs.js?v=239ec18f21",
  "/js/home.js?v=d9c27c8cc3", "/js/teach.js?v=fb4ad438a6", "/js/learn.js?v=714c87948b", "/js/author.js?v=40f39c15d9", "/js/market.js?v=10e0fc1824", "/js/verify.js?v=5749da50ad", "/js/replay.js?v=d669a6dcc9",
];
const VERSIONED = /^\/(js|css)\//;
const IMMUTABLE = /^\/v1\/lessons\/[^/]+\/versions\/\d+(\/frames\/\d+)?$/;

self.addEventListener("install", (ev) => {
  ev.waitUntil(caches.open(SHELL).then((c) => c.addAll(SHELL_URLS)).catch(() => {}).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (ev) => {
  ev.waitUntil((async () => {
    for (const key of await caches.keys()) {
      if (key.startsWith("dropple-shell-") && key !== SHELL) await caches.delete(key);
    }
    await self.clients.claim();
  })());
});

self.addEventListener("fetch", (ev) => {
  const req = ev.request;
  if (req.method !== "GET") return;
  const url = new URL(req.url);
  if (url.origin !== location.origin) return;
  if (IMMUTABLE.test(url.pathname)) {
    ev.respondWith(lessonArtifact(req));
    return;
  }
  if (url.pathname.startsWith("/v1/")) return; // live data: network only
  if (VERSIONED.test(url.pathname) && url.searchParams.has("v")) {
    ev.respondWith(versionedAsset(ev, req));
    return;
  }
  ev.respondWith(shellAsset(ev, req));
});

async function versionedAsset(ev, req) {
  // Same name, same bytes: the cached copy is always right.
  const cache = await caches.open(SHELL);
  const hit = await cache.match(req);
  if (hit) return hit;
  const res = await fetch(req);
  if (res.ok && res.type === "basic") ev.waitUntil(cache.put(req, res.clone()));
  return res;
}

async function lessonArtifact(req) {
  const cache = await caches.open(LESSONS);
  const hit = await cache.match(req, { ignoreVary: true });
  if (hit) return hit;
  const res = await fetch(req);
  const cc = res.headers.get("cache-control") || "";
  // Only public immutable bodies: an author's copy (with the answer key) is private.
  if (res.ok && cc.includes("immutable") && !cc.includes("private")) {
    await cache.put(req, res.clone());
  }
  return res;
}

async function shellAsset(ev, req) {
  // Network first (always fresh online), the cached copy when offline.
  const cache = await caches.open(SHELL);
  try {
    const res = await fetch(req);
    if (res.ok && res.type === "basic") ev.waitUntil(cache.put(req, res.clone()));
    return res;
  } catch (e) {
    const cached = (await cache.match(req, { ignoreSearch: req.mode === "navigate" })) ||
      (req.mode === "navigate" ? await cache.match("/") : null);
    if (cached) return cached;
    throw e;
  }
}
