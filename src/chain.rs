//! Tamper evidence: every run's events form a hash chain (`../shared/API.md`).
//!
//! `hash(e) = sha256(prev_hash_hex ‖ JCS(e without hash))`, where `prev_hash_hex`
//! is the previous event's hash as 64 lowercase hex characters, or 64 zeros
//! before seq 1. Pure: the append batch, the classroom object and the verify
//! walk all call these functions, so there is one definition of the chain.

use crate::canonical::{sha256_hex, write_canonical, write_canonical_str};
use crate::run::Event;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The "previous hash" of seq 1.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The chained hash of `e` (its own `hash` field is ignored) after `prev`.
pub fn event_hash(prev: &str, e: &Event) -> String {
    envelope_hash(prev, &envelope_jcs(e))
}

/// The chained hash of an envelope already in its [`envelope_jcs`] form: the
/// live classroom reuses that text for its broadcast.
pub fn envelope_hash(prev: &str, jcs: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(jcs.as_bytes());
    crate::canonical::digest_hex(&h.finalize().into())
}

/// RFC 8785 form of the envelope without `hash`, written directly (keys in
/// their canonical order) instead of cloning the payload into a new object:
/// verify and the archive hash every event of a run.
pub fn envelope_jcs(e: &Event) -> String {
    let mut out = String::with_capacity(192);
    write_envelope_head(&e.author_id, &e.id, &mut out);
    write_canonical(&e.payload, &mut out);
    write_envelope_tail(&e.run_id, e.seq, e.timestamp, &e.kind, &mut out);
    out
}

/// The envelope's canonical text up to its payload (the keys before it in
/// canonical order). The payload's canonical text goes next, then
/// [`write_envelope_tail`]: the live classroom writes a payload it already
/// holds as text (its storage row) without a `Value` in between.
pub fn write_envelope_head(author_id: &str, id: &str, out: &mut String) {
    out.push_str("{\"author_id\":");
    write_canonical_str(author_id, out);
    out.push_str(",\"id\":");
    write_canonical_str(id, out);
    out.push_str(",\"payload\":");
}

/// The rest of the envelope after its payload, closing brace included.
pub fn write_envelope_tail(run_id: &str, seq: u64, timestamp: i64, kind: &str, out: &mut String) {
    out.push_str(",\"run_id\":");
    write_canonical_str(run_id, out);
    out.push_str(",\"seq\":");
    write_canonical(&Value::from(seq), out);
    out.push_str(",\"timestamp\":");
    write_canonical(&Value::from(timestamp), out);
    out.push_str(",\"type\":");
    write_canonical_str(kind, out);
    out.push('}');
}

/// Give `events` (consecutive, in seq order) their hashes after `prev`;
/// returns the new head hash.
pub fn seal(prev: &str, events: &mut [Event]) -> String {
    let mut head = prev.to_owned();
    for e in events.iter_mut() {
        e.hash = event_hash(&head, e);
        head.clone_from(&e.hash);
    }
    head
}

/// Why a chain breaks at some seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Break {
    /// The seq is not the one after the previous event's (a row is missing or moved).
    SeqGap,
    /// The row has no hash at all.
    MissingHash,
    /// The stored hash is not the hash of the stored row after the previous one.
    HashMismatch,
}

impl Break {
    pub fn as_str(self) -> &'static str {
        match self {
            Break::SeqGap => "seq_gap",
            Break::MissingHash => "missing_hash",
            Break::HashMismatch => "hash_mismatch",
        }
    }
}

/// Where a walk stands: the last good seq and its hash. Pages are checked one
/// after another by carrying this between them, so verify reads bounded pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Walk {
    pub last_seq: u64,
    pub head: String,
}

impl Default for Walk {
    fn default() -> Self {
        Walk { last_seq: 0, head: GENESIS.to_owned() }
    }
}

impl Walk {
    /// Check the next page (in seq order). `Err((seq, why))` names the first bad event.
    pub fn check<'a>(&mut self, page: impl IntoIterator<Item = &'a Event>) -> Result<(), (u64, Break)> {
        for e in page {
            if e.seq != self.last_seq + 1 {
                return Err((self.last_seq + 1, Break::SeqGap));
            }
            if e.hash.is_empty() {
                return Err((e.seq, Break::MissingHash));
            }
            let expected = event_hash(&self.head, e);
            if expected != e.hash {
                return Err((e.seq, Break::HashMismatch));
            }
            self.last_seq = e.seq;
            self.head = expected;
        }
        Ok(())
    }
}

