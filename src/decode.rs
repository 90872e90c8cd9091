//! Decoding the structs the worker reads rarely (stored artifacts, session
//! configs, tokens, job inputs) from a parsed `serde_json::Value`, by hand.
//!
//! Why not `#[derive(Deserialize)]`: each derived struct decoder is its own
//! state machine monomorphized for serde_json's reader, 1–8 KiB of wasm
//! apiece, and size is paid at every cold start. Parsing into a `Value`
//! (one generic parser, linked anyway) and reading the fields through these
//! few functions costs a fraction of that. The hot types (events, storage
//! rows, the live wire) keep serde's derive: there the parse into a tree
//! would cost time on every message.
//!
//! The rules are serde's: a missing field is an error unless the type says
//! otherwise, `Option` fields take absent and `null` as `None`, unsigned
//! integers must be integers in range, unknown fields are ignored.

use serde_json::{Map, Value};
use std::cell::Cell;

/// A JSON object being decoded. Each field read gives a value (its type's
/// default when the field is wrong) and keeps the first error; `done` turns
/// the struct built from them into the result. Building the struct whole,
/// then dropping it on an error, is one drop where `?` after every field
/// would be one cleanup path per field.
pub struct Obj<'a> {
    map: &'a Map<String, Value>,
    error: Cell<Option<String>>,
}

impl<'a> Obj<'a> {
    pub fn of(value: &'a Value) -> Result<Self, String> {
        let map = value.as_object().ok_or("expected an object")?;
        Ok(Obj { map, error: Cell::new(None) })
    }

    /// Keep the first error. Not generic: one copy of the formatting.
    fn note(&self, key: &str, error: Option<String>) {
        let first = self.error.take().unwrap_or_else(|| match error {
            Some(e) => format!("{key}: {e}"),
            None => format!("missing field `{key}`"),
        });
        self.error.set(Some(first));
    }

    fn kept<T: Default>(&self, key: &str, decoded: Result<T, String>) -> T {
        decoded.unwrap_or_else(|e| {
            self.note(key, Some(e));
            T::default()
        })
    }

    /// A required field, decoded by `decode`.
    pub fn req<T: Default>(&self, key: &str, decode: fn(&Value) -> Result<T, String>) -> T {
        match self.map.get(key) {
            Some(value) => self.kept(key, decode(value)),
            None => {
                self.note(key, None);
                T::default()
            }
        }
    }

    /// An optional field: absent or `null` is `None`.
    pub fn opt<T>(&self, key: &str, decode: fn(&Value) -> Result<T, String>) -> Option<T> {
        let value = self.map.get(key).filter(|v| !v.is_null())?;
        self.kept(key, decode(value).map(Some))
    }

    /// Refuse any field not in `known` (serde's `deny_unknown_fields`).
    pub fn only(&self, known: &[&str]) {
        if let Some(key) = self.map.keys().find(|k| !known.contains(&k.as_str())) {
            let error = format!("unknown field `{key}`, expected one of {}", known.join(", "));
            let first = self.error.take().unwrap_or(error);
            self.error.set(Some(first));
        }
    }

    /// `value`, unless a field read went wrong.
    pub fn done<T>(self, value: T) -> Result<T, String> {
        match self.error.into_inner() {
            Some(error) => Err(error),
            None => Ok(value),
        }
    }
}

pub fn text(value: &Value) -> Result<String, String> {
    value.as_str().map(str::to_owned).ok_or_else(|| "expected a string".to_owned())
}

pub fn uint<T: TryFrom<u64>>(value: &Value) -> Result<T, String> {
    value.as_u64().and_then(|n| T::try_from(n).ok()).ok_or_else(|| "expected an unsigned integer in range".to_owned())
}

pub fn int(value: &Value) -> Result<i64, String> {
    value.as_i64().ok_or_else(|| "expected an integer in range".to_owned())
}

pub fn number(value: &Value) -> Result<f64, String> {
    value.as_f64().ok_or_else(|| "expected a number".to_owned())
}

