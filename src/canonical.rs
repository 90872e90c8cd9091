//! Canonical JSON (RFC 8785, JCS) and sha256 helpers, shared by lesson
//! artifacts, replay state hashes and certificate proofs. One definition of
//! "the same content" means one definition of "the same hash".

use serde_json::{Number, Value};
use sha2::{Digest, Sha256};

/// Serialize `value` in canonical form (RFC 8785): object keys sorted by
/// UTF-16 code units, no whitespace, strings escaped minimally and numbers
/// printed exactly as ECMAScript `Number.prototype.toString` would.
pub fn to_canonical_string(value: &Value) -> String {
    let mut out = String::new();
    write_value(value, &mut out);
    out
}

/// Append the canonical form of `value` to `out` (for callers that build a
/// canonical object around it without cloning it into a `Value` first).
pub fn write_canonical(value: &Value, out: &mut String) {
    write_value(value, out);
}

/// Append `s` as a canonical JSON string.
pub fn write_canonical_str(s: &str, out: &mut String) {
    write_string(s, out);
}

fn write_value(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            crate::order::sort_by(&mut entries, |a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(k, out);
                out.push(':');
                write_value(v, out);
            }
            out.push('}');
        }
    }
}

/// Largest integer magnitude below which every integer is an exact f64.
const MAX_SAFE: u64 = 1 << 53;

fn write_number(n: &Number, out: &mut String) {
    if let Some(u) = n.as_u64() {
        if u <= MAX_SAFE {
            out.push_str(itoa::Buffer::new().format(u));
            return;
        }
    } else if let Some(i) = n.as_i64() {
        if i.unsigned_abs() <= MAX_SAFE {
            out.push_str(itoa::Buffer::new().format(i));
            return;
        }
    }
    // Everything else is what a JSON parser in ECMAScript would hold: a double.
    write_f64(n.as_f64().unwrap_or(0.0), out);
}

/// Append [`format_f64`]'s text of `v` to `out`. Every live cursor event
/// carries two doubles: the common case (żmij's positional layout, which
/// ECMAScript uses for those magnitudes too) is copied without building the
/// digits apart; exponent forms go through [`format_f64`].
pub fn write_f64(v: f64, out: &mut String) {
    if v.is_finite() && v != 0.0 {
        let mut buffer = zmij::Buffer::new();
        let text = buffer.format_finite(v);
        if !text.contains(['e', 'E']) {
            out.push_str(text.strip_suffix(".0").unwrap_or(text));
            return;
        }
    }
    out.push_str(&format_f64(v));
}

/// ECMAScript `Number.prototype.toString` for a finite double (RFC 8785
/// section 3.2.2.3). NaN and infinities cannot occur in JSON; they print
/// as "null", as `JSON.stringify` does.
pub fn format_f64(v: f64) -> String {
    if !v.is_finite() {
        return "null".to_owned();
    }
    if v == 0.0 {
        return "0".to_owned(); // also -0
    }
    let (digits, exp) = shortest_digits(v.abs());
    let k = digits.len() as i32;
    let n = exp + 1; // position of the decimal point relative to the digits
    let mut out = String::new();
    if v < 0.0 {
        out.push('-');
    }
    if k <= n && n <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        let (int, frac) = digits.split_at(n as usize);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-n) as usize));
        out.push_str(&digits);
    } else {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        out.push('e');
        out.push(if n - 1 < 0 { '-' } else { '+' });
        out.push_str(&(n - 1).unsigned_abs().to_string());
    }
    out
}

/// The shortest digits that read back as `v` (> 0, finite) and the decimal
/// exponent of the first: v = d.ddd × 10^exp.
///
/// Żmij (the printer serde_json links for every float it writes, so it costs
/// neither wasm anything) gives the shortest digits that read back and, among
/// those, the ones closest to the exact value, ties to even: the digits
/// ECMAScript prints. Only its layout differs ("1.5e-7", "123.456", "1e21").
fn shortest_digits(v: f64) -> (String, i32) {
    decimal_digits(zmij::Buffer::new().format_finite(v))
}

