// Verify an Open Badges 3.0 credential twice: in the browser (eddsa-jcs-2022:
// Ed25519 over SHA-256(JCS(proof options)) || SHA-256(JCS(document without
// proof)), key from the issuer profile at GET /v1/issuer, status list bit)
// and by the server (POST /v1/certificates/verify). Each check is shown.

import { api, describeError } from "./api.js?v=f3c5674699";
import { canonicalize } from "./jcs.js?v=239ec18f21";
import { shell, $, h, say, params } from "./ui.js?v=62c75c3c3d";

shell();

const B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
export function base58decode(s) {
  const bytes = []; // little-endian while accumulating
  for (const ch of s) {
    let carry = B58.indexOf(ch);
    if (carry < 0) throw new Error(`not base58: ${ch}`);
    for (let i = 0; i < bytes.length; i++) {
      carry += bytes[i] * 58;
      bytes[i] = carry & 0xff;
      carry >>= 8;
    }
    while (carry > 0) { bytes.push(carry & 0xff); carry >>= 8; }
  }
  for (const ch of s) { if (ch === "1") bytes.push(0); else break; }
  return new Uint8Array(bytes.reverse());
}
function b64urlDecode(s) {
  const b = atob(s.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (s.length % 4)) % 4));
  return Uint8Array.from(b, (c) => c.charCodeAt(0));
}
const sha256 = async (text) => new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
const typeIncludes = (v, t) => (Array.isArray(v) ? v.includes(t) : v === t);
const issuerId = (doc) => (typeof doc.issuer === "string" ? doc.issuer : doc.issuer?.id);

/** The public key for a verification method id, from the issuer profile. */
function keyFromProfile(profile, methodId) {
  const methods = Array.isArray(profile?.verificationMethod) ? profile.verificationMethod : [];
  const m = methods.find((x) => x.id === methodId);
  if (!m) return null;
  if (typeof m.publicKeyMultibase === "string" && m.publicKeyMultibase.startsWith("z")) {
    const raw = base58decode(m.publicKeyMultibase.slice(1));
    if (raw.length === 34 && raw[0] === 0xed && raw[1] === 0x01) return raw.slice(2);
  }
  if (m.publicKeyJwk?.kty === "OKP" && m.publicKeyJwk?.crv === "Ed25519" && m.publicKeyJwk.x) {
    const raw = b64urlDecode(m.publicKeyJwk.x);
    if (raw.length === 32) return raw;
  }
  return null;
}

function contextStartsWith(doc, prefix) {
  if (Array.isArray(doc) && Array.isArray(prefix)) return prefix.length <= doc.length && prefix.every((p, i) => JSON.stringify(p) === JSON.stringify(doc[i]));
  if (Array.isArray(doc)) return JSON.stringify(doc[0]) === JSON.stringify(prefix);
  return JSON.stringify(doc) === JSON.stringify(prefix);
}

/** eddsa-jcs-2022 verify; throws with a reason, resolves true when the signature holds. */
export async function verifyProof(doc, publicKey) {
  const { proof, ...unsecured } = doc;
  const { proofValue, ...options } = proof;
  if (typeof proofValue !== "string" || !proofValue.startsWith("z")) throw new Error("proofValue is not base58btc multibase");
  const signature = base58decode(proofValue.slice(1));
  if (signature.length !== 64) throw new Error("proofValue is not 64 bytes");
  const configs = [];
  if (options["@context"] !== undefined) {
    if (!contextStartsWith(doc["@context"], options["@context"])) throw new Error("proof @context is not a prefix of the document's");
    unsecured["@context"] = options["@context"];
    configs.push(options);
  } else {
    if (doc["@context"] !== undefined) configs.push({ ...options, "@context": doc["@context"] });
    configs.push(options);
  }
  let key;
  try {
    key = await crypto.subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]);
  } catch {
    throw new Error("this browser has no Ed25519 in WebCrypto");
  }
  const docHash = await sha256(canonicalize(unsecured));
  for (const config of configs) {
    const hash = new Uint8Array(64);
    hash.set(await sha256(canonicalize(config)), 0);
    hash.set(docHash, 32);
    if (await crypto.subtle.verify({ name: "Ed25519" }, key, signature, hash)) return true;
  }
  throw new Error("signature does not match");
}

