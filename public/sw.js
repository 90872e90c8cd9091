// Offline player. Pages are network-first with a cached fallback; modules and
// stylesheets carry a content stamp (`/js/x.js?v=<hash>`, written by
// scripts/version-assets.mjs) and never change under one name, so they are
// cache-first, like published lesson artifacts and frames (the API marks them
// immutable): a lesson played or saved once plays without a network.
// The browser build of the core (/core/, stamped like the modules) is in the
// shell: frames, folds and verification work offline after one visit. A
// learner's copy of a private lesson (no answer key) is cached too, so a
// lesson opened once plays offline; an author's copy never is. The issuer
// profile and status lists are network first with the last copy kept, so
// /verify checks a pasted credential offline (revocation as of that copy).
// Everything else under /v1 (events, cursor, sessions, writes) goes to the
// network only: truth is never cached.
//
// VERSION is a hash of every asset stamp (rewritten by the same script), so a
// new release is a new service worker with a new shell cache; the old one is
// deleted on activation.

const VERSION = "9d91f0ce22";
const SHELL = `dropple-shell-${VERSION}`;
const LESSONS = "dropple-lessons-v1";
const REFERENCE = "dropple-reference-v1";
const SHELL_URLS = [
  "/", "/teach", "/learn", "/author", "/market", "/verify", "/replay",
  "/css/app.css?v=f7ae708f13", "/manifest.webmanifest", "/icon.svg",
  "/js/api.js?v=f3c5674699", "/js/auth.js?v=b17be0e652", "/js/ui.js?v=f44cea9744", "/js/canvas.js?v=cc346232db", "/js/classroom-client.js?v=9100f94108", "/js/core.js?v=ce2217a5f0",
  "/core/dropple_core.js?v=f3faad27b1", "/core/dropple_core_bg.wasm?v=f3faad27b1",
  "/js/home.js?v=c373d17f34", "/js/teach.js?v=3db8aa5198", "/js/learn.js?v=538b2b0973", "/js/author.js?v=3c9ace7c78", "/js/market.js?v=abe947f654", "/js/verify.js?v=8c4e0c4191", "/js/replay.js?v=54bfacd734",
];
const VERSIONED = /^\/(js|css|core)\//;
const ISSUER = /^\/v1\/(issuer|status-lists\/\d+)$/;
const IMMUTABLE = /^\/v1\/lessons\/[^/]+\/versions\/\d+(\/frames\/\d+)?$/;

// Each shell URL on its own (addAll drops everything when one fetch
// fails), and again on activation for any that failed: a transient error
// must not leave the offline shell empty.
async function precache() {
  const cache = await caches.open(SHELL);
  await Promise.all(SHELL_URLS.map(async (url) => {
    if (!(await cache.match(url, { ignoreVary: true }))) await cache.add(url).catch(() => {});
  }));
}

self.addEventListener("install", (ev) => {
  ev.waitUntil(precache().catch(() => {}).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (ev) => {
  ev.waitUntil((async () => {
    for (const key of await caches.keys()) {
      if (key.startsWith("dropple-shell-") && key !== SHELL) await caches.delete(key);
    }
    await precache().catch(() => {});
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
  if (ISSUER.test(url.pathname)) {
    ev.respondWith(networkFirst(ev, req, REFERENCE));
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
  const hit = await cache.match(req, { ignoreVary: true });
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
  // Public immutable bodies, and a private one only without an answer key
  // (a learner's copy; an author's copy carries the key and is never kept).
  if (res.ok && cc.includes("immutable") && (!cc.includes("private") || await withoutKey(res.clone()))) {
    await cache.put(req, res.clone());
  }
  return res;
}

async function withoutKey(res) {
  try {
    const body = await res.json();
    return !Array.isArray(body?.quiz) || body.quiz.every((q) => !("answer" in q));
  } catch {
    return false;
  }
}

async function networkFirst(ev, req, name) {
  const cache = await caches.open(name);
  try {
    const res = await fetch(req);
    if (res.ok) ev.waitUntil(cache.put(req, res.clone()));
    return res;
  } catch (e) {
    const hit = await cache.match(req, { ignoreVary: true });
    if (hit) return hit;
    throw e;
  }
}

async function shellAsset(ev, req) {
  // Network first (always fresh online), the cached copy when offline.
  const cache = await caches.open(SHELL);
  try {
    const res = await fetch(req);
    if (res.ok && res.type === "basic") ev.waitUntil(cache.put(req, res.clone()));
    return res;
  } catch (e) {
    // ignoreVary: a page precached by the install (its own request headers)
    // must answer a navigation too, whatever that one sent.
    const cached = (await cache.match(req, { ignoreSearch: req.mode === "navigate", ignoreVary: true })) ||
      (req.mode === "navigate" ? await cache.match("/") : null);
    if (cached) return cached;
    throw e;
  }
}
