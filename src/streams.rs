//! Seeded random event streams for the parity tests: one generator, used by the
//! native suite (below: every stream folds the same through a D1-like JSON
//! round trip and checkpoints) and by the browser build (`random_stream` in
//! `browser.rs`; `tests/core-browser.test.mjs` appends each stream to a run on
//! the real worker and compares the server's state hash with the browser's).
//!
//! Streams hold every event type the core knows (canvas, session, attempt)
//! and unknown ones, and odd payloads: missing and non-string ids, dangling
//! edges, non-string text, numbers that are hard to print (-0, 5e-324,
//! 1e21, 2^53 + 1, u64::MAX), keys whose UTF-8 and UTF-16 orders differ,
//! escapes and astral characters. Every stream passes `run::validate_batch`.

use crate::json;
use serde_json::{Map, Value};

/// splitmix64: tiny, seedable, the same on every target.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5EED_D20B_B1E5_0001)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform-ish in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// Every type a fold knows, and two it does not.
pub const EVENT_TYPES: &[&str] = &[
    "element.added",
    "element.updated",
    "element.moved",
    "element.removed",
    "edge.added",
    "edge.removed",
    "narration",
    "chapter",
    "session.started",
    "cursor.moved",
    "annotation.added",
    "annotations.cleared",
    "session.paused",
    "session.resumed",
    "session.ended",
    "question.asked",
    "question.answered",
    "quiz.responded",
    "explanation.requested",
    "explanation.ready",
    "attempt.started",
    "attempt.answered",
    "attempt.submitted",
    "x_custom.thing_2",
    "zz",
];

const IDS: &[&str] = &["a", "b", "c", "d", "é", "", "0", "\u{1F600}"];
const TEXTS: &[&str] = &[
    "",
    "hello",
    "hé",
    "日本語",
    "\u{1F600} astral",
    "quote \" backslash \\ slash /",
    "line\nbreak\ttab",
    "\u{0}\u{1f}\u{7f}",
    "\u{2028}\u{2029}",
    "\u{FFFF}\u{10000}",
];
/// Keys whose order by UTF-16 code units differs from their order by bytes.
const KEYS: &[&str] = &["z", "A", "é", "\u{FFFF}", "\u{10000}", "\u{1F600}", "aa", "a", "_", "1"];

fn number(rng: &mut Rng) -> Value {
    match rng.below(14) {
        0 => json!(0),
        1 => json!(-0.0),
        2 => json!(5e-324),
        3 => json!(1e21),
        4 => json!(1e-7),
        5 => json!(0.1 + 0.2),
        6 => json!(9_007_199_254_740_993u64),
        7 => json!(u64::MAX),
        8 => json!(i64::MIN),
        9 => json!(f64::MAX),
        10 => json!(-123.456),
        11 => json!((rng.next_u64() % 2000) as i64 - 1000),
        12 => json!(((rng.next_u64() % 1_000_000) as f64) / 7.0),
        _ => json!(1.5e300),
    }
}

fn odd(rng: &mut Rng, depth: u32) -> Value {
    match rng.below(if depth > 1 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => json!(rng.chance(50)),
        2 => number(rng),
        3 | 4 => json!(*rng.pick(TEXTS)),
        5 => Value::Array((0..rng.below(4)).map(|_| odd(rng, depth + 1)).collect()),
        _ => {
            let mut m = Map::new();
            for _ in 0..rng.below(4) {
                m.insert((*rng.pick(KEYS)).to_owned(), odd(rng, depth + 1));
            }
            Value::Object(m)
        }
    }
}

/// A field that is usually well-formed and sometimes not.
fn id_field(rng: &mut Rng) -> Option<Value> {
    match rng.below(12) {
        0 => None,
        1 => Some(number(rng)),
        2 => Some(Value::Null),
        _ => Some(json!(*rng.pick(IDS))),
    }
}