/// The significant digits of a decimal text ("123.456", "1.5e-7", "0.001",
/// "1e21") and the exponent of the first of them: v = d.ddd × 10^exp.
fn decimal_digits(text: &str) -> (String, i32) {
    let (mantissa, exp) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.trim_start_matches('+').parse::<i32>().unwrap_or(0)),
        None => (text, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all = int.bytes().chain(frac.bytes()).filter(u8::is_ascii_digit);
    // The point sits after the integer digits; each leading zero moves the
    // first significant digit one place to the right of it.
    let mut point = int.bytes().filter(u8::is_ascii_digit).count() as i32;
    let mut digits = String::new();
    for b in all {
        if digits.is_empty() && b == b'0' {
            point -= 1;
        } else {
            digits.push(char::from(b));
        }
    }
    digits.truncate(digits.trim_end_matches('0').len());
    (digits, exp + point - 1)
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    // Runs that need no escape are copied whole (ids, hashes, most text):
    // the chain hashes every event, live ones included.
    let mut rest = s;
    while let Some(at) = rest.bytes().position(|b| b < 0x20 || b == b'"' || b == b'\\') {
        // `at` is an ASCII byte, so both cuts are on character boundaries.
        let (Some(run), Some(&b), Some(tail)) = (rest.get(..at), rest.as_bytes().get(at), rest.get(at + 1..)) else {
            break;
        };
        out.push_str(run);
        write_escaped(b, out);
        rest = tail;
    }
    out.push_str(rest);
    out.push('"');
}

/// One ASCII byte that must be escaped.
fn write_escaped(b: u8, out: &mut String) {
    match b {
        b'"' => out.push_str("\\\""),
        b'\\' => out.push_str("\\\\"),
        0x08 => out.push_str("\\b"),
        0x09 => out.push_str("\\t"),
        0x0A => out.push_str("\\n"),
        0x0C => out.push_str("\\f"),
        0x0D => out.push_str("\\r"),
        b => out.push_str(&format!("\\u{b:04x}")),
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    digest_hex(&Sha256::digest(bytes).into())
}

/// Lowercase hex of a SHA-256 digest. Written here: `hex::encode` pushes a
/// character at a time and its slice encoder steps an iterator per byte, a
/// tenth of a live event's CPU between them (every event is hashed).
pub fn digest_hex(digest: &[u8; 32]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0u8; 64];
    for (pair, byte) in text.chunks_exact_mut(2).zip(digest) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 15)];
    }
    String::from_utf8(text.to_vec()).unwrap_or_default() // hex digits are ASCII
}

