//! Splitting a request URL into origin, path and decoded query pairs.
//! Written here rather than using the `url` crate: its IDNA tables alone cost
//! about 100 KiB of wasm, paid at every cold start, and the worker only ever
//! sees URLs the runtime has already parsed and normalised.

/// `https://host:port/a/b?x=1&y=%20` → (`https://host:port`, `/a/b`, [(x, 1), (y, " ")]).
pub fn split(url: &str) -> (String, String, Vec<(String, String)>) {
    let without_fragment = url.split('#').next().unwrap_or_default();
    let (before_query, query) = match without_fragment.split_once('?') {
        Some((b, q)) => (b, q),
        None => (without_fragment, ""),
    };
    let after_scheme = before_query.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = before_query[after_scheme..].find('/').map(|i| i + after_scheme).unwrap_or(before_query.len());
    let origin = before_query[..path_start].to_owned();
    let path = match &before_query[path_start..] {
        "" => "/".to_owned(),
        p => p.to_owned(),
    };
    (origin, path, parse_query(query))
}

pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Percent-decoding with `+` as space (form encoding); invalid escapes stay as
/// they are and invalid UTF-8 becomes U+FFFD, so no input can fail.
pub fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |j: usize| bytes.get(j).and_then(|c| (*c as char).to_digit(16));
        match b {
            b'%' => match (hex(i + 1), hex(i + 2)) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn splits_urls() {
        let (o, p, q) = split("http://127.0.0.1:8787/v1/runs/x/state?at=2026-01-01T00%3A00%3A00Z&after=3&flag#frag");
        assert_eq!(o, "http://127.0.0.1:8787");
        assert_eq!(p, "/v1/runs/x/state");
        assert_eq!(
            q,
            vec![
                ("at".into(), "2026-01-01T00:00:00Z".into()),
                ("after".into(), "3".into()),
                ("flag".into(), "".into())
            ]
        );
        assert_eq!(split("https://h").1, "/");
        assert_eq!(decode("a+b%2Fc%zz%"), "a b/c%zz%");
        assert_eq!(decode("%FF"), "\u{FFFD}");
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,100}") {
            let _ = split(&s);
            let _ = decode(&s);
        }
    }
}
