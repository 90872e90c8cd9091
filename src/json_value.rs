//! `json!`: serde_json's macro of the same name and syntax, with less code at
//! each use. The crate builds a few hundred JSON objects with it (responses,
//! credentials, log lines), and serde_json's expansion costs, per key, a
//! `String` built from the literal inline, a `to_value(&x).unwrap()` (a
//! generic serializer per value type, and a panic site), an insert and the
//! drop of what it returns. Here a key is one call to [`put`] (a single
//! non-generic copy), and a value is converted by [`ToJson`]: what
//! `serde_json::to_value` gives for the same value, by construction, for the
//! types the crate writes into JSON (`tests` below compares the two). A type
//! without `ToJson` does not compile in `json!`: wrap it in [`serialized`].
use serde_json::{Map, Number, Value};
use std::collections::BTreeMap;

/// A value as `serde_json::to_value` would give it, without an error case.
pub trait ToJson {
    fn to_json(&self) -> Value;
}

impl ToJson for Value {
    fn to_json(&self) -> Value {
        self.clone()
    }
}

impl ToJson for str {
    fn to_json(&self) -> Value {
        Value::String(self.to_owned())
    }
}

impl ToJson for String {
    fn to_json(&self) -> Value {
        Value::String(self.clone())
    }
}

impl ToJson for bool {
    fn to_json(&self) -> Value {
        Value::Bool(*self)
    }
}

impl ToJson for Number {
    fn to_json(&self) -> Value {
        Value::Number(self.clone())
    }
}

impl ToJson for Map<String, Value> {
    fn to_json(&self) -> Value {
        Value::Object(self.clone())
    }
}

macro_rules! integers {
    ($($t:ty),*) => {$(
        impl ToJson for $t {
            fn to_json(&self) -> Value {
                Value::Number(Number::from(*self))
            }
        }
    )*};
}
integers!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize);

impl ToJson for f64 {
    /// Like serde_json: a finite double is a number, NaN and the infinities are `null`.
    fn to_json(&self) -> Value {
        Number::from_f64(*self).map_or(Value::Null, Value::Number)
    }
}

impl ToJson for f32 {
    fn to_json(&self) -> Value {
        Number::from_f64(f64::from(*self)).map_or(Value::Null, Value::Number)
    }
}

impl<T: ToJson + ?Sized> ToJson for &T {
    fn to_json(&self) -> Value {
        (**self).to_json()
    }
}

impl<T: ToJson> ToJson for Option<T> {
    fn to_json(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToJson::to_json)
    }
}

impl<T: ToJson> ToJson for [T] {
    fn to_json(&self) -> Value {
        Value::Array(self.iter().map(ToJson::to_json).collect())
    }
}

impl<T: ToJson> ToJson for Vec<T> {
    fn to_json(&self) -> Value {
        self.as_slice().to_json()
    }
}

impl<T: ToJson, const N: usize> ToJson for [T; N] {
    fn to_json(&self) -> Value {
        self.as_slice().to_json()
    }
}

impl<V: ToJson> ToJson for BTreeMap<String, V> {
    fn to_json(&self) -> Value {
        Value::Object(self.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
    }
}

/// A value of a type that only serde knows (a derived `Serialize`), for
/// `json!`: what `serde_json::to_value` gives. It fails only for a map with
/// keys that are not strings, which no derived type of the crate has; then
/// `null`, never a panic. Taken through the type's text: most of these types
/// are also written as text (storage, events, artifacts), and one serializer
/// per type is less code than two (-2.6 KB gzipped on the worker); doubles
/// read back bit for bit (`float_roundtrip`). Not for hot paths: the live
/// path's events build their payloads field by field (only a drawn
/// annotation, a rare event, comes through here), and a page of rows is
/// written as text without a `Value` at all.
pub fn serialized<T: serde::Serialize + ?Sized>(value: &T) -> Value {
    serde_json::to_string(value).ok().and_then(|text| serde_json::from_str(&text).ok()).unwrap_or(Value::Null)
}

/// The unit variant named by a string: `variants[i]` for the string
/// `names[i]` (the names serde's derive would use). One decoder for every
/// enum of names: the derive writes a field visitor, an enum visitor and a
/// variant access for each (~1.5 KiB of the worker per enum). The derive's
/// other form, an object `{"name": null}`, is not read: nothing writes it.
pub fn unit_variant<'de, D: serde::Deserializer<'de>, T: Copy>(
    d: D,
    names: &'static [&'static str],
    variants: &[T],
) -> Result<T, D::Error> {
    let name = <String as serde::Deserialize>::deserialize(d)?;
    match names.iter().position(|n| *n == name).and_then(|i| variants.get(i)) {
        Some(v) => Ok(*v),
        None => Err(serde::de::Error::unknown_variant(&name, names)),
    }
}