async function statusBit(entry) {
  const url = entry.statusListCredential;
  const index = Number(entry.statusListIndex);
  const path = new URL(url, location.origin);
  // Only ask this origin (or the same path on it): the list is served by /v1/status-lists.
  const r = await fetch(path.origin === location.origin ? path.pathname : `/v1/status-lists/${path.pathname.split("/").pop()}`);
  if (!r.ok) throw new Error(`status list answered ${r.status}`);
  const list = await r.json();
  const encoded = list.credentialSubject?.encodedList;
  if (typeof encoded !== "string" || !encoded.startsWith("u")) throw new Error("status list has no multibase encodedList");
  const gz = b64urlDecode(encoded.slice(1));
  const stream = new Blob([gz]).stream().pipeThrough(new DecompressionStream("gzip"));
  const bits = new Uint8Array(await new Response(stream).arrayBuffer());
  const byte = bits[Math.floor(index / 8)];
  if (byte === undefined) throw new Error("index beyond the list");
  return ((byte >> (7 - (index % 8))) & 1) === 1;
}

async function browserVerify(doc) {
  const checks = [];
  const add = (name, ok, detail) => checks.push({ name, ok, detail });
  // structure
  const proof = doc?.proof;
  const structural = doc && typeof doc === "object" && !Array.isArray(doc) &&
    Array.isArray(doc["@context"]) && typeIncludes(doc.type, "VerifiableCredential") &&
    proof && proof.type === "DataIntegrityProof" && proof.cryptosuite === "eddsa-jcs-2022" &&
    proof.proofPurpose === "assertionMethod" && typeof proof.verificationMethod === "string" && typeof proof.proofValue === "string";
  add("structure", !!structural, structural ? `well-formed ${typeIncludes(doc.type, "OpenBadgeCredential") ? "OpenBadgeCredential" : "credential"}` : "not a credential with an eddsa-jcs-2022 DataIntegrityProof");
  if (!structural) return checks;
  // issuer key
  let key = null;
  try {
    const profile = await api("/v1/issuer", { auth: false });
    key = keyFromProfile(profile, proof.verificationMethod);
    const iss = issuerId(doc);
    const ofIssuer = iss && proof.verificationMethod.startsWith(`${iss}#`);
    add("issuer_key", !!key && !!ofIssuer,
      !key ? `unknown verification method ${proof.verificationMethod}` : ofIssuer ? `${proof.verificationMethod} is a key of ${iss}` : `${proof.verificationMethod} is not a key of the issuer ${iss}`);
  } catch (e) {
    add("issuer_key", false, `cannot load the issuer profile: ${describeError(e)}`);
  }
  // signature
  if (key) {
    try {
      await verifyProof(doc, key);
      add("proof", true, "Ed25519 signature valid (WebCrypto)");
    } catch (e) {
      add("proof", false, e.message);
    }
  } else {
    add("proof", false, "no public key to check the signature with");
  }
  // validity window
  const now = Date.now();
  const from = Date.parse(doc.validFrom);
  const until = doc.validUntil !== undefined ? Date.parse(doc.validUntil) : null;
  if (isNaN(from)) add("validity", false, "validFrom is not a date-time");
  else if (from > now) add("validity", false, "not yet valid (validFrom is in the future)");
  else if (until !== null && (isNaN(until) || until <= now)) add("validity", false, "expired (validUntil has passed)");
  else add("validity", true, until === null ? "valid since validFrom, no expiry" : "within validFrom..validUntil");
  // revocation
  const entry = Array.isArray(doc.credentialStatus) ? doc.credentialStatus[0] : doc.credentialStatus;
  if (!entry) add("status", true, "no credentialStatus");
  else {
    try {
      const revoked = await statusBit(entry);
      add("status", !revoked, revoked ? "revoked" : "not revoked");
    } catch (e) {
      add("status", true, `unknown: ${e.message}`);
    }
  }
  return checks;
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
    browserVerify(doc).catch((e) => [{ name: "browser", ok: false, detail: e.message }]),
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
