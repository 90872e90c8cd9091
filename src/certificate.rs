//! Certificates: Open Badges 3.0 credentials secured with Data Integrity
//! proofs (cryptosuite `eddsa-jcs-2022`: Ed25519 over RFC 8785 canonical
//! JSON), issuer keys as Multikey / JWK, and Bitstring Status Lists for
//! revocation. Pure: time and keys are parameters, nothing here panics on
//! any input.
//!
//! The Ed25519 arithmetic itself is the platform's: Web Crypto in the worker
//! and the browser (`crate::webcrypto`), ed25519-dalek in the native tests.
//! Here are the rules around it: what is signed ([`to_sign`]), what a proof
//! claims ([`signature_check`]) and what a verification concludes
//! ([`verify`]). A curve implementation in the wasm would cost ~10 KB
//! gzipped of every cold start for a few signatures a minute.

use crate::base64url;
use crate::json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::canonical::to_canonical_string;

pub const VC_CONTEXT: &str = "https://www.w3.org/ns/credentials/v2";
pub const OB_CONTEXT: &str = "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json";
pub const CID_CONTEXT: &str = "https://www.w3.org/ns/cid/v1";
pub const CRYPTOSUITE: &str = "eddsa-jcs-2022";
/// Entries in one status list (the spec's minimum, 16 KiB uncompressed).
pub const STATUS_LIST_SIZE: usize = 131_072;
/// Multicodec prefix of an Ed25519 public key (varint 0xed).
const ED25519_PUB_PREFIX: [u8; 2] = [0xed, 0x01];
/// Largest decompressed status list accepted (a gzip bomb guard).
const MAX_STATUS_LIST_BYTES: u64 = 16 * 1024 * 1024;

// ---------------------------------------------------------------- keys

/// The issuer's Ed25519 signing key as configured: its 32-byte seed and its
/// key id (for rotation). Its public half comes from the platform.
#[derive(Clone)]
pub struct IssuerSecret {
    seed: [u8; 32],
    key_id: String,
}

impl std::fmt::Debug for IssuerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerSecret").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

/// A published (public) issuer key: what `issuer_profile` lists, including
/// retired keys that still have to verify older certificates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicIssuerKey {
    pub key_id: String,
    pub public_key: [u8; 32],
}

impl PublicIssuerKey {
    /// "z" + base58btc(0xed 0x01 ++ public key): starts with "z6Mk".
    pub fn multikey(&self) -> String {
        multikey_encode(&self.public_key)
    }
    pub fn jwk(&self) -> Value {
        json!({"kty": "OKP", "crv": "Ed25519", "x": base64url::encode(&self.public_key)})
    }
    /// `{issuer_id}#{key_id}`
    pub fn verification_method(&self, issuer_id: &str) -> String {
        format!("{issuer_id}#{}", self.key_id)
    }
}

fn check_key_id(key_id: &str) -> Result<(), String> {
    let ok = !key_id.is_empty()
        && key_id.len() <= 64
        && key_id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    ensure(ok, "key id must be 1-64 characters of A-Z a-z 0-9 - _ .")
}

impl IssuerSecret {
    pub fn from_seed(seed: &[u8; 32], key_id: &str) -> Result<Self, String> {
        check_key_id(key_id)?;
        Ok(IssuerSecret { seed: *seed, key_id: key_id.to_owned() })
    }

    /// Parse a 32-byte seed from secret text: 64 hex digits, or base64url /
    /// base64 (padded or not). Surrounding whitespace is ignored.
    pub fn parse(secret: &str, key_id: &str) -> Result<Self, String> {
        let text = secret.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).map_err(|e| format!("bad hex key: {e}"))?
        } else {
            base64url::decode_lenient(text).ok_or_else(|| "signing key must be hex or base64url".to_owned())?
        };
        let seed: [u8; 32] =
            bytes.as_slice().try_into().map_err(|_| format!("signing key must be 32 bytes, got {}", bytes.len()))?;
        Self::from_seed(&seed, key_id)
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }
    pub fn seed(&self) -> &[u8; 32] {
        &self.seed
    }
    /// The published key, once the platform has derived `public_key` from the seed.
    pub fn public(&self, public_key: [u8; 32]) -> PublicIssuerKey {
        PublicIssuerKey { key_id: self.key_id.clone(), public_key }
    }
}

pub fn multikey_encode(public_key: &[u8; 32]) -> String {
    let mut bytes = ED25519_PUB_PREFIX.to_vec();
    bytes.extend_from_slice(public_key);
    format!("z{}", bs58::encode(bytes).into_string())
}

pub fn multikey_decode(multikey: &str) -> Option<[u8; 32]> {
    let bytes = bs58::decode(multikey.strip_prefix('z')?).into_vec().ok()?;
    bytes.strip_prefix(&ED25519_PUB_PREFIX[..])?.try_into().ok()
}

/// Retired keys from `CERT_PREVIOUS_KEYS`: a JSON object of key id → public
/// key, as Multikey (`z6Mk…`) or 64 hex digits. Empty text is no keys.
/// Retired keys are published and verify older certificates; they never sign.
pub fn parse_previous_keys(text: &str) -> Result<Vec<PublicIssuerKey>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let map = value.as_object().ok_or("must be a JSON object of key id to public key")?;
    let mut keys = Vec::new();
    for (key_id, public) in map {
        check_key_id(key_id).map_err(|e| format!("{key_id}: {e}"))?;
        let text = public.as_str().map(str::trim).unwrap_or_default();
        let decoded = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).ok().and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        } else {
            multikey_decode(text)
        };
        // Web Crypto takes any 32 bytes as a key: one that is no curve point
        // is published and never verifies anything.
        let public_key =
            decoded.ok_or_else(|| format!("{key_id}: public key must be a z6Mk… Multikey or 64 hex digits"))?;
        keys.push(PublicIssuerKey { key_id: key_id.clone(), public_key });
    }
    Ok(keys)
}

/// The keys the issuer profile publishes: the current one first, then the
/// retired ones (a retired entry reusing the current id is ignored).
pub fn published_keys(current: &PublicIssuerKey, previous: Vec<PublicIssuerKey>) -> Vec<PublicIssuerKey> {
    let mut keys = vec![current.clone()];
    keys.extend(previous.into_iter().filter(|k| k.key_id != current.key_id));
    keys
}

/// The status list and index of slot `n` (0, 1, 2, … as the edge hands them
/// out): lists are numbered from 1 and filled in order, `STATUS_LIST_SIZE`
/// entries each.
pub fn status_slot(n: u64) -> (u64, u64) {
    let size = STATUS_LIST_SIZE as u64;
    (1 + n / size, n % size)
}

