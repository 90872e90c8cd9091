// Verify an Open Badges 3.0 credential twice: in the browser, with the
// server's own code (the core in the browser, core.js: structure,
// eddsa-jcs-2022 proof with the key from the issuer profile, validity window,
// the status list bit once the list's own proof holds), and by the server
// (POST /v1/certificates/verify). Each check is shown. The issuer profile and
// the status lists are kept by the service worker (network first), so after
// one online visit a pasted credential verifies offline, revocation as of the
// last status list seen.

import { api, describeError } from "./api.js?v=f3c5674699";
import { verifyCredential, statusEntry } from "./core.js?v=ce2217a5f0";
import { shell, $, h, say, params, onFirstControl } from "./ui.js?v=f44cea9744";

shell();

const issuerId = (doc) => (typeof doc?.issuer === "string" ? doc.issuer : doc?.issuer?.id);

// What a first visit fetched before the service worker took control is
// fetched again once it has, so the worker keeps it for offline checks.
const fetched = new Set(["/v1/issuer"]);
onFirstControl(() => { for (const u of fetched) fetch(u).catch(() => {}); });

async function statusList(url) {
  const path = new URL(url, location.origin);
  // Only ask this origin (or the same path on it): the list is served by /v1/status-lists.
  const local = path.origin === location.origin ? path.pathname : `/v1/status-lists/${path.pathname.split("/").pop()}`;
  fetched.add(local);
  const r = await fetch(local);
  if (!r.ok) throw new Error(`status list answered ${r.status}`);
  return r.text();
}

/** The core's checks, with the issuer profile and the status list at hand (or why not). */
async function browserVerify(text, doc) {
  const notes = [];
  let profile = "";
  try {
    profile = JSON.stringify(await api("/v1/issuer", { auth: false }));
  } catch (e) {
    notes.push({ name: "issuer_profile", ok: false, detail: `cannot load the issuer profile: ${describeError(e)}` });
  }
  let list = "";
  const entry = doc && typeof doc === "object" ? statusEntry(text) : null;
  if (entry) {
    try {
      list = await statusList(entry[0]);
    } catch (e) {
      notes.push({ name: "status_list", ok: true, detail: `not at hand (${e.message}): revocation not checked` });
    }
  }
  const result = await verifyCredential(text, profile, list);
  return [...result.checks, ...notes];
}

function showChecks(list, checks) {
  list.replaceChildren(...checks.map((c) => h("li", { "data-ok": String(!!c.ok), "data-check": c.name }, h("strong", {}, c.name), `: ${c.detail ?? (c.ok ? "ok" : "failed")}`)));
}
function badge(el, valid, text) {
  el.textContent = text ?? (valid ? "valid" : "invalid");
  el.className = `badge ${valid === null ? "warn" : valid ? "ok" : "bad"}`;
  el.dataset.valid = String(valid);
}

/** Forget the last verdict: a new text is judged on its own. */
function clearResult() {
  const verdict = $("#verdict");
  verdict.hidden = true;
  verdict.textContent = "";
  delete verdict.dataset.valid;
  $("#certificate").hidden = true;
  $("#checks").hidden = true;
  $("#result-empty").hidden = false;
  $("#browser-checks").replaceChildren();
  $("#server-checks").replaceChildren();
  for (const b of [$("#browser-verdict"), $("#server-verdict")]) {
    b.textContent = "—";
    b.className = "badge";
    delete b.dataset.valid;
  }
}

// The recipient as the credential names them: a Dropple learner id, or
// whatever URI another issuer used.
const recipientOf = (subject) => {
  const id = String(subject?.name ?? subject?.id ?? "");
  return id.replace(/^urn:dropple:learner:/, "") || "(no recipient named)";
};
const dateInWords = (iso) => {
  const d = new Date(iso);
  return isNaN(d) ? String(iso ?? "an unknown date") : d.toLocaleDateString("en-GB", { day: "numeric", month: "long", year: "numeric" });
};