/// The hash of an archive segment's bytes (its content address).
pub fn segment_address(bytes: &[u8]) -> String {
    sha256_hex(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::to_canonical_string;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    fn ev(seq: u64, payload: Value) -> Event {
        Event {
            id: format!("00000000-0000-4000-8000-{seq:012}"),
            run_id: "r1".into(),
            seq,
            kind: "element.moved".into(),
            payload,
            timestamp: 1_700_000_000_000 + seq as i64,
            author_id: "ada".into(),
            hash: String::new(),
        }
    }

    fn chain(n: u64) -> Vec<Event> {
        let mut events: Vec<Event> = (1..=n).map(|s| ev(s, json!({"id": "a", "x": s, "y": 1.5}))).collect();
        seal(GENESIS, &mut events);
        events
    }

    #[test]
    fn first_hash_is_sha256_of_zeros_and_jcs() {
        let e = ev(1, json!({"b": 1, "a": "é"}));
        let jcs = r#"{"author_id":"ada","id":"00000000-0000-4000-8000-000000000001","payload":{"a":"é","b":1},"run_id":"r1","seq":1,"timestamp":1700000000001,"type":"element.moved"}"#;
        let expected = sha256_hex(format!("{GENESIS}{jcs}").as_bytes());
        // The direct writer equals the general canonicalizer over the same object.
        let generic = json!({"id": e.id, "run_id": e.run_id, "seq": e.seq, "type": e.kind, "payload": e.payload, "timestamp": e.timestamp, "author_id": e.author_id});
        assert_eq!(envelope_jcs(&e), to_canonical_string(&generic));
        assert_eq!(envelope_jcs(&e), jcs);
        assert_eq!(event_hash(GENESIS, &e), expected);
        assert_eq!(expected.len(), 64);
        assert!(expected.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }

    #[test]
    fn own_hash_field_is_not_hashed() {
        let mut e = ev(1, json!({}));
        let h = event_hash(GENESIS, &e);
        e.hash = "f".repeat(64);
        assert_eq!(event_hash(GENESIS, &e), h);
    }

    #[test]
    fn an_intact_chain_verifies_in_pages() {
        let events = chain(25);
        let mut walk = Walk::default();
        for page in events.chunks(7) {
            walk.check(page).unwrap();
        }
        assert_eq!(walk.last_seq, 25);
        assert_eq!(walk.head, events[24].hash);
    }

    #[test]
    fn gaps_and_missing_hashes_are_named() {
        let mut events = chain(5);
        events.remove(2);
        assert_eq!(Walk::default().check(&events), Err((3, Break::SeqGap)));
        let mut events = chain(5);
        events[3].hash.clear();
        assert_eq!(Walk::default().check(&events), Err((4, Break::MissingHash)));
    }

    proptest! {
        /// Change any one field of any one event: verify names that event's seq.
        #[test]
        fn tampering_any_field_is_found_at_its_seq(n in 1u64..40, at in 0usize..40, field in 0usize..8, salt in 1u64..1000) {
            let mut events = chain(n);
            let at = at % events.len();
            let e = &mut events[at];
            match field {
                0 => e.id = format!("{}x", e.id),
                1 => e.run_id = format!("r{salt}x"), // never the original "r1"
                2 => e.kind = format!("k{salt}"),
                3 => e.payload = json!({"id": "a", "x": salt + 10_000}),
                4 => e.timestamp += salt as i64,
                5 => e.author_id = format!("u{salt}"),
                6 => e.hash = sha256_hex(&salt.to_le_bytes()),
                _ => e.payload["y"] = json!(1.5 + salt as f64),
            }
            let found = Walk::default().check(&events);
            prop_assert_eq!(found.map_err(|(seq, _)| seq), Err(at as u64 + 1));
        }

        /// The envelope written directly is exactly the general RFC 8785 form.
        #[test]
        fn direct_jcs_is_the_canonical_form(text in any::<String>(), x in any::<f64>().prop_filter("finite", |f| f.is_finite()), seq in 1u64..(1 << 53), ts in any::<i64>()) {
            let mut e = ev(seq, json!({"t": text, "x": x, "n": [1, null, true, {"é": -0.0}]}));
            e.timestamp = ts;
            e.author_id = text.clone();
            let generic = json!({"id": e.id, "run_id": e.run_id, "seq": e.seq, "type": e.kind, "payload": e.payload, "timestamp": e.timestamp, "author_id": e.author_id});
            prop_assert_eq!(envelope_jcs(&e), to_canonical_string(&generic));
        }

        /// Sealing page by page equals sealing all at once; the walk accepts both.
        #[test]
        fn sealing_in_pages_is_sealing_at_once(n in 1u64..60, cut in 0usize..60) {
            let whole = chain(n);
            let mut parts: Vec<Event> = (1..=n).map(|s| ev(s, json!({"id": "a", "x": s, "y": 1.5}))).collect();
            let cut = cut.min(parts.len());
            let (a, b) = parts.split_at_mut(cut);
            let mid = seal(GENESIS, a);
            let head = seal(&mid, b);
            prop_assert_eq!(&parts, &whole);
            let mut walk = Walk::default();
            prop_assert!(walk.check(&parts).is_ok());
            prop_assert_eq!(walk.head, head);
        }
    }
}