fn payload(rng: &mut Rng, kind: &str) -> Value {
    let mut p = Map::new();
    let put = |p: &mut Map<String, Value>, key: &str, v: Option<Value>| {
        if let Some(v) = v {
            p.insert(key.to_owned(), v);
        }
    };
    match kind {
        "element.added" | "element.updated" | "element.moved" => {
            put(&mut p, "id", id_field(rng));
            put(&mut p, "kind", Some(json!(*rng.pick(&["box", "dot", "label", "line", "Odd"]))));
            put(&mut p, "x", Some(number(rng)));
            put(&mut p, "y", Some(number(rng)));
            if rng.chance(50) {
                put(&mut p, "label", Some(json!(*rng.pick(TEXTS))));
            }
        }
        "element.removed" | "edge.removed" => put(&mut p, "id", id_field(rng)),
        "edge.added" => {
            put(&mut p, "id", id_field(rng));
            put(&mut p, "from", id_field(rng));
            put(&mut p, "to", id_field(rng));
        }
        "narration" | "question.answered" | "explanation.ready" => {
            put(&mut p, "text", Some(if rng.chance(85) { json!(*rng.pick(TEXTS)) } else { number(rng) }));
            put(&mut p, "question_id", id_field(rng));
        }
        "chapter" => put(&mut p, "title", Some(if rng.chance(85) { json!(*rng.pick(TEXTS)) } else { odd(rng, 1) })),
        "cursor.moved" | "explanation.requested" => {
            put(&mut p, "step", Some(json!(rng.below(20))));
            put(&mut p, "x", Some(number(rng)));
            put(&mut p, "y", if rng.chance(50) { Some(Value::Null) } else { None });
        }
        "question.asked" => {
            put(&mut p, "question_id", id_field(rng));
            put(&mut p, "text", Some(json!(*rng.pick(TEXTS))));
            put(&mut p, "asker_id", id_field(rng));
        }
        "quiz.responded" | "attempt.answered" => {
            put(&mut p, "question_id", id_field(rng));
            put(&mut p, "choice", Some(json!(rng.below(4))));
            put(&mut p, "learner_id", id_field(rng));
        }
        "session.paused" => {
            put(&mut p, "reason", Some(json!(*rng.pick(&["teacher", "teacher_disconnected", "bogus"]))))
        }
        "annotation.added" => {
            put(&mut p, "id", id_field(rng));
            put(&mut p, "kind", Some(json!("stroke")));
            put(&mut p, "points", Some(json!([[1, 2], [3.5, -4]])));
            put(&mut p, "step", Some(json!(rng.below(5))));
        }
        _ => {}
    }
    // Extra fields of every shape, on every type.
    for _ in 0..rng.below(3) {
        p.insert((*rng.pick(KEYS)).to_owned(), odd(rng, 0));
    }
    Value::Object(p)
}

/// A UUID v4-shaped id from the stream's generator (lowercase, hyphenated).
fn uuid(rng: &mut Rng) -> String {
    let (a, b) = (rng.next_u64(), rng.next_u64());
    let hex = format!("{a:016x}{b:016x}");
    format!("{}-{}-4{}-8{}-{}", &hex[0..8], &hex[8..12], &hex[13..16], &hex[17..20], &hex[20..32])
}

