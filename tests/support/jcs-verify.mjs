// An independent offline verifier for Dropple credentials: Node's built-in
// Ed25519 and a small JCS (RFC 8785) canonicalizer, fed only the credential
// and the published issuer profile. Shares no code with the server.
import { createHash, createPublicKey, verify } from "node:crypto";
import { gunzipSync } from "node:zlib";

export function jcs(value) {
  if (value === null || typeof value !== "object") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(jcs).join(",")}]`;
  const keys = Object.keys(value).sort((a, b) => {
    // RFC 8785 sorts by UTF-16 code units, which is JS string comparison.
    return a < b ? -1 : a > b ? 1 : 0;
  });
  return `{${keys.map((k) => `${JSON.stringify(k)}:${jcs(value[k])}`).join(",")}}`;
}

const B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
export function base58decode(s) {
  let n = 0n;
  for (const c of s) {
    const d = B58.indexOf(c);
    if (d < 0) throw new Error("bad base58");
    n = n * 58n + BigInt(d);
  }
  const bytes = [];
  while (n > 0n) { bytes.unshift(Number(n & 0xffn)); n >>= 8n; }
  for (const c of s) { if (c !== "1") break; bytes.unshift(0); }
  return Buffer.from(bytes);
}

const sha256 = (s) => createHash("sha256").update(s, "utf8").digest();

/** eddsa-jcs-2022 verification with only the credential and the issuer profile. */
export function verifyOffline(credential, issuerProfile) {
  const { proof, ...doc } = credential;
  if (!proof || proof.cryptosuite !== "eddsa-jcs-2022" || proof.type !== "DataIntegrityProof") return false;
  const { proofValue, ...options } = proof;
  const vm = (issuerProfile.verificationMethod ?? []).find((m) => m.id === proof.verificationMethod);
  if (!vm) return false;
  let key;
  if (vm.publicKeyJwk) key = createPublicKey({ key: vm.publicKeyJwk, format: "jwk" });
  else {
    const raw = base58decode(vm.publicKeyMultibase.slice(1)).subarray(2);
    key = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: raw.toString("base64url") }, format: "jwk" });
  }
  const optionsWithContext = { ...options, "@context": options["@context"] ?? doc["@context"] };
  const hash = Buffer.concat([sha256(jcs(optionsWithContext)), sha256(jcs(doc))]);
  return verify(null, hash, key, base58decode(proofValue.slice(1)));
}

/** Read one bit of a Bitstring Status List credential (index 0 = MSB of byte 0). */
export function statusBit(listCredential, index) {
  const encoded = listCredential.credentialSubject.encodedList;
  const bits = gunzipSync(Buffer.from(encoded.slice(1), "base64url"));
  return (bits[Math.floor(index / 8)] >> (7 - (index % 8))) & 1;
}
