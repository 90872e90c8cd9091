//! Fuzzing harness (proptest): hostile bytes and JSON-ish input into every
//! decoder, validator and reducer a client can reach. The property is always
//! the same: no panic, and where an answer is produced it is well-formed.
//!
//! `cargo test --lib fuzz_tests` runs a short pass (part of `npm test`); a long
//! run is `PROPTEST_CASES=100000 cargo test --release --lib fuzz_tests`.
//! (`cargo fuzz` needs nightly and a libFuzzer build, which the suite cannot
//! assume; these targets map one to one onto fuzz targets if it ever can.)

use crate::certificate;
use crate::classroom::{self, Effect, Peer, QuizRef, Role, SessionConfig, SessionState};
use crate::identity::{self, Claims};
use crate::lesson;
use crate::run::{self, Canvas, Event};
use crate::urlparts;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// Cases per property unless PROPTEST_CASES overrides it (short run in `npm test`).
fn cfg() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

// ---------------------------------------------------------------- generators

/// Field names the decoders look at, plus noise: so generated objects hit real branches.
const KEYS: &[&str] = &[
    "type",
    "last_seq",
    "version",
    "step",
    "x",
    "y",
    "id",
    "kind",
    "text",
    "points",
    "color",
    "question_id",
    "choice",
    "from",
    "to",
    "title",
    "summary",
    "timeline",
    "quiz",
    "pass_threshold",
    "payload",
    "events",
    "language",
    "tags",
    "prompt",
    "choices",
    "answer",
    "alg",
    "sub",
    "org",
    "roles",
    "exp",
    "proof",
    "issuer",
    "validFrom",
    "validUntil",
    "credentialSubject",
    "credentialStatus",
    "@context",
    "__proto__",
    "",
];

/// Client message types, every event type the folds know (the parity
/// streams' list) and two malformed ones.
const CLIENT_TYPES: &[&str] = &[
    "hello",
    "cursor",
    "annotate",
    "clear_annotations",
    "pause",
    "resume",
    "end",
    "answer",
    "ask",
    "respond",
    "explain",
    "ping",
];

fn types() -> Vec<&'static str> {
    CLIENT_TYPES.iter().chain(crate::streams::EVENT_TYPES).chain(&["Bad Type", ""]).copied().collect()
}

fn odd_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9_.-]{0,12}",
        any::<String>(),
        Just("\u{0}".to_owned()),
        Just("\u{202e}evil\u{200f}".to_owned()),
        Just("🦀👩‍🏫".to_owned()),
        Just("' OR 1=1; DROP TABLE events; --".to_owned()),
        Just("../../etc/passwd".to_owned()),
        Just("x".repeat(70_000)),
        prop::sample::select(types()).prop_map(str::to_owned),
    ]
}

fn odd_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)),
        Just(json!(1e308)),
        Just(json!(-1)),
        Just(json!(0)),
        Just(json!(9_223_372_036_854_775_807i64)),
        Just(json!(18_446_744_073_709_551_615u64)),
        (0i64..20).prop_map(Value::from),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        odd_number(),
        odd_string().prop_map(Value::String),
    ]
}

/// Arbitrary JSON whose objects use the keys the code reads.
fn any_json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..8).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect::<Map<_, _>>())
            }),
        ]
    })
}

/// An object with a plausible `type` and random fields: the shape of a client message or event.
fn typed_object() -> impl Strategy<Value = Value> {
    (prop::sample::select(types()), prop::collection::vec((prop::sample::select(KEYS), any_json()), 0..6)).prop_map(
        |(t, kv)| {
            let mut m: Map<String, Value> = kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            m.insert("type".into(), Value::String(t.into()));
            Value::Object(m)
        },
    )
}

/// Text a socket may carry: raw bytes (lossy), JSON-ish token soup, JSON, truncated JSON, deep nesting.
fn socket_text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        "[{}\\[\\]:,\"a-z0-9.eE+\\-\\\\ ]{0,96}",
        typed_object().prop_map(|v| v.to_string()),
        (typed_object(), any::<usize>()).prop_map(|(v, cut)| {
            let s = v.to_string();
            let mut cut = cut % (s.len() + 1);
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s[..cut].to_owned()
        }),
        (1usize..20_000).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n))),
        (1usize..5_000).prop_map(|n| format!("{}1{}", "{\"type\":".repeat(n), "}".repeat(n))),
    ]
}