/// Stream `seed`: 1..=150 events as an append body's items
/// (`{"id", "type", "payload"}`), in order. Streams are cut into batches of
/// at most `run::MAX_BATCH_EVENTS` by whoever appends them.
pub fn random_stream(seed: u64) -> Vec<Value> {
    let mut rng = Rng::new(seed);
    let n = 1 + rng.below(150);
    (0..n)
        .map(|i| {
            // Every type shows up early in every stream of the suite (the
            // first events walk the list from a seed-dependent offset).
            let kind = if i < EVENT_TYPES.len() && rng.chance(30) {
                EVENT_TYPES[(i + seed as usize) % EVENT_TYPES.len()]
            } else if rng.chance(60) {
                EVENT_TYPES[rng.below(8)]
            } else {
                *rng.pick(EVENT_TYPES)
            };
            let mut item = json!({"id": uuid(&mut rng), "type": kind});
            // A missing payload is an empty object to the server.
            if !rng.chance(3) {
                item["payload"] = payload(&mut rng, kind);
            }
            item
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::canonical_sha256;
    use crate::run::{replay, validate_batch, Canvas, Checkpoint, Event, MAX_BATCH_EVENTS};

    /// The seeds the browser parity test uses (tests/core-browser.test.mjs).
    const PARITY_SEEDS: u64 = 200;

    /// What the edge does with a stream: validate each batch, give seqs,
    /// store the payload as JSON text in D1 and parse it back on replay.
    fn as_stored(items: &[Value]) -> Vec<Event> {
        let mut events = Vec::new();
        for batch in items.chunks(MAX_BATCH_EVENTS) {
            for e in validate_batch(&Value::Array(batch.to_vec())).expect("every generated batch is valid") {
                let text = serde_json::to_string(&e.payload).unwrap();
                events.push(Event {
                    id: e.id,
                    run_id: "r".into(),
                    seq: events.len() as u64 + 1,
                    kind: e.kind,
                    payload: serde_json::from_str(&text).unwrap(),
                    timestamp: 1_700_000_000_000,
                    author_id: "u".into(),
                    hash: String::new(),
                });
            }
        }
        events
    }

    /// The browser's fold: items straight from the generator, no envelope.
    fn folded(items: &[Value]) -> Canvas {
        let mut c = Canvas::default();
        for it in items {
            let empty = Value::Object(Map::new());
            c.apply(it["type"].as_str().unwrap(), it.get("payload").unwrap_or(&empty));
        }
        c
    }

    #[test]
    fn every_stream_folds_the_same_stored_or_not_with_or_without_checkpoints() {
        let mut seen = std::collections::BTreeSet::new();
        let mut hashes = Vec::new();
        for seed in 0..PARITY_SEEDS {
            let items = random_stream(seed);
            for it in &items {
                seen.insert(it["type"].as_str().unwrap().to_owned());
            }
            let direct = folded(&items);
            let stored = as_stored(&items);
            let (full, last, checkpoints) = replay(None, &stored, 7);
            assert_eq!(last, items.len() as u64);
            assert_eq!(full.hash(), direct.hash(), "seed {seed}");
            // What GET /v1/runs/{id}/state answers, hashed the way the browser hashes it.
            let body = serde_json::to_string(&json!({"seq": last, "state": full.to_value()})).unwrap();
            let reparsed: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(canonical_sha256(&reparsed["state"]), direct.hash(), "seed {seed}");
            for cp in &checkpoints {
                let cp: Checkpoint = serde_json::from_str(&serde_json::to_string(cp).unwrap()).unwrap();
                let cp = cp.verified().expect("checkpoint verifies");
                let (resumed, _, _) = replay(Some(&cp), stored.iter().filter(|e| e.seq > cp.seq), 7);
                assert_eq!(resumed.hash(), direct.hash(), "seed {seed} from checkpoint {}", cp.seq);
            }
            hashes.push(direct.hash());
        }
        for t in EVENT_TYPES {
            assert!(seen.contains(*t), "type {t} is generated");
        }
        // Pinned: tests/core-browser.test.mjs checks the browser build against
        // the same digest (sha256 of the 200 state hashes, one per line).
        let digest = crate::canonical::sha256_hex(hashes.join("\n").as_bytes());
        assert_eq!(digest, PARITY_DIGEST, "the generator or the fold changed: update both pins deliberately");
    }

    #[test]
    fn streams_are_deterministic() {
        assert_eq!(random_stream(42), random_stream(42));
        assert_ne!(random_stream(1), random_stream(2));
    }

    const PARITY_DIGEST: &str = "032eebc781071d41986d22fa7f654d7f46a0863572b8e711713cce04116bcaf9";
}