pub fn boolean(value: &Value) -> Result<bool, String> {
    value.as_bool().ok_or_else(|| "expected a boolean".to_owned())
}

/// Any JSON value as it is (`null` included).
pub fn any(value: &Value) -> Result<Value, String> {
    Ok(value.clone())
}

pub fn texts(value: &Value) -> Result<Vec<String>, String> {
    list(value, text)
}

/// An array, each item decoded by `decode`.
pub fn list<T>(value: &Value, decode: fn(&Value) -> Result<T, String>) -> Result<Vec<T>, String> {
    let mut out = Vec::new();
    each(value, &mut |item| decode(item).map(|decoded| out.push(decoded)))?;
    Ok(out)
}

/// The loop of [`list`], not generic: one copy for every item type.
fn each(value: &Value, visit: &mut dyn FnMut(&Value) -> Result<(), String>) -> Result<(), String> {
    let items = value.as_array().ok_or("expected an array")?;
    for (i, item) in items.iter().enumerate() {
        visit(item).map_err(|e| format!("[{i}]: {e}"))?;
    }
    Ok(())
}

/// `Deserialize` for a type with `fn from_value(&Value) -> Result<Self, String>`
/// that a derived container holds (a session state's config, a checkpoint's
/// canvas): through a `Value`. Elsewhere [`from_text`] reads them.
macro_rules! deserialize_from_value {
    ($($t:ty),+) => {$(
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = <serde_json::Value as serde::Deserialize>::deserialize(deserializer)?;
                <$t>::from_value(&value).map_err(serde::de::Error::custom)
            }
        }
    )+};
}
pub(crate) use deserialize_from_value;

/// JSON text decoded by `decode` (serde_json's own message when it is not JSON).
pub fn from_text<T>(text: &str, decode: fn(&Value) -> Result<T, String>) -> Result<T, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    decode(&value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn serde_rules() {
        let v = json!({"s": "a", "n": 3, "f": 1.5, "neg": -1, "big": 1u64 << 40, "null": null, "list": ["x", "y"], "bad": [1]});
        let read = |f: &dyn Fn(&Obj) -> bool| {
            let o = Obj::of(&v).unwrap();
            let ok = f(&o);
            o.done(ok)
        };
        let fails = |f: &dyn Fn(&Obj)| {
            let o = Obj::of(&v).unwrap();
            f(&o);
            o.done(()).unwrap_err()
        };
        assert_eq!(read(&|o| o.req("s", text) == "a"), Ok(true));
        assert_eq!(read(&|o| o.req("n", uint::<u32>) == 3 && o.req("n", number) == 3.0), Ok(true));
        assert_eq!(read(&|o| o.req("big", uint::<u64>) == 1 << 40), Ok(true));
        assert_eq!(read(&|o| o.req("null", any) == Value::Null), Ok(true));
        assert_eq!(read(&|o| o.opt("null", text).is_none() && o.opt("missing", text).is_none()), Ok(true));
        assert_eq!(read(&|o| o.opt("s", text).as_deref() == Some("a")), Ok(true));
        assert_eq!(read(&|o| o.req("list", texts) == ["x", "y"]), Ok(true));
        for key in ["f", "neg", "big", "null"] {
            assert_eq!(
                fails(&|o| _ = o.req(key, uint::<u32>)),
                format!("{key}: expected an unsigned integer in range")
            );
        }
        let unknown = |o: &Obj| {
            o.only(&["s", "n"]);
            _ = o.req("s", text);
        };
        assert!(fails(&unknown).starts_with("unknown field `"));
        assert_eq!(fails(&|o| drop(o.req("missing", text))), "missing field `missing`");
        assert_eq!(fails(&|o| drop(o.req("null", text))), "null: expected a string");
        assert_eq!(fails(&|o| drop(o.req("bad", texts))), "bad: [0]: expected a string");
        // The first error is the one reported.
        assert_eq!(fails(&|o| drop((o.req("f", text), o.req("missing", text)))), "f: expected a string");
        assert!(Obj::of(&json!([1])).is_err());
    }
}
