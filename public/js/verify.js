// Verify an Open Badges 3.0 credential twice: in the browser, with the
// server's own code (the core in the browser, core.js: structure,
// eddsa-jcs-2022 proof with the key from the issuer profile, validity window,
// the status list bit once the list's own proof holds), and by the server
// (POST /v1/certificates/verify). Each check is shown. The issuer profile and
// the status lists are kept by the service worker (network first), so after
// one online visit a pasted credential verifies offline, revocation as of the
// last status list seen.

import { api, describeError } from "./api.js?v=f3c5674699";
import { verifyCredential, statusEntry } from "./core.js?v=1506072a83";
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
  const result = verifyCredential(text, profile, list);
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

async function run() {
  const verdict = $("#verdict");
  const status = $("#load-status");
  say(status, "");
  let doc;
  try {
    doc = JSON.parse($("#credential").value);
  } catch (e) {
    say(status, `That is not JSON: ${e.message}`, "error");
    return;
  }
  verdict.hidden = false;
  verdict.textContent = "Checking…";
  delete verdict.dataset.valid;
  const subject = doc?.credentialSubject;
  $("#summary").replaceChildren(
    doc?.name ? h("p", {}, h("strong", {}, doc.name)) : null,
    subject?.achievement?.name ? h("p", {}, `Achievement: ${subject.achievement.name}`) : null,
    doc?.validFrom ? h("p", { class: "muted" }, `Issued ${doc.validFrom} by ${doc.issuer?.name ?? issuerId(doc) ?? "?"}`) : null,
  );
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
    say(status, describeError(e), "error");
  }
}

$("#verify").addEventListener("click", run);
$("#load-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const id = $("#cert-id").value.trim();
  if (id) {
    history.replaceState(null, "", `/verify?id=${encodeURIComponent(id)}`);
    load(id);
  }
});
const initial = params().get("id");
if (initial) {
  $("#cert-id").value = initial;
  load(initial);
}