/// The issuer Profile served at `GET /v1/issuer`: one Multikey verification
/// method per key (id `{issuer_id}#{key_id}`, with publicKeyMultibase and
/// publicKeyJwk), all listed under assertionMethod.
pub fn issuer_profile(issuer_id: &str, name: &str, keys: &[PublicIssuerKey]) -> Value {
    let method = |k: &PublicIssuerKey| {
        json!({
            "id": k.verification_method(issuer_id), "type": "Multikey", "controller": issuer_id,
            "publicKeyMultibase": k.multikey(), "publicKeyJwk": k.jwk(),
        })
    };
    let ids: Vec<String> = keys.iter().map(|k| k.verification_method(issuer_id)).collect();
    json!({
        "@context": [VC_CONTEXT, OB_CONTEXT, CID_CONTEXT], "id": issuer_id, "type": ["Profile"],
        "name": name, "verificationMethod": keys.iter().map(method).collect::<Vec<_>>(),
        "assertionMethod": ids,
    })
}

/// Find a verification method's public key in a published issuer profile
/// (Multikey first, then JWK) — a ready `resolve_key` for `verify`.
pub fn resolve_from_profile(profile: &Value, verification_method: &str) -> Option<[u8; 32]> {
    let method = profile
        .get("verificationMethod")?
        .as_array()?
        .iter()
        .find(|m| m.get("id").and_then(Value::as_str) == Some(verification_method))?;
    if let Some(key) = method.get("publicKeyMultibase").and_then(Value::as_str).and_then(multikey_decode) {
        return Some(key);
    }
    let x = method.get("publicKeyJwk")?.get("x")?.as_str()?;
    base64url::decode(x)?.as_slice().try_into().ok()
}

// ---------------------------------------------------------------- credential

/// Everything a certificate says; the adapter supplies ids, time and index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CredentialInput {
    /// e.g. `urn:uuid:…`
    pub certificate_id: String,
    /// the issuer Profile URL, e.g. `https://host/v1/issuer`
    pub issuer_id: String,
    pub issuer_name: String,
    /// pseudonymous learner id; used as-is if it contains ':', else as
    /// `urn:dropple:learner:{learner_id}`
    pub learner_id: String,
    pub lesson_id: String,
    pub lesson_version: u32,
    pub lesson_title: String,
    pub lesson_sha256: String,
    pub criteria: String,
    /// 0..1
    pub score: f64,
    pub attempt_run_id: String,
    pub seq_from: u64,
    pub seq_to: u64,
    pub events_sha256: String,
    /// RFC 3339
    pub valid_from: String,
    pub status_list_url: String,
    pub status_index: u64,
}

pub fn achievement_id(lesson_id: &str, version: u32) -> String {
    format!("urn:dropple:lesson:{lesson_id}:v{version}")
}

/// The unsigned Open Badges 3.0 `OpenBadgeCredential`.
pub fn build_credential(input: &CredentialInput) -> Value {
    let subject_id = if input.learner_id.contains(':') {
        input.learner_id.clone()
    } else {
        format!("urn:dropple:learner:{}", input.learner_id)
    };
    let score = serde_json::Number::from_f64(input.score).map(Value::Number).unwrap_or(Value::Null);
    let (run, from, to) = (&input.attempt_run_id, input.seq_from, input.seq_to);
    let percent = format!("{}", (input.score * 100.0).round());
    let (title, version) = (&input.lesson_title, input.lesson_version);
    json!({
        "@context": [VC_CONTEXT, OB_CONTEXT],
        "id": input.certificate_id,
        "type": ["VerifiableCredential", "OpenBadgeCredential"],
        "name": title,
        "issuer": {"id": input.issuer_id, "type": ["Profile"], "name": input.issuer_name},
        "validFrom": input.valid_from,
        "credentialSubject": {
            "id": subject_id,
            "type": ["AchievementSubject"],
            "achievement": {
                "id": achievement_id(&input.lesson_id, version),
                "type": ["Achievement"],
                "achievementType": "Course",
                "name": title,
                "description": format!("Passed the graded quiz of lesson \"{title}\" (version {version})."),
                "criteria": {"narrative": input.criteria},
                "version": version.to_string(),
                "otherIdentifier": [{"type": ["IdentifierEntry"],
                    "identifier": format!("sha256:{}", input.lesson_sha256), "identifierType": "identifier"}],
            },
            "result": [{"type": ["Result"], "value": percent}],
        },
        "evidence": [{
            "id": format!("urn:dropple:run:{run}:events:{from}-{to}"),
            "type": ["Evidence"],
            "name": "Graded attempt",
            "narrative": format!(
                "Attempt run {run}, events {from} to {to} (sha256 {}), score {percent}%.", input.events_sha256),
            "runId": run, "seqFrom": from, "seqTo": to, "eventsSha256": input.events_sha256, "score": score,
        }],
        "credentialStatus": status_entry_value(&input.status_list_url, input.status_index),
    })
}

fn status_entry_value(list_url: &str, index: u64) -> Value {
    json!({
        "id": format!("{list_url}#{index}"),
        "type": "BitstringStatusListEntry",
        "statusPurpose": "revocation",
        "statusListIndex": index.to_string(),
        "statusListCredential": list_url,
    })
}

/// (statusListCredential URL, statusListIndex) of a credential, if any.
pub fn status_entry(credential: &Value) -> Option<(String, u64)> {
    let status = credential.get("credentialStatus")?;
    let url = status.get("statusListCredential")?.as_str()?;
    let index = status.get("statusListIndex")?.as_str()?.parse().ok()?;
    Some((url.to_owned(), index))
}

/// The issuer id of a credential (`issuer` as a string or a Profile's id).
pub fn issuer_id_of(credential: &Value) -> Option<&str> {
    let issuer = credential.get("issuer")?;
    issuer.as_str().or_else(|| issuer.get("id").and_then(Value::as_str))
}

// ---------------------------------------------------------------- proofs

/// A credential with its proof options set, waiting for the Ed25519
/// signature of [`ToSign::message`] by the key it names.
#[derive(Debug, Clone)]
pub struct ToSign {
    document: Value,
    proof: Map<String, Value>,
    message: Vec<u8>,
}

impl ToSign {
    /// What the key signs: sha256(JCS(proof options)) ++ sha256(JCS(document)).
    pub fn message(&self) -> &[u8] {
        &self.message
    }
    /// The secured credential: the proof with its `proofValue` (a
    /// non-object credential is returned unchanged).
    pub fn signed(self, signature: &[u8; 64]) -> Value {
        let ToSign { mut document, mut proof, .. } = self;
        if let Some(doc) = document.as_object_mut() {
            let value = format!("z{}", bs58::encode(signature).into_string());
            proof.insert("proofValue".into(), Value::String(value));
            doc.insert("proof".into(), Value::Object(proof));
        }
        document
    }
}

/// Secure `credential` with an `eddsa-jcs-2022` DataIntegrityProof by
/// `key`; the verification method is `{issuer id}#{key id}`. Any previous
/// `proof` is replaced.
pub fn to_sign(credential: Value, key: &PublicIssuerKey, created: &str) -> ToSign {
    let method = key.verification_method(issuer_id_of(&credential).unwrap_or(""));
    to_sign_as(credential, &method, created)
}