fn config() -> SessionConfig {
    SessionConfig {
        session_id: "s1".into(),
        run_id: "r1".into(),
        lesson_id: "l1".into(),
        version: 1,
        sha256: "ab".repeat(32),
        teacher_id: "t".into(),
        org: "acme".into(),
        step_count: 5,
        quiz: vec![QuizRef { id: "q1".into(), choices: 3 }],
    }
}

fn ids() -> impl FnMut() -> String {
    let mut n = 0u64;
    move || {
        n += 1;
        format!("ev-{n}")
    }
}

// ---------------------------------------------------------------- properties

proptest! {
    #![proptest_config(cfg())]

    /// The WebSocket decoder: any text is a message or a coded error, never a panic.
    #[test]
    fn decode_client_msg_never_panics(text in socket_text()) {
        if let Ok(msg) = classroom::decode_client_msg(&text) {
            prop_assert!(msg.validate().is_ok());
        }
    }

    /// `receive` end to end, a stream of hostile messages from a teacher and two
    /// observers: no panic, persisted events are gapless, an observer never moves the cursor.
    #[test]
    fn receive_stream_never_panics(msgs in prop::collection::vec((0usize..3, socket_text(), 0i64..200), 1..40)) {
        let mut state = SessionState::new(config());
        let mut peers = [
            Peer::new("t", Role::Teacher, 0),
            Peer::new("u1", Role::Observer, 0),
            Peer::new("u2", Role::Teacher, 0), // claims teacher, is not the session's
        ];
        let mut new_id = ids();
        let mut now = 0i64;
        for (who, text, dt) in msgs {
            now += dt;
            let before_seq = state.seq;
            let before_cursor = state.cursor.clone();
            let effects = classroom::receive(&mut state, &mut peers[who], &text, now, &mut new_id);
            let mut expect = before_seq;
            for e in &effects {
                if let Effect::Persist(evs) = e {
                    for ev in evs {
                        expect += 1;
                        prop_assert_eq!(ev.seq, expect);
                    }
                }
            }
            prop_assert_eq!(state.seq, expect);
            if who != 0 {
                prop_assert_eq!(&state.cursor, &before_cursor);
            }
            prop_assert!(state.cursor.step >= 0 && state.cursor.step <= 5);
        }
    }

    /// Same, with well-typed-looking messages (more of them get past the decoder).
    #[test]
    fn receive_typed_messages(msgs in prop::collection::vec((0usize..2, typed_object()), 1..60)) {
        let mut state = SessionState::new(config());
        let mut peers = [Peer::new("t", Role::Teacher, 0), Peer::new("u1", Role::Observer, 0)];
        let mut new_id = ids();
        for (i, (who, v)) in msgs.into_iter().enumerate() {
            let hello = json!({"type": "hello"}).to_string();
            if i < 2 {
                classroom::receive(&mut state, &mut peers[who], &hello, i as i64 * 1000, &mut new_id);
            }
            let before = state.seq;
            let effects = classroom::receive(&mut state, &mut peers[who], &v.to_string(), 10_000 + i as i64 * 1000, &mut new_id);
            let persisted: usize = effects.iter().map(|e| if let Effect::Persist(v) = e { v.len() } else { 0 }).sum();
            prop_assert_eq!(state.seq, before + persisted as u64);
        }
    }

    /// The run event validator over arbitrary JSON and batch-shaped JSON.
    #[test]
    fn validate_batch_never_panics(v in any_json(), items in prop::collection::vec(typed_object(), 0..8), id in odd_string()) {
        let _ = run::validate_batch(&v);
        let mut items = items;
        for it in items.iter_mut() {
            if let Value::Object(m) = it {
                m.insert("id".into(), Value::String(id.clone()));
            }
        }
        if let Ok(batch) = run::validate_batch(&Value::Array(items.clone())) {
            prop_assert!(batch.len() == items.len());
            for e in batch {
                prop_assert!(run::is_valid_type(&e.kind));
                prop_assert!(run::parse_uuid(&e.id).is_some());
            }
        }
    }

    /// The lesson validator over arbitrary JSON and lesson-shaped JSON.
    #[test]
    fn validate_draft_never_panics(
        v in any_json(),
        title in odd_string(),
        timeline in prop::collection::vec(typed_object(), 0..10),
        quiz in any_json(),
        threshold in odd_number(),
    ) {
        let _ = lesson::validate_draft(&v);
        let timeline: Vec<Value> = timeline.into_iter().map(|t| {
            let kind = t["type"].clone();
            json!({"type": kind, "payload": t})
        }).collect();
        let body = json!({"title": title, "summary": "s", "timeline": timeline, "quiz": quiz, "pass_threshold": threshold});
        if let Ok(d) = lesson::validate_draft(&body) {
            prop_assert!(d.pass_threshold >= 0.0 && d.pass_threshold <= 1.0);
        }
    }

    /// The canvas reducer folds anything; the fold is deterministic.
    #[test]
    fn canvas_apply_never_panics(evs in prop::collection::vec((prop::sample::select(types()), any_json()), 0..40)) {
        let mut a = Canvas::default();
        let mut b = Canvas::default();
        for (k, p) in &evs {
            a.apply(k, p);
            b.apply(k, p);
        }
        prop_assert_eq!(a.applied, evs.len() as u64);
        prop_assert_eq!(a.hash(), b.hash());
    }

    /// The session reducer folds any event (unknown types, wrong payloads, seq jumps).
    #[test]
    fn session_apply_never_panics(evs in prop::collection::vec((typed_object(), any_json(), 0u64..4), 0..40)) {
        let mut s = SessionState::new(config());
        let mut seq = 0u64;
        for (t, payload, jump) in evs {
            seq = seq.saturating_add(jump);
            let kind = t["type"].as_str().unwrap_or_default().to_owned();
            let payload = if jump % 2 == 0 { t } else { payload };
            let ev = Event { id: format!("e{seq}"), run_id: "r1".into(), seq, kind, payload, timestamp: 0, author_id: "x".into(), hash: String::new() };
            let before = s.seq;
            s.apply(&ev);
            prop_assert_eq!(s.seq, before.max(seq));
            let _ = s.snapshot();
            prop_assert!(serde_json::to_string(&s).is_ok());
        }
    }

    /// Token verification: arbitrary strings, JWT-shaped strings, and correctly
    /// signed tokens around arbitrary claims and headers.
    #[test]
    fn identity_verify_never_panics(raw in any::<String>(), header in any_json(), claims in any_json(), now in any::<i64>()) {
        let secret = b"fuzz-secret";
        prop_assert!(identity::verify(&raw, secret, now).is_err() || raw.split('.').count() == 3);
        let h = B64.encode(header.to_string());
        let b = B64.encode(claims.to_string());
        let unsigned = format!("{h}.{b}");
        let _ = identity::verify(&format!("{unsigned}."), secret, now);
        let _ = identity::verify(&format!("{unsigned}.{}", B64.encode(raw.as_bytes())), secret, now);
        // Correctly signed, arbitrary claims: must still reject anything that is not a valid Claims.
        let hs = B64.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
        let input = format!("{hs}.{b}");
        use hmac::Mac;
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
        m.update(input.as_bytes());
        let token = format!("{input}.{}", B64.encode(m.finalize().into_bytes()));
        if let Ok(c) = identity::verify(&token, secret, now) {
            prop_assert!(c.exp > now);
            prop_assert!(identity::is_valid_id(&c.sub) && identity::is_valid_id(&c.org));
        }
        // alg none is always refused.
        let none = format!("{}.{b}.", B64.encode(r#"{"alg":"none"}"#));
        prop_assert!(identity::verify(&none, secret, now).is_err());
    }

    /// Round trip: a token issued for valid claims verifies before expiry only.
    #[test]
    fn identity_roundtrip(sub in "[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}", exp in -1_000_000i64..4_000_000_000, now in -1_000_000i64..4_000_000_000) {
        let claims = Claims { sub: sub.clone(), org: "acme".into(), roles: vec![], exp };
        let token = identity::issue(&claims, b"k").unwrap();
        prop_assert_eq!(identity::verify(&token, b"k", now).is_ok(), exp > now);
        prop_assert!(identity::verify(&token, b"other", now).is_err());
    }

    /// URL splitting: any string (including non-ASCII and stray `%`).
    #[test]
    fn urlparts_split_never_panics(url in any::<String>(), tail in "[%/?&=#+a-fA-F0-9.]{0,40}") {
        for u in [url.clone(), format!("https://h{tail}"), format!("{url}{tail}"), format!("http://x/{tail}{url}")] {
            let (origin, path, _query) = urlparts::split(&u);
            prop_assert!(path.starts_with('/') || !path.is_empty());
            prop_assert!(u.starts_with(&origin) || origin.is_empty());
        }
        let _ = urlparts::decode(&tail);
    }

    /// Credential verification: a genuine signed credential with random parts
    /// replaced, and arbitrary JSON; never panics, and a tampered credential is never valid.
    #[test]
    fn certificate_verify_never_panics(
        path in prop::collection::vec(prop::sample::select(KEYS), 1..3),
        replacement in any_json(),
        junk in any_json(),
        now in prop_oneof![Just("2025-06-01T12:00:00Z".to_owned()), any::<String>()],
    ) {
        let (cred, resolve) = signed_credential();
        let _ = certificate::native::verify(&junk, &resolve, None, &now);
        let _ = certificate::native::verify(&junk, &resolve, Some(true), "2025-06-01T12:00:00Z");
        let mut tampered = cred.clone();
        set_path(&mut tampered, &path, replacement);
        let v = certificate::native::verify(&tampered, &resolve, Some(false), &now);
        if tampered != cred {
            prop_assert!(!v.valid || !path_is_signed(&path), "tampered credential verified: {:?}", path);
        }
        let _ = certificate::status_entry(&tampered);
        let _ = certificate::revoked_in(&junk, 3);
    }
}

fn set_path(v: &mut Value, path: &[&str], new: Value) {
    let mut cur = v;
    for (i, k) in path.iter().enumerate() {
        let Value::Object(m) = cur else { return };
        if i + 1 == path.len() {
            m.insert((*k).to_owned(), new);
            return;
        }
        cur = m.entry((*k).to_owned()).or_insert_with(|| json!({}));
    }
}

/// Everything but `proof` is covered by the signature; `proof` itself must be intact too.
fn path_is_signed(path: &[&str]) -> bool {
    !path.is_empty()
}

fn signed_credential() -> (Value, impl Fn(&str) -> Option<[u8; 32]>) {
    let issuer = "https://edge.example/v1/issuer";
    let key = certificate::native::Key::new(&[7; 32], "k1");
    let input: certificate::CredentialInput = serde_json::from_value(json!({
        "certificate_id": "urn:uuid:9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d",
        "issuer_id": issuer, "issuer_name": "Dropple Academy", "learner_id": "lrn_5f2c",
        "lesson_id": "les_42", "lesson_version": 3, "lesson_title": "Fractions, visually",
        "lesson_sha256": "ab".repeat(32), "criteria": "Score at least 80% on the quiz.",
        "score": 0.8333333333333334, "attempt_run_id": "run_7", "seq_from": 1, "seq_to": 9,
        "events_sha256": "cd".repeat(32), "valid_from": "2025-05-01T10:00:00Z",
        "status_list_url": "https://edge.example/v1/status-lists/1", "status_index": 17,
    }))
    .unwrap();
    let cred = key.sign(certificate::build_credential(&input), "2025-05-01T10:00:01Z");
    let profile = certificate::issuer_profile(issuer, "Dropple Academy", &[key.public()]);
    (cred, move |m: &str| certificate::resolve_from_profile(&profile, m))
}

/// Deep nesting past serde_json's recursion limit: a coded error, not a stack overflow.
#[test]
fn deeply_nested_json_is_refused() {
    for n in [127, 128, 129, 10_000, 100_000] {
        let text = format!("{}{}", "[".repeat(n), "]".repeat(n));
        let _ = classroom::decode_client_msg(&text);
        let text = format!("{{\"type\":\"ask\",\"text\":{}1{}}}", "[".repeat(n), "]".repeat(n));
        assert!(classroom::decode_client_msg(&text).is_err());
    }
    let deep: Result<Value, _> = serde_json::from_str(&"[".repeat(10_000));
    assert!(deep.is_err());
}

/// Sanity: a genuine credential verifies, so the tamper property above means something.
#[test]
fn genuine_credential_verifies() {
    let (cred, resolve) = signed_credential();
    let v = certificate::native::verify(&cred, &resolve, Some(false), "2025-06-01T12:00:00Z");
    assert!(v.valid, "{:?}", v.checks);
}
