//! Ed25519 through the platform's Web Crypto (`crypto.subtle`), in the
//! worker (workerd) and in the browser alike: the rules of a proof are in
//! `certificate`, the curve arithmetic is the runtime's own, constant time
//! and native, and none of it is in the wasm (ed25519-dalek with SHA-512
//! was ~10 KB gzipped of the worker). Calls go through `Reflect` like
//! `edge::binding`: no import shim per method.

use crate::certificate::{self, SignatureCheck, Verification};
use js_sys::futures::JsFuture;
use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};

const ALGORITHM: &str = "Ed25519";
/// PKCS #8 of an Ed25519 seed (RFC 8410): this prefix, then the 32 bytes.
const PKCS8_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

/// An imported signing key and its public half (as the platform derived it).
pub struct Signer {
    key: JsValue,
    pub public_key: [u8; 32],
}

fn subtle() -> Result<JsValue, String> {
    let crypto = Reflect::get(&js_sys::global(), &JsValue::from_str("crypto")).map_err(|_| "no crypto")?;
    Reflect::get(&crypto, &JsValue::from_str("subtle")).map_err(|_| "no crypto.subtle".to_owned())
}

/// `crypto.subtle[method](...args)`, awaited.
async fn call(method: &str, args: &[JsValue]) -> Result<JsValue, String> {
    let fail = |e: JsValue| {
        let message = Reflect::get(&e, &JsValue::from_str("message")).ok().and_then(|m| m.as_string());
        format!("crypto.subtle.{method}: {}", message.unwrap_or_else(|| "failed".into()))
    };
    let subtle = subtle()?;
    let function = Reflect::get(&subtle, &JsValue::from_str(method))
        .ok()
        .and_then(|f| f.dyn_into::<Function>().ok())
        .ok_or_else(|| format!("no crypto.subtle.{method}"))?;
    let args: Array = args.iter().collect();
    let promise = function.apply(&subtle, &args).map_err(fail)?;
    JsFuture::from(Promise::from(promise)).await.map_err(fail)
}

fn bytes(data: &[u8]) -> JsValue {
    Uint8Array::from(data).into()
}

fn usages(usage: &str) -> JsValue {
    Array::of1(&JsValue::from_str(usage)).into()
}

/// Import `seed` as a signing key; the public key is read back as the JWK's `x`.
pub async fn signer(seed: &[u8; 32]) -> Result<Signer, String> {
    let mut pkcs8 = PKCS8_PREFIX.to_vec();
    pkcs8.extend_from_slice(seed);
    let alg = JsValue::from_str(ALGORITHM);
    let key =
        call("importKey", &[JsValue::from_str("pkcs8"), bytes(&pkcs8), alg, JsValue::TRUE, usages("sign")]).await?;
    let jwk: Object = call("exportKey", &[JsValue::from_str("jwk"), key.clone()]).await?.unchecked_into();
    let x = Reflect::get(&jwk, &JsValue::from_str("x")).ok().and_then(|x| x.as_string());
    let public_key = x
        .and_then(|x| crate::base64url::decode(&x))
        .and_then(|x| <[u8; 32]>::try_from(x.as_slice()).ok())
        .ok_or("crypto.subtle.exportKey: no 32-byte public key")?;
    Ok(Signer { key, public_key })
}

impl Signer {
    pub async fn sign(&self, message: &[u8]) -> Result<[u8; 64], String> {
        let signature = call("sign", &[JsValue::from_str(ALGORITHM), self.key.clone(), bytes(message)]).await?;
        let signature = Uint8Array::new(&signature).to_vec();
        signature.as_slice().try_into().map_err(|_| "crypto.subtle.sign: not 64 bytes".to_owned())
    }
}

/// Whether Ed25519 accepts the check's signature over any of its messages.
/// A key the platform will not import (or any failure) is a rejection.
pub async fn accepts(check: &SignatureCheck) -> bool {
    let alg = JsValue::from_str(ALGORITHM);
    let Ok(key) = call(
        "importKey",
        &[JsValue::from_str("raw"), bytes(&check.public_key), alg.clone(), JsValue::FALSE, usages("verify")],
    )
    .await
    else {
        return false;
    };
    for message in &check.messages {
        let verified = call("verify", &[alg.clone(), key.clone(), bytes(&check.signature), bytes(message)]).await;
        if verified.is_ok_and(|v| v.is_truthy()) {
            return true;
        }
    }
    false
}

/// `certificate::verify` with the proof's signature checked here first.
pub async fn verify(
    credential: &serde_json::Value,
    resolve_key: impl Fn(&str) -> Option<[u8; 32]> + Copy,
    is_revoked: Option<bool>,
    now_rfc3339: &str,
) -> Verification {
    let signature_valid = match certificate::claimed_signature(credential, resolve_key) {
        Some(check) => accepts(&check).await,
        None => false,
    };
    certificate::verify(credential, resolve_key, signature_valid, is_revoked, now_rfc3339)
}