fn to_sign_as(mut document: Value, method: &str, created: &str) -> ToSign {
    let mut proof = Map::new();
    let Some(doc) = document.as_object_mut() else {
        return ToSign { document, proof, message: Vec::new() };
    };
    doc.remove("proof");
    for (name, value) in [
        ("type", "DataIntegrityProof"),
        ("cryptosuite", CRYPTOSUITE),
        ("created", created),
        ("verificationMethod", method),
        ("proofPurpose", "assertionMethod"),
    ] {
        proof.insert(name.into(), json!(value));
    }
    if let Some(context) = doc.get("@context") {
        proof.insert("@context".into(), context.clone());
    }
    let message = hash_data(&Value::Object(proof.clone()), &document);
    ToSign { document, proof, message }
}

/// sha256(JCS(proof config)) ++ sha256(JCS(unsecured document)).
fn hash_data(proof_config: &Value, unsecured: &Value) -> Vec<u8> {
    let mut out = Sha256::digest(to_canonical_string(proof_config).as_bytes()).to_vec();
    out.extend_from_slice(&Sha256::digest(to_canonical_string(unsecured).as_bytes()));
    out
}

/// What a proof claims: `signature` by `public_key` over one of `messages`
/// (the proof is valid if Ed25519 accepts any of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureCheck {
    pub public_key: [u8; 32],
    pub signature: [u8; 64],
    pub messages: Vec<Vec<u8>>,
}

/// The eddsa-jcs-2022 "Verify Proof" algorithm for a single proof, all but
/// the Ed25519 verification: what the platform must check, or why the proof
/// fails before any signature is checked.
pub fn signature_check(document: &Value, public_key: &[u8; 32]) -> Result<SignatureCheck, String> {
    let doc = document.as_object().ok_or("not an object")?;
    let proof = doc.get("proof").and_then(Value::as_object).ok_or("no proof object")?;
    let mut options = proof.clone();
    let proof_value = options.remove("proofValue").ok_or("no proofValue")?;
    let encoded = proof_value.as_str().and_then(|s| s.strip_prefix('z'));
    let bytes = encoded.and_then(|s| bs58::decode(s).into_vec().ok()).ok_or("proofValue is not base58btc multibase")?;
    let signature: [u8; 64] = bytes.as_slice().try_into().map_err(|_| "proofValue is not 64 bytes")?;
    let mut unsecured = doc.clone();
    unsecured.remove("proof");
    let mut configs = Vec::new();
    match options.get("@context") {
        Some(context) => {
            if !context_starts_with(doc.get("@context"), context) {
                return Err("proof @context is not a prefix of the document's".into());
            }
            unsecured.insert("@context".into(), context.clone());
            configs.push(Value::Object(options));
        }
        None => {
            // Proofs made before the proof carried @context: the config took
            // the document's @context (and some implementations took none).
            if let Some(context) = doc.get("@context") {
                let mut with = options.clone();
                with.insert("@context".into(), context.clone());
                configs.push(Value::Object(with));
            }
            configs.push(Value::Object(options));
        }
    }
    let unsecured = Value::Object(unsecured);
    let messages = configs.iter().map(|config| hash_data(config, &unsecured)).collect();
    Ok(SignatureCheck { public_key: *public_key, signature, messages })
}

/// The signature a credential's proof claims, with the key `resolve_key`
/// finds for its verification method: what to check before [`verify`].
/// `None` when there is nothing to check (no key, a malformed proof).
pub fn claimed_signature(credential: &Value, resolve_key: impl Fn(&str) -> Option<[u8; 32]>) -> Option<SignatureCheck> {
    let method = credential.get("proof")?.get("verificationMethod")?.as_str()?;
    signature_check(credential, &resolve_key(method)?).ok()
}

fn context_starts_with(document: Option<&Value>, prefix: &Value) -> bool {
    match (document, prefix) {
        (Some(Value::Array(doc)), Value::Array(pre)) => {
            pre.len() <= doc.len() && doc.iter().zip(pre).all(|(a, b)| a == b)
        }
        (Some(Value::Array(doc)), single) => doc.first() == Some(single),
        (Some(doc), pre) => doc == pre,
        (None, _) => false,
    }
}

// ---------------------------------------------------------------- verify

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    pub valid: bool,
    pub checks: Vec<Check>,
}

fn check(name: &str, result: Result<String, String>) -> Check {
    let (ok, detail) = match result {
        Ok(detail) => (true, detail),
        Err(detail) => (false, detail),
    };
    Check { name: name.into(), ok, detail }
}

fn has_type(value: Option<&Value>, wanted: &str) -> bool {
    match value {
        Some(Value::String(s)) => s == wanted,
        Some(Value::Array(items)) => items.iter().any(|t| t.as_str() == Some(wanted)),
        _ => false,
    }
}

/// An RFC 3339 date-time as nanoseconds since the epoch (instants compare across offsets).
fn parse_time(value: Option<&Value>) -> Option<i128> {
    crate::timefmt::parse_rfc3339_ns(value?.as_str()?)
}

fn ensure(ok: bool, message: &str) -> Result<(), String> {
    ok.then_some(()).ok_or_else(|| message.to_owned())
}