/// One key of an object literal: the one copy of the insert every `json!` calls.
#[doc(hidden)]
#[inline(never)]
pub fn put(object: &mut Map<String, Value>, key: &str, value: Value) {
    object.insert(key.to_owned(), value);
}

/// serde_json's `json!` (same syntax, same values); see the module.
#[macro_export]
macro_rules! json {
    ($($json:tt)+) => {
        $crate::json_internal!($($json)+)
    };
}

// serde_json 1.0's `json_internal!` (MIT or Apache-2.0), with an object's keys
// put by `json_value::put` and values converted by `ToJson`.
#[macro_export]
#[doc(hidden)]
macro_rules! json_internal {
    (@array [$($elems:expr,)*]) => {
        ::std::vec![$($elems,)*]
    };
    (@array [$($elems:expr),*]) => {
        ::std::vec![$($elems),*]
    };
    (@array [$($elems:expr,)*] null $($rest:tt)*) => {
        $crate::json_internal!(@array [$($elems,)* $crate::json_internal!(null)] $($rest)*)
    };
    (@array [$($elems:expr,)*] true $($rest:tt)*) => {
        $crate::json_internal!(@array [$($elems,)* $crate::json_internal!(true)] $($rest)*)
    };
    (@array [$($elems:expr,)*] false $($rest:tt)*) => {
        $crate::json_internal!(@array [$($elems,)* $crate::json_internal!(false)] $($rest)*)
    };
    (@array [$($elems:expr,)*] [$($array:tt)*] $($rest:tt)*) => {
        $crate::json_internal!(@array [$($elems,)* $crate::json_internal!([$($array)*])] $($rest)*)
    };
    (@array [$($elems:expr,)*] {$($map:tt)*} $($rest:tt)*) => {
        $crate::json_internal!(@array [$($elems,)* $crate::json_internal!({$($map)*})] $($rest)*)
    };
    (@array [$($elems:expr,)*] $next:expr, $($rest:tt)*) => {
        $crate::json_internal!(@array [$($elems,)* $crate::json_internal!($next),] $($rest)*)
    };
    (@array [$($elems:expr,)*] $last:expr) => {
        $crate::json_internal!(@array [$($elems,)* $crate::json_internal!($last)])
    };
    (@array [$($elems:expr),*] , $($rest:tt)*) => {
        $crate::json_internal!(@array [$($elems,)*] $($rest)*)
    };
    (@array [$($elems:expr),*] $unexpected:tt $($rest:tt)*) => {
        $crate::json_unexpected!($unexpected)
    };
    (@object $object:ident () () ()) => {};
    (@object $object:ident [$($key:tt)+] ($value:expr) , $($rest:tt)*) => {
        $crate::json_value::put(&mut $object, ::core::convert::AsRef::<str>::as_ref(&($($key)+)), $value);
        $crate::json_internal!(@object $object () ($($rest)*) ($($rest)*));
    };
    (@object $object:ident [$($key:tt)+] ($value:expr) $unexpected:tt $($rest:tt)*) => {
        $crate::json_unexpected!($unexpected);
    };
    (@object $object:ident [$($key:tt)+] ($value:expr)) => {
        $crate::json_value::put(&mut $object, ::core::convert::AsRef::<str>::as_ref(&($($key)+)), $value);
    };
    (@object $object:ident ($($key:tt)+) (: null $($rest:tt)*) $copy:tt) => {
        $crate::json_internal!(@object $object [$($key)+] ($crate::json_internal!(null)) $($rest)*);
    };
    (@object $object:ident ($($key:tt)+) (: true $($rest:tt)*) $copy:tt) => {
        $crate::json_internal!(@object $object [$($key)+] ($crate::json_internal!(true)) $($rest)*);
    };
    (@object $object:ident ($($key:tt)+) (: false $($rest:tt)*) $copy:tt) => {
        $crate::json_internal!(@object $object [$($key)+] ($crate::json_internal!(false)) $($rest)*);
    };
    (@object $object:ident ($($key:tt)+) (: [$($array:tt)*] $($rest:tt)*) $copy:tt) => {
        $crate::json_internal!(@object $object [$($key)+] ($crate::json_internal!([$($array)*])) $($rest)*);
    };
    (@object $object:ident ($($key:tt)+) (: {$($map:tt)*} $($rest:tt)*) $copy:tt) => {
        $crate::json_internal!(@object $object [$($key)+] ($crate::json_internal!({$($map)*})) $($rest)*);
    };
    (@object $object:ident ($($key:tt)+) (: $value:expr , $($rest:tt)*) $copy:tt) => {
        $crate::json_internal!(@object $object [$($key)+] ($crate::json_internal!($value)) , $($rest)*);
    };
    (@object $object:ident ($($key:tt)+) (: $value:expr) $copy:tt) => {
        $crate::json_internal!(@object $object [$($key)+] ($crate::json_internal!($value)));
    };
    (@object $object:ident ($($key:tt)+) (:) $copy:tt) => {
        $crate::json_internal!();
    };
    (@object $object:ident ($($key:tt)+) () $copy:tt) => {
        $crate::json_internal!();
    };
    (@object $object:ident () (: $($rest:tt)*) ($colon:tt $($copy:tt)*)) => {
        $crate::json_unexpected!($colon);
    };
    (@object $object:ident ($($key:tt)*) (, $($rest:tt)*) ($comma:tt $($copy:tt)*)) => {
        $crate::json_unexpected!($comma);
    };
    (@object $object:ident () (($key:expr) : $($rest:tt)*) $copy:tt) => {
        $crate::json_internal!(@object $object ($key) (: $($rest)*) (: $($rest)*));
    };
    (@object $object:ident ($($key:tt)*) (: $($unexpected:tt)+) $copy:tt) => {
        $crate::json_expect_expr_comma!($($unexpected)+);
    };
    (@object $object:ident ($($key:tt)*) ($tt:tt $($rest:tt)*) $copy:tt) => {
        $crate::json_internal!(@object $object ($($key)* $tt) ($($rest)*) ($($rest)*));
    };
    (null) => {
        ::serde_json::Value::Null
    };
    (true) => {
        ::serde_json::Value::Bool(true)
    };
    (false) => {
        ::serde_json::Value::Bool(false)
    };
    ([]) => {
        ::serde_json::Value::Array(::std::vec![])
    };
    ([ $($tt:tt)+ ]) => {
        ::serde_json::Value::Array($crate::json_internal!(@array [] $($tt)+))
    };
    ({}) => {
        ::serde_json::Value::Object(::serde_json::Map::new())
    };
    ({ $($tt:tt)+ }) => {
        ::serde_json::Value::Object({
            let mut object = ::serde_json::Map::new();
            $crate::json_internal!(@object object () ($($tt)+) ($($tt)+));
            object
        })
    };
    ($other:expr) => {
        $crate::json_value::ToJson::to_json(&$other)
    };
}