/// sha256 of the canonical form, lowercase hex.
pub fn canonical_sha256(value: &Value) -> String {
    sha256_hex(to_canonical_string(value).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(text: &str) -> String {
        to_canonical_string(&serde_json::from_str(text).unwrap())
    }

    #[test]
    fn key_order_does_not_change_the_hash() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":[true,null,"x"]}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{ "a" : [true, null, "x"], "b" : 1 }"#).unwrap();
        assert_eq!(to_canonical_string(&a), r#"{"a":[true,null,"x"],"b":1}"#);
        assert_eq!(canonical_sha256(&a), canonical_sha256(&b));
        assert_ne!(canonical_sha256(&a), canonical_sha256(&json!({"a": [], "b": 1})));
    }

    /// RFC 8785 Appendix B, plus the edge cases of the reference test suite.
    #[test]
    fn rfc8785_number_table() {
        let table = [
            (0x0000000000000000u64, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
            (0x43143ff3c1cb0959, "1424953923781206.2"),
            (0x4340000000000001, "9007199254740994"),
            (0x4340000000000002, "9007199254740996"),
            // Ties between two shortest strings: the even one (checked against Node).
            (0xc314e3021f7a00e5, "-1469774447935545.2"),
            (0x4310e8f64d980d61, "1189936047194968.2"),
            (0x430009025871e74a, "564188163226857.2"),
        ];
        for (bits, expected) in table {
            let v = f64::from_bits(bits);
            assert_eq!(format_f64(v), expected, "{bits:016x}");
            // Same result through a serde_json Value.
            let n = Number::from_f64(v).unwrap();
            assert_eq!(to_canonical_string(&Value::Number(n)), expected);
            // And the text parses back to the same double.
            assert_eq!(expected.parse::<f64>().unwrap(), v);
        }
    }

    /// An independent path to the same digits: Rust's shortest `{:e}`, then
    /// the correctly rounded string of that length when it also reads back
    /// (Rust's shortest string need not be the closest one).
    fn shortest_digits_reference(v: f64) -> (String, i32) {
        let (mut digits, mut exp) = decimal_digits(&format!("{:e}", v));
        let precision = digits.len().saturating_sub(1);
        let (rounded, rounded_exp) = decimal_digits(&format!("{:.*e}", precision, v));
        let rounded = rounded.trim_end_matches('0').to_owned();
        if rounded.len() == digits.len()
            && format!("{}e{}", rounded, rounded_exp + 1 - rounded.len() as i32).parse::<f64>() == Ok(v)
        {
            digits = rounded;
            exp = rounded_exp;
        }
        (digits, exp)
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(20_000))]
        #[test]
        fn fast_shortest_digits_match_the_exact_path(bits in proptest::prelude::any::<u64>()) {
            let v = f64::from_bits(bits).abs();
            if v.is_finite() && v != 0.0 {
                proptest::prop_assert_eq!(shortest_digits(v), shortest_digits_reference(v));
            }
        }

        #[test]
        fn digest_hex_is_lowercase_hex(bytes in proptest::prelude::any::<[u8; 32]>()) {
            proptest::prop_assert_eq!(digest_hex(&bytes), hex::encode(bytes));
        }

        #[test]
        fn written_doubles_match_format_f64(bits in proptest::prelude::any::<u64>(), m in 1u64..1_000_000_000, e in -30i32..30) {
            let short: f64 = format!("{m}e{e}").parse().unwrap();
            for v in [f64::from_bits(bits), short, -short, short.trunc()] {
                let mut written = String::new();
                write_f64(v, &mut written);
                proptest::prop_assert_eq!(written, format_f64(v));
            }
        }

        #[test]
        fn short_decimals_match_the_exact_path(m in 1u64..1_000_000_000, e in -30i32..30) {
            let v: f64 = format!("{m}e{e}").parse().unwrap();
            proptest::prop_assert_eq!(shortest_digits(v), shortest_digits_reference(v));
        }
    }

    #[test]
    fn ecmascript_number_forms() {
        for (text, expected) in [
            ("1e21", "1e+21"),
            ("1e20", "100000000000000000000"),
            ("1e-7", "1e-7"),
            ("1e-6", "0.000001"),
            ("10.0", "10"),
            ("-0.0", "0"),
            ("-0", "0"),
            ("0.1", "0.1"),
            ("123.456", "123.456"),
            ("1.5e300", "1.5e+300"),
            ("-2.5e-10", "-2.5e-10"),
            ("9007199254740993", "9007199254740992"),
            ("18446744073709551615", "18446744073709552000"),
            ("-9223372036854775808", "-9223372036854776000"),
            ("9223372036854775807", "9223372036854776000"),
            ("0.8333333333333334", "0.8333333333333334"),
        ] {
            assert_eq!(canon(text), expected, "{text}");
        }
        // 2^53 + 1 held as an integer is beyond the exact range: JCS prints the
        // double nearest to it, as JSON.parse would.
        assert_eq!(to_canonical_string(&json!(9_007_199_254_740_993u64)), "9007199254740992");
        assert_eq!(to_canonical_string(&json!(-42i64)), "-42");
    }

    /// The example of RFC 8785 section 3.2.2 and the reference test files.
    #[test]
    fn rfc8785_examples() {
        let cases = [
            (
                r#"{
  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}"#,
                "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],\"string\":\"\u{20ac}$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}",
            ),
            (
                r#"{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\u000a": "Newline",
  "1": "One",
  "\u0080": "Control\u007f",
  "\ud83d\ude02": "Smiley",
  "\u00f6": "Latin Small Letter O With Diaeresis",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "</script>": "Browser Challenge"
}"#,
                "{\"\\n\":\"Newline\",\"\\r\":\"Carriage Return\",\"1\":\"One\",\"</script>\":\"Browser Challenge\",\"\u{80}\":\"Control\u{7f}\",\"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\"\u{1f602}\":\"Smiley\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}",
            ),
            (
                r#"{
  "1": {"f": {"f": "hi","F": 5} ,"\n": 56.0},
  "10": { },
  "": "empty",
  "a": { },
  "111": [ {"e": "yes","E": "no" } ],
  "A": { }
}"#,
                r#"{"":"empty","1":{"\n":56,"f":{"F":5,"f":"hi"}},"10":{},"111":[{"E":"no","e":"yes"}],"A":{},"a":{}}"#,
            ),
            (
                r#"[56, {"d": true, "10": null, "1": [ ]}]"#,
                r#"[56,{"1":[],"10":null,"d":true}]"#,
            ),
            (
                r#"{"Unnormalized Unicode":"A\u030a"}"#,
                "{\"Unnormalized Unicode\":\"A\u{30a}\"}",
            ),
            (
                r#"{"peach": "a", "péché": "b", "pêche": "c", "sin": "d"}"#,
                r#"{"peach":"a","péché":"b","pêche":"c","sin":"d"}"#,
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(canon(input), expected);
        }
    }

    #[test]
    fn rfc8785_utf16_sort_order() {
        // RFC 8785 section 3.2.3: sorting by UTF-16 code units puts the
        // emoji (surrogates D83D..) before U+FB33.
        let input = r#"{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}"#;
        let expected = "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}";
        assert_eq!(canon(input), expected);
    }

    #[test]
    fn control_characters_use_lowercase_escapes() {
        assert_eq!(to_canonical_string(&json!("\u{1}\u{1f}\u{7f}")), "\"\\u0001\\u001f\u{7f}\"");
    }
}
