//! Base64 (RFC 4648) as this crate uses it: tokens, listing cursors, JWK keys
//! and status lists in the URL-safe alphabet without padding, and a signing
//! key as a person may paste it (either alphabet, padded or not).
//!
//! Written here rather than taken from the `base64` crate: its general engine
//! (configurable alphabets and padding modes, decoding in wide chunks) was
//! ~5 KiB of the worker before wasm-opt for what is a table and two loops.
//! The tests hold both decoders to the crate's rules (a dev-dependency).

const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The URL-safe alphabet, no padding.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let mut group = 0u32;
        for (i, b) in chunk.iter().enumerate() {
            group |= u32::from(*b) << (16 - 8 * i);
        }
        // n bytes make n + 1 characters.
        for i in 0..=chunk.len() {
            let sextet = (group >> (18 - 6 * i)) & 63;
            out.push(char::from(URL_SAFE.get(sextet as usize).copied().unwrap_or(b'A')));
        }
    }
    out
}

/// The URL-safe alphabet, no padding, and canonical: the bits the last
/// character carries beyond the last byte are zero, so each byte string has
/// exactly one text (as the `base64` crate's `URL_SAFE_NO_PAD` decodes).
pub fn decode(text: &str) -> Option<Vec<u8>> {
    decode_with(text.as_bytes(), b'-', b'_')
}

/// Either alphabet (not mixed), without padding or with exactly the padding
/// its length calls for; canonical as [`decode`]. For a secret a person pastes.
pub fn decode_lenient(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let unpadded = match bytes {
        [rest @ .., b'=', b'='] if bytes.len().is_multiple_of(4) && rest.len() % 4 == 2 => rest,
        [rest @ .., b'='] if bytes.len().is_multiple_of(4) && rest.len() % 4 == 3 => rest,
        _ => bytes,
    };
    decode_with(unpadded, b'-', b'_').or_else(|| decode_with(unpadded, b'+', b'/'))
}

fn decode_with(text: &[u8], c62: u8, c63: u8) -> Option<Vec<u8>> {
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 2);
    let (mut group, mut bits) = (0u32, 0u32);
    for &c in text {
        let sextet = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            _ if c == c62 => 62,
            _ if c == c63 => 63,
            _ => return None,
        };
        group = (group << 6) | u32::from(sextet);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((group >> bits) as u8);
            group &= (1 << bits) - 1;
        }
    }
    (group == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE as CRATE_URL_SAFE, URL_SAFE_NO_PAD};
    use base64::Engine;
    use proptest::prelude::*;

    fn crate_lenient(text: &str) -> Option<Vec<u8>> {
        [URL_SAFE_NO_PAD, CRATE_URL_SAFE, STANDARD_NO_PAD, STANDARD].iter().find_map(|e| e.decode(text).ok())
    }

    #[test]
    fn known_texts() {
        assert_eq!(encode(b""), "");
        assert_eq!(encode(b"f"), "Zg");
        assert_eq!(encode(b"fo"), "Zm8");
        assert_eq!(encode(b"foo"), "Zm9v");
        assert_eq!(encode(&[0xfb, 0xff]), "-_8");
        assert_eq!(decode("-_8"), Some(vec![0xfb, 0xff]));
        assert_eq!(decode("+/8"), None, "the standard alphabet is not URL-safe");
        assert_eq!(decode_lenient("+/8="), Some(vec![0xfb, 0xff]));
        assert_eq!(decode_lenient("-_8="), Some(vec![0xfb, 0xff]));
        assert_eq!(decode_lenient("-/8"), None, "alphabets are not mixed");
        assert_eq!(decode("Zh"), None, "non-zero trailing bits");
        assert_eq!(decode("Zg=="), None, "no padding in the strict form");
        assert_eq!(decode_lenient("Zg="), None, "padding is all or nothing");
        assert_eq!(decode("Z"), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn encodes_as_the_crate(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let text = encode(&bytes);
            prop_assert_eq!(&text, &URL_SAFE_NO_PAD.encode(&bytes));
            prop_assert_eq!(decode(&text), Some(bytes));
        }

        #[test]
        fn decodes_as_the_crate(text in "[A-Za-z0-9_+/=-]{0,12}|[A-Za-z0-9_-]{0,12}={0,2}|[A-Za-z0-9+/]{0,12}={0,2}|.{0,6}") {
            prop_assert_eq!(decode(&text), URL_SAFE_NO_PAD.decode(&text).ok(), "strict: {:?}", text);
            prop_assert_eq!(decode_lenient(&text), crate_lenient(&text), "lenient: {:?}", text);
        }

        #[test]
        fn any_encoding_of_bytes_reads_back(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            for e in [URL_SAFE_NO_PAD, CRATE_URL_SAFE, STANDARD_NO_PAD, STANDARD] {
                prop_assert_eq!(decode_lenient(&e.encode(&bytes)), Some(bytes.clone()));
            }
        }
    }
}