fn check_structure(doc: &Value) -> Result<String, String> {
    let obj = doc.as_object().ok_or("credential is not a JSON object")?;
    let contexts = obj.get("@context").and_then(Value::as_array);
    let contexts = contexts.ok_or("@context must be an array")?;
    let first = contexts.first().and_then(Value::as_str);
    ensure(first == Some(VC_CONTEXT), "@context must start with VC 2.0's")?;
    let types = obj.get("type");
    let vc = has_type(types, "VerifiableCredential");
    ensure(vc, "type must include VerifiableCredential")?;
    let subject = obj.get("credentialSubject");
    let kind = if has_type(types, "OpenBadgeCredential") {
        let ob = contexts.iter().any(|c| c.as_str() == Some(OB_CONTEXT));
        ensure(ob, "@context must include Open Badges 3.0's")?;
        let achievement = subject.and_then(|s| s.get("achievement"));
        let ok = has_type(achievement.and_then(|a| a.get("type")), "Achievement");
        ensure(ok, "credentialSubject.achievement must be an Achievement")?;
        "OpenBadgeCredential"
    } else {
        let list = has_type(types, "BitstringStatusListCredential")
            && has_type(subject.and_then(|s| s.get("type")), "BitstringStatusList");
        ensure(list, "type must include OpenBadgeCredential")?;
        "BitstringStatusListCredential"
    };
    let issuer = issuer_id_of(doc).is_some();
    ensure(issuer, "issuer must be a URL or a Profile with an id")?;
    let subject = subject.is_some_and(Value::is_object);
    ensure(subject, "credentialSubject must be an object")?;
    let from = parse_time(obj.get("validFrom")).is_some();
    ensure(from, "validFrom must be an RFC 3339 date-time")?;
    let until = !obj.contains_key("validUntil") || parse_time(obj.get("validUntil")).is_some();
    ensure(until, "validUntil must be an RFC 3339 date-time")?;
    if let Some(status) = obj.get("credentialStatus") {
        let entry = has_type(status.get("type"), "BitstringStatusListEntry");
        let entry = entry && status_entry(doc).is_some();
        ensure(entry, "credentialStatus must be a BitstringStatusListEntry")?;
    }
    let proof = obj.get("proof").and_then(Value::as_object);
    let proof = proof.ok_or("proof must be a single object")?;
    let field = |name: &str| proof.get(name).and_then(Value::as_str);
    let suite = field("type") == Some("DataIntegrityProof") && field("cryptosuite") == Some(CRYPTOSUITE);
    ensure(suite, "proof must be an eddsa-jcs-2022 DataIntegrityProof")?;
    let purpose = field("proofPurpose") == Some("assertionMethod");
    ensure(purpose, "proofPurpose must be assertionMethod")?;
    let parts = field("verificationMethod").is_some() && field("proofValue").is_some();
    ensure(parts, "proof needs verificationMethod and proofValue")?;
    let created = parse_time(proof.get("created")).is_some();
    ensure(created, "proof.created must be an RFC 3339 date-time")?;
    Ok(format!("well-formed {kind}"))
}

fn check_validity(doc: &Value, now: &str) -> Result<String, String> {
    let now = crate::timefmt::parse_rfc3339_ns(now).ok_or("current time is not RFC 3339")?;
    let from = parse_time(doc.get("validFrom")).ok_or("validFrom is not RFC 3339")?;
    ensure(from <= now, "not yet valid (validFrom is in the future)")?;
    let Some(until) = doc.get("validUntil") else {
        return Ok("valid since validFrom, no expiry".into());
    };
    let until = parse_time(Some(until)).ok_or("validUntil is not RFC 3339")?;
    ensure(now < until, "expired (validUntil has passed)")?;
    Ok("within validFrom..validUntil".into())
}

/// Verify a credential. `resolve_key` maps a verificationMethod id to the
/// issuer's Ed25519 public key (e.g. `resolve_from_profile`);
/// `signature_valid` is whether Ed25519 accepted the [`claimed_signature`]
/// (false when there was none); `is_revoked` is the status list bit if the
/// caller looked it up.
pub fn verify(
    credential: &Value,
    resolve_key: impl Fn(&str) -> Option<[u8; 32]>,
    signature_valid: bool,
    is_revoked: Option<bool>,
    now_rfc3339: &str,
) -> Verification {
    let method = credential.get("proof").and_then(|p| p.get("verificationMethod")).and_then(Value::as_str);
    let key = method.and_then(&resolve_key);
    let issuer = issuer_id_of(credential);

    let issuer_key = match (method, key, issuer) {
        (None, _, _) => Err("no proof.verificationMethod".to_owned()),
        (Some(m), None, _) => Err(format!("unknown verification method {m}")),
        (Some(_), _, None) => Err("credential has no issuer".to_owned()),
        (Some(m), Some(_), Some(i)) => match m.strip_prefix(i) {
            Some(rest) if rest.starts_with('#') => Ok(format!("{m} is a key of {i}")),
            _ => Err(format!("{m} is not a key of the issuer {i}")),
        },
    };
    let proof = match key {
        None => Err("no public key to check the signature with".to_owned()),
        Some(key) => signature_check(credential, &key)
            .and_then(|_| ensure(signature_valid, "signature does not match"))
            .map(|()| "Ed25519 signature valid".into()),
    };
    let status = match (credential.get("credentialStatus").is_some(), is_revoked) {
        (false, _) => Ok("no credentialStatus".to_owned()),
        (true, Some(true)) => Err("revoked".to_owned()),
        (true, Some(false)) => Ok("not revoked".to_owned()),
        (true, None) => Ok("unknown: revocation status was not checked".to_owned()),
    };
    let checks = vec![
        check("structure", check_structure(credential)),
        check("proof", proof),
        check("issuer_key", issuer_key),
        check("validity", check_validity(credential, now_rfc3339)),
        check("status", status),
    ];
    Verification { valid: checks.iter().all(|c| c.ok), checks }
}

// ---------------------------------------------------------------- status lists

/// Multibase base64url (no padding) of the gzipped bitstring, in which
/// index 0 is the left-most (most significant) bit of the first byte.
/// Indexes at or beyond `STATUS_LIST_SIZE` are ignored.
pub fn encode_status_list(revoked_indexes: &[u64]) -> String {
    let mut bits = vec![0u8; STATUS_LIST_SIZE / 8];
    for &index in revoked_indexes {
        let Ok(index) = usize::try_from(index) else {
            continue;
        };
        if let Some(byte) = bits.get_mut(index / 8) {
            *byte |= 0x80 >> (index % 8);
        }
    }
    format!("u{}", base64url::encode(&gzip(&bits)))
}

