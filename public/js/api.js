// The one way the web app talks to the API: a fetch wrapper that adds the
// bearer token kept in localStorage and turns every non-2xx answer into an
// ApiError carrying the contract's `{code, message}` (and the HTTP status).

const TOKEN_KEY = "dropple.token";

export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

export function getToken() {
  try { return localStorage.getItem(TOKEN_KEY) || ""; } catch { return ""; }
}

export function setToken(token) {
  try {
    if (token) localStorage.setItem(TOKEN_KEY, token);
    else localStorage.removeItem(TOKEN_KEY);
  } catch { /* storage disabled: the token lives only in this page */ }
  window.dispatchEvent(new CustomEvent("dropple:auth"));
}

/** Claims of the stored token (decoded, NOT verified: the API verifies). */
export function claims(token = getToken()) {
  if (!token) return null;
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const c = JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
    if (c.exp && c.exp * 1000 < Date.now()) return null;
    return { sub: c.sub, org: c.org, roles: Array.isArray(c.roles) ? c.roles : [], exp: c.exp };
  } catch {
    return null;
  }
}

export function hasRole(role, c = claims()) {
  return !!c && c.roles.includes(role);
}

/**
 * api(path, {method, body, auth, signal, headers}) → parsed JSON (or text for
 * non-JSON answers, or null for 204). Throws ApiError on non-2xx and on
 * network failures (code `network_error`, status 0).
 */
export async function api(path, { method = "GET", body, auth = true, signal, headers = {}, raw = false } = {}) {
  const h = { accept: "application/json", ...headers };
  const token = getToken();
  if (auth && token) h.authorization = `Bearer ${token}`;
  let payload;
  if (body !== undefined) {
    payload = JSON.stringify(body);
    h["content-type"] = "application/json";
  }
  let r;
  try {
    r = await fetch(path, { method, headers: h, body: payload, signal });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, "network_error", "The server cannot be reached. Check your connection.");
  }
  if (raw) return r;
  const text = await r.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = text; }
  }
  if (!r.ok) {
    const err = data && typeof data === "object" && data.error ? data.error : null;
    const code = err?.code || `http_${r.status}`;
    const message = err?.message || (r.status === 404 ? "Not found." : `The server answered ${r.status}.`);
    const e = new ApiError(r.status, code, message, data);
    if (r.status === 429) e.retryAfter = Number(r.headers.get("retry-after")) || undefined;
    throw e;
  }
  return data;
}

/** Human sentence for any error, for status lines and alerts. */
export function describeError(e) {
  if (e instanceof ApiError) return `${e.message} (${e.code})`;
  return e?.message || String(e);
}

/** A fresh UUID v4 (event ids). */
export function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
