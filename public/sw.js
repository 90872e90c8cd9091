// Offline player. The app shell is network-first with a cached fallback; published
// lesson artifacts and frames never change (the API marks them immutable), so
// they are cache-first: a lesson played or saved once plays without a network.
// Everything else under /v1 (events, cursor, sessions, writes) goes to the
// network only: truth is never cached.

const VERSION = "v1";
const SHELL = `dropple-shell-${VERSION}`;
const LESSONS = "dropple-lessons-v1";
const SHELL_URLS = [
  "/", "/teach", "/learn", "/author", "/market", "/verify", "/replay",
  "/css/app.css", "/manifest.webmanifest", "/icon.svg",
  "/js/api.js", "/js/auth.js", "/js/ui.js", "/js/canvas.js", "/js/classroom-client.js", "/js/jcs.js",
  "/js/home.js", "/js/teach.js", "/js/learn.js", "/js/author.js", "/js/market.js", "/js/verify.js", "/js/replay.js",
];
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
  ev.respondWith(shellAsset(ev, req));
});

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
