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

    /// `binding[method](...args)`, awaited when it returns a promise.
    pub async fn call(&self, method: &str, args: &[JsValue]) -> Result<JsValue, String> {
        let fail = |e: &JsValue| format!("{} {method}: {}", self.name, super::store::js_message(e));
        let function = Reflect::get(&self.value, &JsValue::from_str(method))
            .ok()
            .and_then(|f| f.dyn_into::<Function>().ok())
            .ok_or_else(|| format!("{} has no {method}", self.name))?;
        let args: worker::js_sys::Array = args.iter().collect();
        let returned = function.apply(&self.value, &args).map_err(|e| fail(&e))?;
        match returned.dyn_into::<Promise>() {
            Ok(promise) => JsFuture::from(promise).await.map_err(|e| fail(&e)),
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
