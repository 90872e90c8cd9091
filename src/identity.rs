//! Identity: HS256 JWTs (`sub`, `org`, `roles`, `exp`) signed with `AUTH_SECRET`.
//! Hand-written over `hmac` + `sha2` because a JWT crate would pull in RSA/EC
//! code and a clock we cannot use on wasm; HS256 alone is forty lines.

use crate::base64url;
use crate::decode::{self, Obj};
use crate::error::{AppError, AppResult};
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::Value;
use sha2::Sha256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Author,
    Teacher,
    Reviewer,
    Learner,
    Governor,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Author, Role::Teacher, Role::Reviewer, Role::Learner, Role::Governor];
}

/// In the order of `Role::ALL`.
const ROLE_NAMES: [&str; 5] = ["author", "teacher", "reviewer", "learner", "governor"];

impl Role {
    pub fn from_value(value: &Value) -> Result<Self, String> {
        let name = value.as_str().ok_or("expected a role name")?;
        let found = ROLE_NAMES.iter().position(|n| *n == name).and_then(|i| Role::ALL.get(i));
        found.copied().ok_or_else(|| format!("unknown role `{name}`, expected one of {}", ROLE_NAMES.join(", ")))
    }
}

impl Claims {
    pub fn from_value(value: &Value) -> Result<Self, String> {
        let o = Obj::of(value)?;
        let claims = Claims {
            sub: o.req("sub", decode::text),
            org: o.req("org", decode::text),
            roles: o.req("roles", |v| decode::list(v, Role::from_value)),
            exp: o.req("exp", decode::int),
        };
        o.done(claims)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Claims {
    pub sub: String,
    pub org: String,
    pub roles: Vec<Role>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: i64,
}

impl Claims {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// Ids (users, orgs) appear in URLs, keys and logs: keep them to a safe alphabet.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !id.starts_with('.')
}

fn mac(secret: &[u8]) -> AppResult<Hmac<Sha256>> {
    Hmac::<Sha256>::new_from_slice(secret).map_err(|_| AppError::internal("invalid AUTH_SECRET"))
}

pub fn issue(claims: &Claims, secret: &[u8]) -> AppResult<String> {
    let header = base64url::encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = base64url::encode(&serde_json::to_vec(claims).map_err(|e| AppError::internal(e.to_string()))?);
    let signing_input = format!("{header}.{body}");
    let mut m = mac(secret)?;
    m.update(signing_input.as_bytes());
    Ok(format!("{signing_input}.{}", base64url::encode(&m.finalize().into_bytes())))
}

/// Verify a token at `now_secs`. Every failure is a 401 with a reason that
/// names the problem but never echoes the token.
pub fn verify(token: &str, secret: &[u8], now_secs: i64) -> AppResult<Claims> {
    let bad = |why: &str| AppError::unauthorized(format!("invalid token: {why}"));
    if token.len() > 4096 {
        return Err(bad("too long"));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(b), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(bad("not three dot-separated parts"));
    };
    let header: serde_json::Value = base64url::decode(h)
        .and_then(|raw| serde_json::from_str(std::str::from_utf8(&raw).ok()?).ok())
        .ok_or_else(|| bad("header is not base64url JSON"))?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
        return Err(bad("only alg HS256 is accepted"));
    }
    let sig = base64url::decode(s).ok_or_else(|| bad("signature is not base64url"))?;
    let mut m = mac(secret)?;
    m.update(h.as_bytes());
    m.update(b".");
    m.update(b.as_bytes());
    m.verify_slice(&sig).map_err(|_| bad("bad signature"))?;
    let claims = base64url::decode(b)
        .and_then(|raw| decode::from_text(std::str::from_utf8(&raw).ok()?, Claims::from_value).ok())
        .ok_or_else(|| bad("claims are missing or malformed"))?;
    if !is_valid_id(&claims.sub) || !is_valid_id(&claims.org) {
        return Err(bad("sub and org must be ids of [A-Za-z0-9._-], at most 64 characters"));
    }
    if claims.exp <= now_secs {
        return Err(AppError::unauthorized("token expired"));
    }
    Ok(claims)
}

/// `Authorization: Bearer <token>` → the token.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let h = header?.trim();
    let (scheme, token) = h.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"test-secret";

    fn claims(exp: i64) -> Claims {
        Claims { sub: "ana".into(), org: "acme".into(), roles: vec![Role::Teacher], exp }
    }

    #[test]
    fn issued_token_verifies() {
        let t = issue(&claims(2_000), SECRET).unwrap();
        assert_eq!(verify(&t, SECRET, 1_000).unwrap(), claims(2_000));
    }

    #[test]
    fn every_rejection_is_401() {
        let good = issue(&claims(2_000), SECRET).unwrap();
        let (h, rest) = good.split_once('.').unwrap();
        let (b, _s) = rest.split_once('.').unwrap();
        let none_header = base64url::encode(br#"{"alg":"none","typ":"JWT"}"#);
        let forged_body = base64url::encode(br#"{"sub":"ana","org":"acme","roles":["governor"],"exp":2000}"#);
        let cases = [
            issue(&claims(2_000), b"other-secret").unwrap(), // bad signature
            format!("{none_header}.{b}."),                   // alg none
            issue(&claims(999), SECRET).unwrap(),            // expired
            format!("{h}.{forged_body}.{}", good.rsplit('.').next().unwrap()),
            "garbage".into(),
            "a.b.c".into(),
            format!("{h}.{b}"),
            format!("{good}.extra"),
        ];
        for t in cases {
            let e = verify(&t, SECRET, 1_000).unwrap_err();
            assert_eq!(e.status(), 401, "{t}");
        }
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
    }

    #[test]
    fn ids_are_a_safe_alphabet() {
        assert!(is_valid_id("demo-org_1.x"));
        for bad in ["", "../etc", "a/b", "a b", "é", &"x".repeat(65)] {
            assert!(!is_valid_id(bad), "{bad}");
        }
    }
}