#[macro_export]
#[doc(hidden)]
macro_rules! json_unexpected {
    () => {};
}

#[macro_export]
#[doc(hidden)]
macro_rules! json_expect_expr_comma {
    ($e:expr , $($tt:tt)*) => {};
}

#[cfg(test)]
mod tests {
    #[test]
    fn unit_variants_read_as_the_derive_reads_them() {
        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Clone, Copy)]
        #[serde(rename_all = "snake_case")]
        enum Derived {
            AwaitingHello,
            Connected,
        }
        #[derive(Debug, PartialEq, Clone, Copy)]
        struct Ours(Derived);
        impl<'de> serde::Deserialize<'de> for Ours {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let variants = [Ours(Derived::AwaitingHello), Ours(Derived::Connected)];
                super::unit_variant(d, &["awaiting_hello", "connected"], &variants)
            }
        }
        for text in
            ["\"awaiting_hello\"", "\"connected\"", "\"Connected\"", "\"nope\"", "5", "null", "\"conn\\u0065cted\""]
        {
            let derived = serde_json::from_str::<Derived>(text);
            let ours = serde_json::from_str::<Ours>(text);
            assert_eq!(ours.as_ref().ok().map(|o| o.0), derived.as_ref().ok().copied(), "{text}");
            if let (Err(a), Err(b)) = (&ours, &derived) {
                // The same words; the derive's also say where (line, column).
                if a.to_string().starts_with("unknown variant") {
                    assert!(b.to_string().starts_with(&a.to_string()), "{a} / {b}");
                }
            }
        }
        for role in crate::identity::Role::ALL {
            let text = serde_json::to_string(&role).unwrap();
            let back = crate::decode::from_text(&text, crate::identity::Role::from_value).unwrap();
            assert_eq!(back, role);
        }
        for role in [crate::classroom::Role::Teacher, crate::classroom::Role::Observer] {
            let text = serde_json::to_string(&role).unwrap();
            assert_eq!(serde_json::from_str::<crate::classroom::Role>(&text).unwrap(), role);
        }
    }

    use super::ToJson;
    use serde_json::{Map, Value};
    use std::collections::BTreeMap;

    #[test]
    fn builds_what_serde_json_builds() {
        let name = String::from("Ada");
        let maybe: Option<u32> = None;
        let some = Some(7u64);
        let list = vec!["a", "b"];
        let nested = serde_json::json!({"k": [1, 2.5, null]});
        let mut map = Map::new();
        map.insert("z".into(), Value::Bool(false));
        let mut tree = BTreeMap::new();
        tree.insert("q".to_string(), 3u32);
        let key = String::from("dynamic");
        let ours = crate::json!({
            "name": name, "ref": &name, "str": "lit", "neg": -5i64, "usize": 3usize, "f": 0.1 + 0.2,
            "nan": f64::NAN, "inf": f64::INFINITY, "none": maybe, "some": some, "list": list,
            "array": [1, "two", {"three": 3}, [], null, true, false], "empty": {}, "nested": nested,
            "map": map, "tree": tree, key.clone(): 1, "dup": 1, "dup": 2, "bools": [true, false],
        });
        let theirs = serde_json::json!({
            "name": name, "ref": &name, "str": "lit", "neg": -5i64, "usize": 3usize, "f": 0.1 + 0.2,
            "nan": f64::NAN, "inf": f64::INFINITY, "none": maybe, "some": some, "list": list,
            "array": [1, "two", {"three": 3}, [], null, true, false], "empty": {}, "nested": nested,
            "map": map, "tree": tree, key.clone(): 1, "dup": 1, "dup": 2, "bools": [true, false],
        });
        assert_eq!(ours, theirs);
        assert_eq!(crate::json!([]), serde_json::json!([]));
        assert_eq!(crate::json!(42u8), serde_json::json!(42u8));
        assert_eq!(1.5f32.to_json(), serde_json::json!(1.5f32));
        assert_eq!(u64::MAX.to_json(), serde_json::json!(u64::MAX));
        assert_eq!(i64::MIN.to_json(), serde_json::json!(i64::MIN));
    }

    #[derive(serde::Serialize)]
    struct Row {
        n: u64,
        i: i64,
        x: f64,
        s: String,
        o: Option<Vec<f64>>,
        m: BTreeMap<String, Option<bool>>,
    }

    proptest::proptest! {
        #[test]
        fn doubles_and_strings_match_serde_json(bits in proptest::prelude::any::<u64>(), s in ".{0,12}") {
            let v = f64::from_bits(bits);
            proptest::prop_assert_eq!(crate::json!({"v": v, "s": s}), serde_json::json!({"v": v, "s": s}));
        }

        #[test]
        fn serialized_through_text_is_to_value(n in proptest::prelude::any::<u64>(), i in proptest::prelude::any::<i64>(),
            bits in proptest::prelude::any::<u64>(), more in proptest::collection::vec(proptest::prelude::any::<u64>(), 0..4),
            s in ".{0,12}", flag in proptest::prelude::any::<Option<bool>>()) {
            let row = Row {
                n, i, x: f64::from_bits(bits), s: s.clone(),
                o: (!more.is_empty()).then(|| more.iter().map(|b| f64::from_bits(*b)).collect()),
                m: BTreeMap::from([(s, flag)]),
            };
            proptest::prop_assert_eq!(super::serialized(&row), serde_json::to_value(&row).unwrap());
        }
    }
}