// A pasted credential travels in the link's fragment (never sent to any
// server): /verify#credential=<base64url of its JSON>.
const toBase64Url = (text) => btoa(String.fromCharCode(...new TextEncoder().encode(text))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const fromBase64Url = (b64) => new TextDecoder().decode(Uint8Array.from(atob(b64.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0)));

function showCertificate(doc, link) {
  const subject = doc?.credentialSubject;
  const score = Array.isArray(subject?.result) ? subject.result[0]?.value : undefined;
  $("#cert-recipient").textContent = recipientOf(subject);
  $("#cert-name").textContent = subject?.achievement?.name ?? doc?.name ?? "(an unnamed achievement)";
  $("#cert-score").textContent = score !== undefined ? `with a score of ${score}%` : "";
  $("#cert-date").textContent = dateInWords(doc?.validFrom);
  $("#cert-issuer").textContent = doc?.issuer?.name ?? issuerId(doc) ?? "an unnamed issuer";
  $("#share-link").href = link;
  $("#cert-share").hidden = false;
  delete $("#certificate").dataset.valid;
  $("#certificate").hidden = false;
}

async function run() {
  const verdict = $("#verdict");
  const status = $("#load-status");
  say(status, "");
  clearResult();
  const text = $("#credential").value.trim();
  if (!text) {
    say(status, "Paste a certificate (its JSON text) or type a certificate id first.", "warn");
    return;
  }
  let doc;
  try {
    doc = JSON.parse(text);
  } catch {
    say(status, /^\{/.test(text) && !/\}\s*$/.test(text)
      ? "This certificate text is cut off: it ends before the closing brace. Copy the whole credential, from the first { to the last }, and paste it again."
      : "This is not a certificate: the text is not valid JSON. Copy the whole credential file and paste it again.", "error");
    return;
  }
  if (!doc || typeof doc !== "object" || Array.isArray(doc)) {
    say(status, "This is not a certificate: it should be one JSON object with a credentialSubject and a proof.", "error");
    return;
  }
  verdict.hidden = false;
  verdict.textContent = "Checking…";
  $("#checks").hidden = false;
  $("#result-empty").hidden = true;
  // The link carries the credential itself, so anyone opens it, signed in or
  // not (a ?id= link opens only for the learner and their school).
  showCertificate(doc, `${location.origin}/verify#credential=${toBase64Url(JSON.stringify(doc))}`);
  const [browser, server] = await Promise.all([
    browserVerify($("#credential").value, doc).catch((e) => [{ name: "browser", ok: false, detail: e.message }]),
    api("/v1/certificates/verify", { method: "POST", body: doc, auth: false }).catch((e) => ({ error: e })),
  ]);
  const browserValid = browser.length > 0 && browser.every((c) => c.ok);
  showChecks($("#browser-checks"), browser);
  badge($("#browser-verdict"), browserValid);
  let serverValid = null;
  if (server.error) {
    const missing = server.error.status === 404 && /route/.test(server.error.message || "");
    showChecks($("#server-checks"), [{ name: "server", ok: false, detail: missing ? "the server has no verify endpoint yet" : describeError(server.error) }]);
    badge($("#server-verdict"), null, "unavailable");
  } else {
    serverValid = !!server.valid;
    showChecks($("#server-checks"), Array.isArray(server.checks) ? server.checks : []);
    badge($("#server-verdict"), serverValid);
  }
  const valid = browserValid && serverValid !== false;
  verdict.dataset.valid = String(valid);
  verdict.textContent = valid ? (serverValid === null ? "Valid (checked in the browser only)" : "Valid — the signature and every check hold") : "Invalid — see the failed checks";
  $("#certificate").dataset.valid = String(valid);
}

async function load(id) {
  const status = $("#load-status");
  say(status, "Loading…");
  try {
    const cred = await api(`/v1/certificates/${encodeURIComponent(id)}`);
    $("#credential").value = JSON.stringify(cred, null, 2);
    say(status, "");
    await run();
  } catch (e) {
    clearResult();
    const why = e.status === 401 || e.status === 403
      ? "Only the certificate's learner, or a teacher or governor of their school, opens it by id: sign in as one of them, or ask for its shared link."
      : e.status === 404 ? "No certificate has this id. Check the id, or paste the certificate itself." : describeError(e);
    say(status, why, "error");
  }
}

$("#verify").addEventListener("click", () => {
  // A pasted text is its own certificate: the link no longer names an id.
  if (params().get("id")) history.replaceState(null, "", "/verify");
  run();
});
// The button starts disabled: this module waits for the core (its top-level
// await), and the page's load event can come first, when a click would do nothing.
$("#verify").disabled = false;
$("#credential").addEventListener("input", () => { if (!$("#verdict").hidden) clearResult(); });
$("#copy-link").addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText($("#share-link").href);
    say($("#load-status"), "Link copied: whoever opens it sees this certificate checked in their browser.", "ok");
  } catch {
    say($("#load-status"), "Copy the link from “Link to this certificate” (your browser did not allow copying).", "info");
  }
});
$("#load-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const id = $("#cert-id").value.trim();
  if (id) {
    history.replaceState(null, "", `/verify?id=${encodeURIComponent(id)}`);
    load(id);
  }
});
// Opened from a link: the certificate comes first, the paste box after it.
const initial = params().get("id");
const shared = location.hash.startsWith("#credential=") ? location.hash.slice("#credential=".length) : "";
if (initial || shared) $("#result").parentElement.prepend($("#result"));
if (initial) {
  $("#cert-id").value = initial;
  load(initial);
} else if (shared) {
  try {
    $("#credential").value = JSON.stringify(JSON.parse(fromBase64Url(decodeURIComponent(shared))), null, 2);
    run();
  } catch {
    say($("#load-status"), "This link's certificate is damaged (cut off or changed): ask for the link again.", "error");
  }
}
