// RFC 8785 JSON Canonicalization Scheme (JCS): object keys sorted by their
// UTF-16 code units, no whitespace, strings and numbers exactly as ECMAScript's
// JSON.stringify writes them (which is what RFC 8785 specifies).

export function canonicalize(value) {
  if (value === null || typeof value === "boolean") return JSON.stringify(value);
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new TypeError("JCS: non-finite numbers are not JSON");
    return JSON.stringify(value);
  }
  if (typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map((v) => canonicalize(v === undefined ? null : v)).join(",")}]`;
  if (typeof value === "object") {
    // Default sort compares UTF-16 code units, as RFC 8785 §3.2.3 requires.
    const keys = Object.keys(value).filter((k) => value[k] !== undefined).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalize(value[k])}`).join(",")}}`;
  }
  throw new TypeError(`JCS: cannot canonicalize ${typeof value}`);
}

/** SHA-256 of the canonical form, as bytes. */
export async function canonicalSha256(value) {
  const bytes = new TextEncoder().encode(canonicalize(value));
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}
