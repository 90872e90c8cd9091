//! A binding of the environment (the KV namespace, the AI jobs queue) called
//! directly by method name. workers-rs's wrappers look their methods up on
//! every use and put values and options through serde_wasm_bindgen (a
//! serializer and a deserializer linked into the worker for a few plain
//! objects); the worker's calls pass text and plain objects, which is all
//! this does.

use crate::error::{AppError, AppResult};
use wasm_bindgen::{JsCast, JsValue};
use worker::js_sys::{Function, Object, Promise, Reflect};
use worker::wasm_bindgen_futures::JsFuture;

pub struct Binding {
    name: &'static str,
    value: JsValue,
}

impl Binding {
    pub fn of(env: &worker::Env, name: &'static str) -> AppResult<Binding> {
        match Reflect::get(env, &JsValue::from_str(name)) {
            Ok(value) if value.is_object() => Ok(Binding { name, value }),
            _ => Err(AppError::internal(format!("no binding {name}"))),
        }
    }

    /// Any runtime object (a queue batch, a message), called the same way.
    pub fn wrap(name: &'static str, value: JsValue) -> Binding {
        Binding { name, value }
    }

    /// `binding[key]` (`undefined` when absent).
    pub fn field(&self, key: &str) -> JsValue {
        Reflect::get(&self.value, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
    }

    /// `binding[method](...args)` as it returns (a promise is not awaited).
    pub fn call_now(&self, method: &str, args: &[JsValue]) -> Result<JsValue, String> {
        let function = Reflect::get(&self.value, &JsValue::from_str(method))
            .ok()
            .and_then(|f| f.dyn_into::<Function>().ok())
            .ok_or_else(|| format!("{} has no {method}", self.name))?;
        let args: worker::js_sys::Array = args.iter().collect();
        function.apply(&self.value, &args).map_err(|e| self.failed(method, &e))
    }

    fn failed(&self, method: &str, error: &JsValue) -> String {
        format!("{} {method}: {}", self.name, super::store::js_message(error))
    }

    /// `binding[method](...args)`, awaited when it returns a promise.
    pub async fn call(&self, method: &str, args: &[JsValue]) -> Result<JsValue, String> {
        let returned = self.call_now(method, args)?;
        match returned.dyn_into::<Promise>() {
            Ok(promise) => JsFuture::from(promise).await.map_err(|e| self.failed(method, &e)),
            Err(value) => Ok(value),
        }
    }
}

/// A plain object: `{key: value, ...}`.
pub fn object(fields: &[(&str, JsValue)]) -> JsValue {
    let object = Object::new();
    for (key, value) in fields {
        let _ = Reflect::set(&object, &JsValue::from_str(key), value);
    }
    object.into()
}

/// `value[key]` as text, if it is a string.
pub fn text_field(value: &JsValue, key: &str) -> Option<String> {
    Reflect::get(value, &JsValue::from_str(key)).ok()?.as_string()
}

/// Everything a stream holds, read by the runtime as one buffer:
/// `new Response(stream).arrayBuffer()`. Not workers-rs's `Response::bytes`,
/// which pulls the stream chunk by chunk through wasm-streams.
pub async fn read_all(stream: &JsValue) -> Result<Vec<u8>, String> {
    let response = worker::web_sys::Response::new_with_opt_readable_stream(stream.dyn_ref())
        .map_err(|e| super::store::js_message(&e))?;
    response_bytes(&response).await
}

/// A response's whole body (`arrayBuffer()`).
pub async fn response_bytes(response: &worker::web_sys::Response) -> Result<Vec<u8>, String> {
    let promise = response.array_buffer().map_err(|e| super::store::js_message(&e))?;
    let buffer = JsFuture::from(promise).await.map_err(|e| super::store::js_message(&e))?;
    Ok(worker::js_sys::Uint8Array::new(&buffer).to_vec())
}

/// `bucket.put(key, bytes, {httpMetadata: {contentType}, onlyIf})`, R2's own
/// call: workers-rs's put builder also handles stream bodies, and with them
/// links wasm-streams, for bodies never put here. `create_only` never
/// overwrites (`onlyIf: {etagDoesNotMatch: "*"}`); its `false` means the key
/// was already there.
pub async fn r2_put(
    bucket: &worker::Bucket,
    key: &str,
    bytes: &[u8],
    content_type: &str,
    create_only: bool,
) -> Result<bool, String> {
    let bucket = Binding::wrap("R2", bucket.as_ref().clone());
    let mut options = vec![("httpMetadata", object(&[("contentType", JsValue::from_str(content_type))]))];
    if create_only {
        options.push(("onlyIf", object(&[("etagDoesNotMatch", JsValue::from_str("*"))])));
    }
    let body = worker::js_sys::Uint8Array::from(bytes);
    let stored = bucket.call("put", &[JsValue::from_str(key), body.into(), object(&options)]).await?;
    Ok(!stored.is_null() && !stored.is_undefined())
}