/// One gzip member (RFC 1952) of `data`: no name, mtime 0, OS unknown.
fn gzip(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    out.extend_from_slice(&deflate_runs(data));
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// Raw deflate (RFC 1951) of `data` in one block with the fixed Huffman
/// codes, every run of a repeated byte as matches at distance 1. A status
/// list is runs of zero bytes around a few set bits, which this packs as
/// tightly as a general compressor does (16 KiB of zeros: ~110 bytes).
/// Written here: miniz_oxide's compressor (hash chains, dynamic tables) was
/// ~15 KiB of the worker before wasm-opt for the same output. The tests read
/// it back with flate2 and with [`gunzip`].
fn deflate_runs(data: &[u8]) -> Vec<u8> {
    let mut out = Bits::default();
    out.put(0b011, 3); // the last block (1), fixed codes (01)
    let mut at = 0;
    while let Some(&byte) = data.get(at) {
        out.symbol(u32::from(byte));
        at += 1;
        let mut run = data.get(at..).map_or(0, |rest| rest.iter().take_while(|b| **b == byte).count());
        while run >= 3 {
            let len = run.min(258);
            out.length(len);
            out.put(0, 5); // distance code 0: one byte back
            run -= len;
            at += len;
        }
    }
    out.symbol(256); // end of block
    out.finish()
}

/// Deflate's bit stream: values least significant bit first, Huffman codes
/// most significant bit first.
#[derive(Default)]
struct Bits {
    out: Vec<u8>,
    pending: u32,
    count: u32,
}

impl Bits {
    fn put(&mut self, value: u32, len: u32) {
        self.pending |= value << self.count;
        self.count += len;
        while self.count >= 8 {
            self.out.push(self.pending as u8);
            self.pending >>= 8;
            self.count -= 8;
        }
    }

    fn code(&mut self, code: u32, len: u32) {
        for i in (0..len).rev() {
            self.put((code >> i) & 1, 1);
        }
    }

    /// A literal/length symbol in the fixed code (RFC 1951, 3.2.6).
    fn symbol(&mut self, s: u32) {
        match s {
            0..=143 => self.code(0x30 + s, 8),
            144..=255 => self.code(0x190 + s - 144, 9),
            256..=279 => self.code(s - 256, 7),
            _ => self.code(0xc0 + s - 280, 8),
        }
    }

    /// A match length, 3 to 258: its symbol and extra bits.
    fn length(&mut self, len: usize) {
        const BASE: [usize; 29] = [
            3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195,
            227, 258,
        ];
        const EXTRA: [u32; 29] =
            [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
        let i = BASE.iter().rposition(|base| *base <= len).unwrap_or(0);
        self.symbol(257 + i as u32);
        let (base, extra) = (BASE.get(i).copied().unwrap_or(3), EXTRA.get(i).copied().unwrap_or(0));
        self.put((len - base) as u32, extra);
    }

    fn finish(mut self) -> Vec<u8> {
        if self.count > 0 {
            self.out.push(self.pending as u8);
        }
        self.out
    }
}

/// The bitstring of an `encodedList`.
pub fn decode_status_list(encoded: &str) -> Result<Vec<u8>, String> {
    let text = encoded.strip_prefix('u').ok_or("encodedList must be multibase base64url ('u' prefix)")?;
    let zipped = base64url::decode(text.trim_end_matches('=')).ok_or("encodedList is not base64url")?;
    gunzip(&zipped, MAX_STATUS_LIST_BYTES as usize)
}

/// One gzip member (RFC 1952) → its bytes, at most `limit` of them, CRC
/// and length checked. miniz_oxide directly (what flate2 wraps): no
/// `std::io` machinery, which keeps the browser build small.
fn gunzip(data: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    const NOT_GZIP: &str = "encodedList is not gzip";
    let bad = |why: &str| format!("{NOT_GZIP}: {why}");
    if data.len() < 18 || data[0] != 0x1f || data[1] != 0x8b || data[2] != 8 {
        return Err(bad("no gzip header"));
    }
    let flags = data[3];
    let mut at = 10usize;
    let skip_zero_terminated =
        |at: usize| data.get(at..).and_then(|d| d.iter().position(|b| *b == 0)).map(|n| at + n + 1);
    if flags & 0x04 != 0 {
        let len =
            data.get(at..at + 2).map(|b| usize::from(b[0]) | usize::from(b[1]) << 8).ok_or_else(|| bad("truncated"))?;
        at += 2 + len;
    }
    if flags & 0x08 != 0 {
        at = skip_zero_terminated(at).ok_or_else(|| bad("truncated"))?;
    }
    if flags & 0x10 != 0 {
        at = skip_zero_terminated(at).ok_or_else(|| bad("truncated"))?;
    }
    if flags & 0x02 != 0 {
        at += 2;
    }
    let body = data.get(at..data.len().saturating_sub(8)).ok_or_else(|| bad("truncated"))?;
    let out = miniz_oxide::inflate::decompress_to_vec_with_limit(body, limit).map_err(|e| {
        if e.status == miniz_oxide::inflate::TINFLStatus::HasMoreOutput {
            "status list is too large".to_owned()
        } else {
            bad("bad deflate data")
        }
    })?;
    let trailer = &data[data.len() - 8..];
    let word = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    if word(&trailer[..4]) != crc32(&out) || word(&trailer[4..]) != out.len() as u32 {
        return Err(bad("checksum mismatch"));
    }
    Ok(out)
}

/// CRC-32 (IEEE), bitwise: status lists are 16 KiB, a table is not worth its size.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// Whether bit `index` is set; indexes past the end are not.
pub fn is_set(bits: &[u8], index: u64) -> bool {
    let Ok(index) = usize::try_from(index) else {
        return false;
    };
    bits.get(index / 8).is_some_and(|byte| byte & (0x80 >> (index % 8)) != 0)
}

/// Look a credential's bit up in a status list credential (unsigned or
/// signed; check its proof with `verify` separately). None if it cannot.
pub fn revoked_in(status_list_credential: &Value, index: u64) -> Option<bool> {
    let subject = status_list_credential.get("credentialSubject")?;
    if subject.get("statusPurpose")?.as_str()? != "revocation" {
        return None;
    }
    let bits = decode_status_list(subject.get("encodedList")?.as_str()?).ok()?;
    let len = u64::try_from(bits.len()).ok()?.checked_mul(8)?;
    (index < len).then(|| is_set(&bits, index))
}

/// The unsigned `BitstringStatusListCredential` served at `list_url`.
pub fn status_list_credential(list_url: &str, issuer_id: &str, revoked: &[u64], valid_from: &str) -> Value {
    json!({
        "@context": [VC_CONTEXT], "id": list_url,
        "type": ["VerifiableCredential", "BitstringStatusListCredential"],
        "issuer": issuer_id, "validFrom": valid_from,
        "credentialSubject": {
            "id": format!("{list_url}#list"), "type": "BitstringStatusList",
            "statusPurpose": "revocation", "encodedList": encode_status_list(revoked),
        },
    })
}

/// The platform's part in the native tests: ed25519-dalek, where the worker
/// and the browser use Web Crypto.
#[cfg(test)]
pub mod native {
    use super::*;
    use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

    /// A signing key as the edge holds one: the secret and its public half.
    #[derive(Clone)]
    pub struct Key {
        pub secret: IssuerSecret,
        signing: SigningKey,
    }

    impl Key {
        pub fn new(seed: &[u8; 32], key_id: &str) -> Key {
            Key::of(IssuerSecret::from_seed(seed, key_id).unwrap())
        }
        pub fn of(secret: IssuerSecret) -> Key {
            let signing = SigningKey::from_bytes(secret.seed());
            Key { secret, signing }
        }
        pub fn public(&self) -> PublicIssuerKey {
            self.secret.public(self.signing.verifying_key().to_bytes())
        }
        pub fn sign_prepared(&self, to_sign: ToSign) -> Value {
            let signature = self.signing.sign(to_sign.message()).to_bytes();
            to_sign.signed(&signature)
        }
        pub fn sign(&self, credential: Value, created: &str) -> Value {
            self.sign_prepared(to_sign(credential, &self.public(), created))
        }
    }

    /// Ed25519 (strict) over any of the check's messages.
    pub fn accepts(check: &SignatureCheck) -> bool {
        let Ok(key) = VerifyingKey::from_bytes(&check.public_key) else {
            return false;
        };
        let signature = Signature::from_bytes(&check.signature);
        check.messages.iter().any(|m| key.verify_strict(m, &signature).is_ok())
    }

    /// `verify` with the signature checked here, as the adapters do with Web Crypto.
    pub fn verify(
        credential: &Value,
        resolve_key: impl Fn(&str) -> Option<[u8; 32]>,
        is_revoked: Option<bool>,
        now_rfc3339: &str,
    ) -> Verification {
        let valid = claimed_signature(credential, &resolve_key).is_some_and(|c| accepts(&c));
        super::verify(credential, resolve_key, valid, is_revoked, now_rfc3339)
    }
}

#[cfg(test)]
mod tests {
    use super::native::{verify, Key};
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine;
    use proptest::prelude::*;

    const ISSUER: &str = "https://edge.example/v1/issuer";
    const NOW: &str = "2025-06-01T12:00:00Z";
    const LIST: &str = "https://edge.example/v1/status-lists/1";

    fn key(seed: u8, id: &str) -> Key {
        Key::new(&[seed; 32], id)
    }

    fn input() -> CredentialInput {
        serde_json::from_value(json!({
            "certificate_id": "urn:uuid:9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d",
            "issuer_id": ISSUER, "issuer_name": "Dropple Academy", "learner_id": "lrn_5f2c",
            "lesson_id": "les_42", "lesson_version": 3, "lesson_title": "Fractions, visually",
            "lesson_sha256": "ab".repeat(32), "criteria": "Score at least 80% on the quiz.",
            "score": 0.8333333333333334, "attempt_run_id": "run_7", "seq_from": 1, "seq_to": 9,
            "events_sha256": "cd".repeat(32), "valid_from": "2025-05-01T10:00:00Z",
            "status_list_url": LIST, "status_index": 17,
        }))
        .unwrap()
    }

    fn signed() -> (Value, Key) {
        let k = key(7, "k1");
        (k.sign(build_credential(&input()), "2025-05-01T10:00:01Z"), k)
    }

    fn resolver(k: &Key) -> impl Fn(&str) -> Option<[u8; 32]> {
        let profile = issuer_profile(ISSUER, "Dropple Academy", &[k.public()]);
        move |m: &str| resolve_from_profile(&profile, m)
    }

    /// Names of the failed checks.
    fn failed(v: &Verification) -> Vec<&str> {
        v.checks.iter().filter(|c| !c.ok).map(|c| c.name.as_str()).collect()
    }

    /// The eddsa-jcs-2022 test vector of the W3C vc-di-eddsa specification.
    #[test]
    fn w3c_eddsa_jcs_2022_test_vector() {
        let secret = bs58::decode("3u2en7t5LR2WtQH5PfFqMqwVHBeXouLzo6haApm8XHqvjxq");
        let secret = secret.into_vec().unwrap();
        assert_eq!(&secret[..2], &[0x80, 0x26]); // multicodec ed25519-priv
        let k = Key::new(&secret[2..].try_into().unwrap(), "k");
        let multikey = "z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2";
        assert_eq!(k.public().multikey(), multikey);
        let unsigned = json!({
            "@context": [VC_CONTEXT, "https://www.w3.org/ns/credentials/examples/v2"],
            "id": "urn:uuid:58172aac-d8ba-11ed-83dd-0b3aef56cc33",
            "type": ["VerifiableCredential", "AlumniCredential"], "name": "Alumni Credential",
            "description": "A minimum viable example of an Alumni Credential.",
            "issuer": "https://vc.example/issuers/5678", "validFrom": "2023-01-01T00:00:00Z",
            "credentialSubject": {"id": "did:example:abcdefgh", "alumniOf": "The School of Examples"}
        });
        let doc_hash = "59b7cb6251b8991add1ce0bc83107e3db9dbbab5bd2c28f687db1a03abc92f19";
        assert_eq!(crate::canonical::canonical_sha256(&unsigned), doc_hash);
        let method = format!("did:key:{multikey}#{multikey}");
        let secured = k.sign_prepared(to_sign_as(unsigned, &method, "2023-02-24T23:36:38Z"));
        let expected = "z2HnFSSPPBzR36zdDgK8PbEHeXbR56YF24jwMpt3R1eHXQzJDMWS93FCzpvJpwTWd3GAVFuUfjoJdcnTMuVor51aX";
        assert_eq!(secured["proof"]["proofValue"], expected);
        assert_eq!(secured["proof"]["@context"], secured["@context"]);
        assert!(signature_check(&secured, &k.public().public_key).is_ok_and(|c| native::accepts(&c)));
        // Without its @context copy the proof config takes the document's.
        let mut bare = secured.clone();
        bare["proof"].as_object_mut().unwrap().remove("@context");
        assert!(signature_check(&bare, &k.public().public_key).is_ok_and(|c| native::accepts(&c)));
    }

    #[test]
    fn keys_parse_and_publish() {
        let hex_seed = "9f".repeat(32);
        let a = Key::of(IssuerSecret::parse(&hex_seed, "2025-01").unwrap());
        let b64url = format!(" {} \n", URL_SAFE_NO_PAD.encode([0x9f; 32]));
        for other in [b64url, STANDARD.encode([0x9f; 32])] {
            let b = Key::of(IssuerSecret::parse(&other, "x").unwrap());
            assert_eq!(a.public().public_key, b.public().public_key);
        }
        assert!(IssuerSecret::parse("abcd", "k").is_err());
        assert!(IssuerSecret::parse(&hex_seed, "").is_err());
        assert!(IssuerSecret::parse(&hex_seed, "a#b").is_err());
        for seed in 0..20u8 {
            let (k, mk) = (key(seed, "k"), key(seed, "k").public().multikey());
            assert!(mk.starts_with("z6Mk"), "{mk}");
            assert_eq!(multikey_decode(&mk), Some(k.public().public_key));
        }
        let x = URL_SAFE_NO_PAD.encode(a.public().public_key);
        assert_eq!(a.public().jwk(), json!({"kty": "OKP", "crv": "Ed25519", "x": x}));
        assert!(!format!("{:?}", a.secret).contains(&hex_seed) && !format!("{:?}", a.secret).contains("159"));
        let profile = issuer_profile(ISSUER, "Dropple", &[a.public(), key(1, "old").public()]);
        let m = &profile["verificationMethod"][0];
        let seen = json!([m["id"], m["type"], m["publicKeyJwk"]["x"], profile["assertionMethod"][1]]);
        assert_eq!(seen, json!([format!("{ISSUER}#2025-01"), "Multikey", x, format!("{ISSUER}#old")]));
        let found = resolve_from_profile(&profile, &format!("{ISSUER}#2025-01"));
        assert_eq!(found, Some(a.public().public_key));
        assert_eq!(resolve_from_profile(&profile, "nope"), None);
    }

    #[test]
    fn retired_keys_are_published_and_verify_old_certificates() {
        let (c, old) = signed(); // signed by k1
        let new = key(9, "k2");
        let previous = format!(r#"{{"k1": "{}"}}"#, old.public().multikey());
        let retired = parse_previous_keys(&previous).unwrap();
        let as_hex = parse_previous_keys(&format!(r#"{{"k1": "{}"}}"#, hex::encode(old.public().public_key))).unwrap();
        assert_eq!(retired, as_hex);
        let profile = issuer_profile(ISSUER, "Dropple", &published_keys(&new.public(), retired));
        assert_eq!(profile["assertionMethod"], json!([format!("{ISSUER}#k2"), format!("{ISSUER}#k1")]));
        assert_eq!(profile["verificationMethod"][1]["publicKeyJwk"], old.public().jwk());
        let v = verify(&c, |m: &str| resolve_from_profile(&profile, m), Some(false), NOW);
        assert!(v.valid, "{v:?}");
        // Without the retired key the old certificate names the unknown key.
        let only_new = issuer_profile(ISSUER, "Dropple", &published_keys(&new.public(), Vec::new()));
        let v = verify(&c, |m: &str| resolve_from_profile(&only_new, m), Some(false), NOW);
        let detail = &v.checks.iter().find(|c| c.name == "issuer_key").unwrap().detail;
        assert!(!v.valid && detail.contains(&format!("{ISSUER}#k1")), "{detail}");
        // The current id wins over a retired entry of the same id.
        let same = parse_previous_keys(&format!(r#"{{"k2": "{}"}}"#, old.public().multikey())).unwrap();
        assert_eq!(published_keys(&new.public(), same), vec![new.public()]);
        assert_eq!(parse_previous_keys("  "), Ok(vec![]));
        for bad in ["[]", "{oops", r#"{"a#b": "00"}"#, r#"{"k": "abc"}"#, r#"{"k": 5}"#] {
            assert!(parse_previous_keys(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_full_status_list_starts_the_next() {
        let last = STATUS_LIST_SIZE as u64 - 1;
        assert_eq!(status_slot(0), (1, 0));
        assert_eq!(status_slot(1), (1, 1));
        assert_eq!(status_slot(last), (1, last));
        assert_eq!(status_slot(last + 1), (2, 0));
        assert_eq!(status_slot(2 * (last + 1) + 7), (3, 7));
    }

    #[test]
    fn sign_then_verify() {
        let (c, k) = signed();
        let (subject, proof) = (&c["credentialSubject"], &c["proof"]);
        let seen = json!({"ctx": c["@context"], "type": c["type"], "vm": proof["verificationMethod"],
            "achievement": subject["achievement"]["id"], "subject": subject["id"],
            "proof": [proof["type"], proof["cryptosuite"]], "seq": c["evidence"][0]["seqTo"]});
        let want = json!({"ctx": [VC_CONTEXT, OB_CONTEXT], "vm": format!("{ISSUER}#k1"),
            "type": ["VerifiableCredential", "OpenBadgeCredential"],
            "achievement": "urn:dropple:lesson:les_42:v3", "subject": "urn:dropple:learner:lrn_5f2c",
            "proof": ["DataIntegrityProof", CRYPTOSUITE], "seq": 9});
        assert_eq!(seen, want);
        assert_eq!(status_entry(&c), Some((LIST.into(), 17)));
        let v = verify(&c, resolver(&k), Some(false), NOW);
        assert!(v.valid && v.checks.len() == 5, "{v:?}");
        // Deterministic; re-signing replaces the proof.
        assert_eq!(k.sign(c.clone(), "2025-05-01T10:00:01Z"), c);
        // Status unknown is not a failure; formatting and key order do not matter.
        let text = serde_json::to_string_pretty(&c).unwrap();
        let reparsed: Value = serde_json::from_str(&text).unwrap();
        assert!(verify(&reparsed, resolver(&k), None, NOW).valid);
    }

    #[test]
    fn tampering_is_detected() {
        let (c, k) = signed();
        let pv = c["proof"]["proofValue"].as_str().unwrap();
        let last = if pv.ends_with('a') { "b" } else { "a" };
        let flipped = format!("{}{last}", &pv[..pv.len() - 1]);
        let edits: Vec<(&str, Value)> = vec![
            ("/credentialSubject/id", json!("urn:dropple:learner:other")),
            ("/credentialSubject/achievement/name", json!("Calculus")),
            ("/evidence/0/score", json!(1.0)),
            ("/credentialSubject/result/0/value", json!("100")),
            ("/validFrom", json!("2025-04-01T10:00:00Z")),
            ("/issuer/name", json!("Evil U")),
            ("/credentialStatus/statusListIndex", json!("18")),
            ("/proof/created", json!("2025-05-02T10:00:01Z")),
            ("/proof/@context", json!([VC_CONTEXT])),
            ("/proof/proofValue", json!(flipped)),
            ("/credentialSubject/achievement/extra", json!(true)),
        ];
        for (path, value) in edits {
            let mut t = c.clone();
            match t.pointer_mut(path) {
                Some(slot) => *slot = value,
                None => t["credentialSubject"]["achievement"]["extra"] = value,
            }
            let v = verify(&t, resolver(&k), Some(false), NOW);
            assert!(!v.valid && failed(&v).contains(&"proof"), "{path}: {v:?}");
        }
    }

    #[test]
    fn wrong_or_unknown_key_is_invalid() {
        let (c, k) = signed();
        let other = key(8, "k1"); // same key id, different key
        let v = verify(&c, resolver(&other), Some(false), NOW);
        assert_eq!(failed(&v), ["proof"]);
        let v = verify(&c, |_: &str| None, Some(false), NOW);
        assert_eq!(failed(&v), ["proof", "issuer_key"]);
        // A key that verifies but does not belong to the credential's issuer.
        let mut c2 = c.clone();
        c2["issuer"]["id"] = json!("https://other.example/issuer");
        let method = format!("{ISSUER}#k1");
        let c2 = k.sign_prepared(to_sign_as(c2, &method, "2025-05-01T10:00:01Z"));
        let v = verify(&c2, resolver(&k), Some(false), NOW);
        assert_eq!(failed(&v), ["issuer_key"]);
    }

    #[test]
    fn revoked_and_dates() {
        let (c, k) = signed();
        let v = verify(&c, resolver(&k), Some(true), NOW);
        assert!(!v.valid);
        assert_eq!(failed(&v), ["status"]);
        for now in ["2025-04-30T00:00:00Z", "yesterday"] {
            let v = verify(&c, resolver(&k), Some(false), now);
            assert_eq!(failed(&v), ["validity"]);
        }
        let mut e = build_credential(&input());
        e["validUntil"] = json!("2025-05-15T00:00:00+02:00");
        let e = k.sign(e, "2025-05-01T10:00:01Z");
        assert!(verify(&e, resolver(&k), Some(false), "2025-05-10T00:00:00Z").valid);
        let v = verify(&e, resolver(&k), Some(false), NOW);
        assert_eq!(failed(&v), ["validity"]);
    }

    #[test]
    fn status_list_roundtrip_and_bit_order() {
        let encoded = encode_status_list(&[0, 7, 8, 17, 131_071, 131_072, u64::MAX]);
        assert!(encoded.starts_with('u'));
        let bits = decode_status_list(&encoded).unwrap();
        assert_eq!(bits.len(), STATUS_LIST_SIZE / 8);
        assert_eq!(bits[..3], [0b1000_0001, 0b1000_0000, 0b0100_0000]);
        assert_eq!(bits[16_383], 1);
        let all = 0..STATUS_LIST_SIZE as u64;
        let set: Vec<u64> = all.filter(|i| is_set(&bits, *i)).collect();
        assert_eq!(set, [0, 7, 8, 17, 131_071]);
        assert!(!is_set(&bits, u64::MAX));
        let (a, b) = (encode_status_list(&[17, 0]), encode_status_list(&[0, 17, 17]));
        assert_eq!(a, b);
        for bad in ["zabc", "u!!", "uAAAA", ""] {
            assert!(decode_status_list(bad).is_err(), "{bad}");
        }
        let empty = encode_status_list(&[]);
        assert!(empty.len() < 200, "{}", empty.len());
        assert!(decode_status_list(&empty).unwrap().iter().all(|b| *b == 0));
    }

    /// What `gzip` wrote, read back by flate2 (another implementation) and by `gunzip`.
    fn read_back(data: &[u8]) {
        use std::io::Read;
        let zipped = gzip(data);
        let mut theirs = Vec::new();
        flate2::read::GzDecoder::new(zipped.as_slice()).read_to_end(&mut theirs).unwrap();
        assert_eq!(theirs, data);
        assert_eq!(gunzip(&zipped, 1 << 24).unwrap(), data);
    }

    #[test]
    fn gzip_is_read_back_by_flate2() {
        read_back(&[]);
        read_back(&vec![0u8; STATUS_LIST_SIZE / 8]);
        read_back(&(0..5000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>());
        // Runs of every length around the match lengths' edges, of low and high bytes.
        for len in (0..300).chain(510..520).chain([774, 775, 776]) {
            for byte in [0u8, 143, 144, 255] {
                let mut data = vec![7u8];
                data.extend(std::iter::repeat_n(byte, len));
                data.push(9);
                read_back(&data);
            }
        }
        // An all-zero list stays small.
        assert!(gzip(&vec![0u8; STATUS_LIST_SIZE / 8]).len() < 140);
    }

    proptest::proptest! {
        #[test]
        fn gzip_reads_back_any_bytes_and_any_sparse_list(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000),
            set in proptest::collection::vec(0u64..STATUS_LIST_SIZE as u64, 0..40),
        ) {
            read_back(&bytes);
            let mut expected = vec![0u8; STATUS_LIST_SIZE / 8];
            for i in &set {
                expected[(i / 8) as usize] |= 0x80 >> (i % 8);
            }
            proptest::prop_assert_eq!(decode_status_list(&encode_status_list(&set)).unwrap(), expected);
        }
    }

    #[test]
    fn gunzip_reads_headers_checks_crc_and_bounds_output() {
        use std::io::Write;
        let gz = |bytes: &[u8], name: bool| {
            let mut b = flate2::GzBuilder::new();
            if name {
                b = b.filename("list.bin").comment("c").extra(vec![1, 2, 3]);
            }
            let mut e = b.write(Vec::new(), flate2::Compression::best());
            e.write_all(bytes).unwrap();
            e.finish().unwrap()
        };
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        for name in [false, true] {
            assert_eq!(gunzip(&gz(&data, name), 1 << 20).unwrap(), data);
        }
        let mut corrupt = gz(&data, false);
        let n = corrupt.len();
        corrupt[n - 6] ^= 1; // the CRC
        assert!(gunzip(&corrupt, 1 << 20).is_err());
        assert_eq!(gunzip(&gz(&data, false), 100).unwrap_err(), "status list is too large");
        for cut in [0, 5, 12, n / 2] {
            assert!(gunzip(&gz(&data, true)[..cut], 1 << 20).is_err(), "cut at {cut}");
        }
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn status_list_credential_is_signed_and_consulted() {
        let k = key(7, "k1");
        let list = status_list_credential(LIST, ISSUER, &[17], "2025-05-02T00:00:00Z");
        let list = k.sign(list, "2025-05-02T00:00:00Z");
        assert_eq!(list["credentialSubject"]["type"], "BitstringStatusList");
        let v = verify(&list, resolver(&k), None, NOW);
        assert!(v.valid, "{v:?}");
        let (c, _) = signed();
        let (list_url, index) = status_entry(&c).unwrap();
        assert_eq!(list_url, LIST);
        let found = [index, 16, 1 << 40].map(|i| revoked_in(&list, i));
        assert_eq!(found, [Some(true), Some(false), None]);
        let v = verify(&c, resolver(&k), revoked_in(&list, index), NOW);
        assert_eq!(failed(&v), ["status"]);
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|f| json!(f)),
            "[a-z@#:/]{0,12}".prop_map(Value::String),
            Just(json!("2025-05-01T10:00:00Z")),
        ];
        let keys = prop_oneof!["[a-z]{1,6}", Just("proof".to_owned()), Just("@context".to_owned()),];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(keys.clone(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Every JSON pointer in `v`.
    fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
        out.push(at.clone());
        let esc = |k: &str| k.replace('~', "~0").replace('/', "~1");
        match v {
            Value::Object(m) => m.iter().for_each(|(k, v)| pointers(v, format!("{at}/{}", esc(k)), out)),
            Value::Array(a) => a.iter().enumerate().for_each(|(i, v)| pointers(v, format!("{at}/{i}"), out)),
            _ => {}
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn verify_never_panics_on_arbitrary_json(doc in arb_json(), now in "[0-9TZ:-]{0,25}") {
            let k = key(7, "k1");
            prop_assert!(!verify(&doc, resolver(&k), None, &now).valid);
            // Not even with a signature said to be valid: no structure, no proof.
            prop_assert!(!super::verify(&doc, resolver(&k), true, None, &now).valid);
            let _ = (k.sign(doc.clone(), &now), revoked_in(&doc, 3));
        }

        #[test]
        fn mutated_credentials_never_verify(pick in any::<prop::sample::Index>(), new in arb_json()) {
            let (c, k) = signed();
            let mut all = Vec::new();
            pointers(&c, String::new(), &mut all);
            let mut t = c.clone();
            *t.pointer_mut(&all[pick.index(all.len())]).unwrap() = new;
            if t != c {
                prop_assert!(!verify(&t, resolver(&k), Some(false), NOW).valid);
            }
        }

        #[test]
        fn decode_never_panics(text in "u[A-Za-z0-9_-]{0,80}") {
            let _ = decode_status_list(&text);
        }
    }
}
