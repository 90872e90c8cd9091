//! Runs: append-only event streams. Envelopes and their validation, the canvas
//! reducer (the one fold used by run replay and lesson frames), checkpoints,
//! and the xAPI view of events.

use crate::canonical::canonical_sha256;
use crate::decode::{self, Obj};
use crate::error::{AppError, AppResult};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;

pub const MAX_BATCH_EVENTS: usize = 100;
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
pub const MAX_TYPE_LEN: usize = 64;

/// The envelope of every event, in runs and in live sessions alike.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    pub run_id: String,
    pub seq: u64,
    #[serde(rename = "type")]
    pub kind: String,
    pub payload: Value,
    /// Server time, ms since the Unix epoch.
    pub timestamp: i64,
    pub author_id: String,
    /// The chained hash (see [`crate::chain`]); empty only before the writer seals it.
    #[serde(default)]
    pub hash: String,
}

impl Event {
    /// The envelope as JSON (what every API answer and archive line holds).
    pub fn to_value(&self) -> Value {
        crate::json!({
            "id": self.id,
            "run_id": self.run_id,
            "seq": self.seq,
            "type": self.kind,
            "payload": self.payload,
            "timestamp": self.timestamp,
            "author_id": self.author_id,
            "hash": self.hash,
        })
    }

    /// Back from [`Self::to_value`]'s shape, taking its strings and payload
    /// (nothing is copied); `None` if a field is missing or mistyped.
    pub fn from_value(v: Value) -> Option<Event> {
        let Value::Object(mut m) = v else { return None };
        fn text(m: &mut Map<String, Value>, k: &str) -> Option<String> {
            match m.remove(k) {
                Some(Value::String(s)) => Some(s),
                _ => None,
            }
        }
        Some(Event {
            seq: m.get("seq")?.as_u64()?,
            timestamp: m.get("timestamp")?.as_i64()?,
            payload: m.remove("payload")?,
            id: text(&mut m, "id")?,
            run_id: text(&mut m, "run_id")?,
            kind: text(&mut m, "type")?,
            author_id: text(&mut m, "author_id")?,
            hash: text(&mut m, "hash").unwrap_or_default(),
        })
    }
}

/// An event as a client proposes it, before the writer gives it a seq.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub id: String,
    pub kind: String,
    pub payload: Value,
}

/// Lowercase, hyphenated UUID text (what `uuid` prints), so one event has one spelling.
pub fn parse_uuid(text: &str) -> Option<String> {
    let u = uuid::Uuid::try_parse(text).ok()?;
    Some(u.hyphenated().to_string())
}

/// `element.added`, `narration`, `x_custom.thing_2`: dot-separated lowercase words.
pub fn is_valid_type(t: &str) -> bool {
    t.len() <= MAX_TYPE_LEN
        && t.split('.').all(|seg| {
            let mut bytes = seg.bytes();
            matches!(bytes.next(), Some(b'a'..=b'z'))
                && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
}

/// Validate an append body's `events` array. Errors name the index and field.
pub fn validate_batch(events: &Value) -> AppResult<Vec<NewEvent>> {
    let items = events.as_array().ok_or_else(|| AppError::bad_request("invalid_field", "events: must be an array"))?;
    if items.is_empty() {
        return Err(AppError::bad_request("invalid_field", "events: must hold at least one event"));
    }
    if items.len() > MAX_BATCH_EVENTS {
        return Err(AppError::too_large(format!("events: at most {MAX_BATCH_EVENTS} events per batch")));
    }
    let mut out: Vec<NewEvent> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let field =
            |name: &str, why: &str| AppError::bad_request("invalid_field", format!("events[{i}].{name}: {why}"));
        let obj = item
            .as_object()
            .ok_or_else(|| AppError::bad_request("invalid_field", format!("events[{i}]: must be an object")))?;
        if let Some(extra) = obj.keys().find(|k| !matches!(k.as_str(), "id" | "type" | "payload")) {
            return Err(field(extra, "unknown field (allowed: id, type, payload)"));
        }
        let id = obj
            .get("id")
            .and_then(Value::as_str)
            .and_then(parse_uuid)
            .ok_or_else(|| field("id", "must be a UUID string"))?;
        let kind = obj
            .get("type")
            .and_then(Value::as_str)
            .filter(|t| is_valid_type(t))
            .ok_or_else(|| field("type", "must be dotted lowercase words, e.g. element.added"))?;
        let payload = match obj.get("payload") {
            None => Value::Object(Map::new()),
            Some(p @ Value::Object(_)) => p.clone(),
            Some(_) => return Err(field("payload", "must be a JSON object")),
        };
        if payload.to_string().len() > MAX_PAYLOAD_BYTES {
            return Err(AppError::too_large(format!("events[{i}].payload: larger than {MAX_PAYLOAD_BYTES} bytes")));
        }
        if out.iter().any(|e| e.id == id) {
            return Err(field("id", "appears twice in the batch"));
        }
        out.push(NewEvent { id, kind: kind.to_owned(), payload });
    }
    Ok(out)
}

/// The canvas: what a run's events and a lesson's timeline fold into.
/// BTreeMaps keep serialization (and so hashes) independent of insert order.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Canvas {
    pub elements: BTreeMap<String, Map<String, Value>>,
    pub edges: BTreeMap<String, Map<String, Value>>,
    pub narration: Vec<Marker>,
    pub chapters: Vec<Marker>,
    /// How many events (or timeline items) have been folded in.
    pub applied: u64,
}

/// A narration line or chapter title and the step that produced it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Marker {
    pub step: u64,
    pub text: String,
}

// In a derived `Checkpoint`.
decode::deserialize_from_value!(Canvas);

impl Marker {
    pub fn from_value(value: &Value) -> Result<Self, String> {
        let o = Obj::of(value)?;
        let marker = Marker { step: o.req("step", decode::uint), text: o.req("text", decode::text) };
        o.done(marker)
    }
}

/// `{id: object}`: the canvas's elements or edges.
fn objects_by_id(value: &Value) -> Result<BTreeMap<String, Map<String, Value>>, String> {
    let map = value.as_object().ok_or("expected an object")?;
    let mut out = BTreeMap::new();
    for (id, object) in map {
        let object = object.as_object().ok_or_else(|| format!("{id}: expected an object"))?;
        out.insert(id.clone(), object.clone());
    }
    Ok(out)
}

impl Canvas {
    pub fn from_value(value: &Value) -> Result<Self, String> {
        let o = Obj::of(value)?;
        let canvas = Canvas {
            elements: o.req("elements", objects_by_id),
            edges: o.req("edges", objects_by_id),
            narration: o.req("narration", |v| decode::list(v, Marker::from_value)),
            chapters: o.req("chapters", |v| decode::list(v, Marker::from_value)),
            applied: o.req("applied", decode::uint),
        };
        o.done(canvas)
    }
}

fn str_field<'a>(p: &'a Value, key: &str) -> Option<&'a str> {
    p.get(key).and_then(Value::as_str)
}

impl Canvas {
    /// Fold one event. Unknown types and malformed payloads change nothing but
    /// the applied count: the log keeps them, the canvas ignores them.
    pub fn apply(&mut self, kind: &str, payload: &Value) {
        self.applied += 1;
        let step = self.applied;
        match kind {
            "element.added" => {
                if let (Some(id), Some(obj)) = (str_field(payload, "id"), payload.as_object()) {
                    self.elements.insert(id.to_owned(), obj.clone());
                }
            }
            "element.updated" | "element.moved" => {
                let Some(id) = str_field(payload, "id") else { return };
                let (Some(el), Some(obj)) = (self.elements.get_mut(id), payload.as_object()) else {
                    return;
                };
                for (k, v) in obj {
                    let movable = k == "x" || k == "y";
                    if k != "id" && (kind == "element.updated" || movable) {
                        el.insert(k.clone(), v.clone());
                    }
                }
            }
            "element.removed" => {
                if let Some(id) = str_field(payload, "id") {
                    if self.elements.remove(id).is_some() {
                        self.edges.retain(|_, e| {
                            e.get("from").and_then(Value::as_str) != Some(id)
                                && e.get("to").and_then(Value::as_str) != Some(id)
                        });
                    }
                }
            }
            "edge.added" => {
                if let (Some(id), Some(_), Some(_), Some(obj)) = (
                    str_field(payload, "id"),
                    str_field(payload, "from"),
                    str_field(payload, "to"),
                    payload.as_object(),
                ) {
                    self.edges.insert(id.to_owned(), obj.clone());
                }
            }
            "edge.removed" => {
                if let Some(id) = str_field(payload, "id") {
                    self.edges.remove(id);
                }
            }
            "narration" => {
                if let Some(text) = str_field(payload, "text") {
                    self.narration.push(Marker { step, text: text.to_owned() });
                }
            }
            "chapter" => {
                if let Some(title) = str_field(payload, "title") {
                    self.chapters.push(Marker { step, text: title.to_owned() });
                }
            }
            _ => {}
        }
    }

    /// [`Canvas::apply`] from the payload's JSON text. A move (most of a
    /// recording) is read into its two fields without building the payload;
    /// anything else, or a move of any other shape (no object, duplicate
    /// keys, an id that is not text), is parsed and applied as a whole.
    pub fn apply_raw(&mut self, kind: &str, payload: &RawValue) {
        if kind == "element.moved" && payload.get().trim_start().starts_with('{') {
            if let Ok(Move { id, x, y }) = serde_json::from_str::<Move>(payload.get()) {
                self.applied += 1;
                if let Some(el) = self.elements.get_mut(id.as_ref()) {
                    for (k, v) in [("x", x.0), ("y", y.0)] {
                        match (v, el.get_mut(k)) {
                            (Some(v), Some(slot)) => *slot = v,
                            (Some(v), None) => {
                                el.insert(k.to_owned(), v);
                            }
                            (None, _) => {}
                        }
                    }
                }
                return;
            }
        }
        let payload = serde_json::from_str(payload.get()).unwrap_or(Value::Null);
        self.apply(kind, &payload);
    }

    pub fn to_value(&self) -> Value {
        crate::json_value::serialized(&self)
    }

    /// sha256 of the canonical JSON of the state: equal states, equal hashes.
    pub fn hash(&self) -> String {
        canonical_sha256(&self.to_value())
    }
}

/// The fields of `element.moved` that change an element.
#[derive(Deserialize)]
struct Move<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(default)]
    x: Present,
    #[serde(default)]
    y: Present,
}

/// A field that may be absent; present, even as `null`, it is a value
/// (`Option<Value>` would read `null` as absent, and `apply` stores it).
#[derive(Default)]
struct Present(Option<Value>);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::deserialize(d).map(|v| Present(Some(v)))
    }
}

/// A folded state at some seq, stored so replay only folds the tail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: u64,
    pub state: Canvas,
    pub hash: String,
}

impl Checkpoint {
    pub fn of(seq: u64, state: Canvas) -> Self {
        let hash = state.hash();
        Checkpoint { seq, state, hash }
    }
    /// A stored checkpoint is trusted only if its state still hashes to `hash`.
    pub fn verified(self) -> Option<Self> {
        (self.state.hash() == self.hash).then_some(self)
    }
}

/// Replay events (in seq order, all after the checkpoint's seq) onto the
/// checkpoint's state, or onto the empty canvas. Every `every` seqs it hands
/// back a checkpoint worth storing, so the next replay starts from there.
pub fn replay<'a>(
    from: Option<&Checkpoint>,
    events: impl IntoIterator<Item = &'a Event>,
    every: u64,
) -> (Canvas, u64, Vec<Checkpoint>) {
    let (mut state, mut seq) = match from {
        Some(c) => (c.state.clone(), c.seq),
        None => (Canvas::default(), 0),
    };
    let mut new_checkpoints = Vec::new();
    for e in events {
        if e.seq <= seq {
            continue;
        }
        state.apply(&e.kind, &e.payload);
        seq = e.seq;
        if every > 0 && seq % every == 0 && from.is_none_or(|c| c.seq < seq) {
            new_checkpoints.push(Checkpoint::of(seq, state.clone()));
        }
    }
    (state, seq, new_checkpoints)
}

/// One row of a replay page as the event store writes it: `[seq, type, payload]`,
/// borrowed from the page text; the payload is parsed when it is folded.
#[derive(Debug, Deserialize)]
pub struct PageRow<'a>(pub u64, #[serde(borrow)] pub Cow<'a, str>, #[serde(borrow)] pub &'a RawValue);

/// Fold one page of a replay (rows in seq order) onto `state`, which stands
/// at `*seq`. Returns the state at the page's last multiple of `every`: the
/// one checkpoint worth storing from the page (a first replay of a long run
/// then keeps one state per page, and clones and hashes nothing else).
pub fn fold_page(state: &mut Canvas, seq: &mut u64, rows: &[PageRow<'_>], every: u64) -> Option<(u64, Canvas)> {
    let last = rows.last().map_or(*seq, |r| r.0);
    let keep_at = last.checked_div(every).map_or(0, |q| q * every);
    let mut kept = None;
    for PageRow(at, kind, payload) in rows {
        if *at <= *seq {
            continue;
        }
        state.apply_raw(kind, payload);
        *seq = *at;
        if *at == keep_at {
            kept = Some((*at, state.clone()));
        }
    }
    kept
}

pub use crate::timefmt::{parse_rfc3339_ms, rfc3339_ms};

const XAPI_VERBS: &[(&str, &str)] = &[
    ("session.started", "http://adlnet.gov/expapi/verbs/launched"),
    ("session.ended", "http://adlnet.gov/expapi/verbs/terminated"),
    ("session.paused", "https://w3id.org/xapi/video/verbs/paused"),
    ("session.resumed", "http://adlnet.gov/expapi/verbs/resumed"),
    ("question.asked", "http://adlnet.gov/expapi/verbs/asked"),
    ("question.answered", "http://adlnet.gov/expapi/verbs/responded"),
    ("quiz.responded", "http://adlnet.gov/expapi/verbs/answered"),
    ("attempt.started", "http://adlnet.gov/expapi/verbs/attempted"),
    ("attempt.answered", "http://adlnet.gov/expapi/verbs/answered"),
    ("attempt.submitted", "http://adlnet.gov/expapi/verbs/completed"),
    ("attempt.graded", "http://adlnet.gov/expapi/verbs/scored"),
    ("cursor.moved", "http://adlnet.gov/expapi/verbs/progressed"),
];

/// One xAPI 1.0.3 statement per event; the statement id is the event id.
pub fn xapi_statement(e: &Event, base_url: &str) -> Value {
    let verb = XAPI_VERBS
        .iter()
        .find(|(t, _)| *t == e.kind)
        .map(|(_, v)| (*v).to_owned())
        .unwrap_or_else(|| format!("{base_url}/xapi/verbs/{}", e.kind));
    crate::json!({
        "id": e.id,
        "actor": {"objectType": "Agent", "account": {"homePage": base_url, "name": e.author_id}},
        "verb": {"id": verb, "display": {"en-US": e.kind}},
        "object": {
            "objectType": "Activity",
            "id": format!("{base_url}/v1/runs/{}", e.run_id),
            "definition": {"type": "http://adlnet.gov/expapi/activities/lesson"}
        },
        "timestamp": rfc3339_ms(e.timestamp),
        "context": {"extensions": {format!("{base_url}/xapi/ext/seq"): e.seq}},
        "version": "1.0.3"
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn ev(seq: u64, kind: &str, payload: Value) -> Event {
        Event {
            id: format!("00000000-0000-4000-8000-{seq:012}"),
            run_id: "r".into(),
            seq,
            kind: kind.into(),
            payload,
            timestamp: 1_700_000_000_000 + seq as i64,
            author_id: "u".into(),
            hash: String::new(),
        }
    }

    #[test]
    fn validation_names_index_and_field() {
        let ok = json!({"id": "6F9619FF-8B86-D011-B42D-00C04FC964FF", "type": "element.added", "payload": {}});
        assert_eq!(validate_batch(&json!([ok])).unwrap()[0].id, "6f9619ff-8b86-d011-b42d-00c04fc964ff");
        let cases = [
            (json!([ok, {"id": "nope", "type": "a"}]), "events[1].id"),
            (json!([{"id": "6f9619ff-8b86-d011-b42d-00c04fc964fe", "type": "Bad Type"}]), "events[0].type"),
            (json!([{"id": "6f9619ff-8b86-d011-b42d-00c04fc964fe", "type": "a", "payload": [1]}]), "events[0].payload"),
            (json!([{"id": "6f9619ff-8b86-d011-b42d-00c04fc964fe", "type": "a", "seq": 3}]), "events[0].seq"),
            (json!([ok, ok]), "events[1].id"),
            (json!([]), "events"),
            (json!({}), "events"),
        ];
        for (body, field) in cases {
            let e = validate_batch(&body).unwrap_err();
            assert_eq!(e.status(), 400);
            assert!(e.public_message().starts_with(field), "{} vs {field}", e.public_message());
        }
        let big =
            json!([{"id": "6f9619ff-8b86-d011-b42d-00c04fc964fe", "type": "a", "payload": {"t": "x".repeat(70_000)}}]);
        assert_eq!(validate_batch(&big).unwrap_err().status(), 413);
    }

    #[test]
    fn type_names() {
        for t in ["element.added", "narration", "x.y_2.z"] {
            assert!(is_valid_type(t), "{t}");
        }
        for t in ["", ".a", "a.", "A.b", "a..b", "2a", "a-b", "a b"] {
            assert!(!is_valid_type(t), "{t}");
        }
    }

    #[test]
    fn canvas_folds_the_timeline() {
        let mut c = Canvas::default();
        c.apply("element.added", &json!({"id": "a", "kind": "box", "x": 1, "y": 2}));
        c.apply("element.added", &json!({"id": "b", "kind": "box", "x": 5, "y": 5}));
        c.apply("edge.added", &json!({"id": "e", "from": "a", "to": "b"}));
        c.apply("element.moved", &json!({"id": "a", "x": 10, "y": 20, "kind": "ignored"}));
        c.apply("element.updated", &json!({"id": "b", "label": "B"}));
        c.apply("narration", &json!({"text": "hello"}));
        c.apply("chapter", &json!({"title": "One"}));
        c.apply("mystery.type", &json!({"whatever": true}));
        assert_eq!(c.elements["a"]["x"], json!(10));
        assert_eq!(c.elements["a"]["kind"], json!("box"));
        assert_eq!(c.elements["b"]["label"], json!("B"));
        assert_eq!(c.narration, vec![Marker { step: 6, text: "hello".into() }]);
        assert_eq!(c.applied, 8);
        c.apply("element.removed", &json!({"id": "a"}));
        assert!(c.edges.is_empty(), "edges of a removed element go with it");
    }

    #[test]
    fn xapi_statement_uses_event_id() {
        let s = xapi_statement(&ev(3, "quiz.responded", json!({})), "https://x.test");
        assert_eq!(s["id"], json!("00000000-0000-4000-8000-000000000003"));
        assert_eq!(s["verb"]["id"], json!("http://adlnet.gov/expapi/verbs/answered"));
        assert_eq!(s["timestamp"], json!("2023-11-14T22:13:20.003Z"));
    }

    fn arb_event() -> impl Strategy<Value = (String, Value)> {
        let id = prop::sample::select(vec!["a", "b", "c", "d"]);
        let num = prop_oneof![
            any::<i32>().prop_map(|n| json!(n)),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f))
        ];
        (0..9usize, id.clone(), id, num.clone(), num, "[a-z ]{0,8}").prop_map(|(k, a, b, x, y, text)| {
            let kinds = [
                "element.added",
                "element.updated",
                "element.moved",
                "element.removed",
                "edge.added",
                "edge.removed",
                "narration",
                "chapter",
                "other.kind",
            ];
            let payload =
                json!({"id": a, "from": a, "to": b, "x": x, "y": y, "text": text, "title": text, "kind": "box"});
            (kinds[k].to_owned(), payload)
        })
    }

    proptest! {
        /// Checkpoint + tail == full replay, bit for bit, for every K and every
        /// checkpoint position, including after a JSON round trip of the checkpoint.
        #[test]
        fn checkpoint_plus_tail_equals_full_replay(items in prop::collection::vec(arb_event(), 0..60), every in 1u64..12, cut in 0usize..60) {
            let events: Vec<Event> = items.iter().enumerate().map(|(i, (k, p))| ev(i as u64 + 1, k, p.clone())).collect();
            let (full, last, checkpoints) = replay(None, &events, every);
            prop_assert_eq!(last, events.len() as u64);
            prop_assert_eq!(checkpoints.len() as u64, last / every);
            let full_json = serde_json::to_string(&full).unwrap();
            for cp in checkpoints.iter().chain(std::iter::once(&Checkpoint::of(0, Canvas::default()))) {
                let stored: Checkpoint = serde_json::from_str(&serde_json::to_string(cp).unwrap()).unwrap();
                let stored = stored.verified().expect("a stored checkpoint still verifies");
                let tail = events.iter().filter(|e| e.seq > stored.seq);
                let (resumed, _, _) = replay(Some(&stored), tail, every);
                prop_assert_eq!(serde_json::to_string(&resumed).unwrap(), full_json.clone());
                prop_assert_eq!(resumed.hash(), full.hash());
            }
            // Replay of a prefix equals the state at that seq from any earlier checkpoint.
            let cut = cut.min(events.len());
            let (prefix, _, _) = replay(None, &events[..cut], 0);
            let (again, _, _) = replay(None, &events[..cut], every);
            prop_assert_eq!(prefix, again);
        }

        /// Folding page by page (as the edge's cold replay does) gives the
        /// state `replay` gives, and keeps exactly `replay`'s checkpoint at
        /// each page's last multiple of K.
        #[test]
        fn paged_fold_equals_replay(items in prop::collection::vec(arb_event(), 0..80), every in 1u64..12, page in 1usize..30) {
            let events: Vec<Event> = items.iter().enumerate().map(|(i, (k, p))| ev(i as u64 + 1, k, p.clone())).collect();
            let (full, last, checkpoints) = replay(None, &events, every);
            let (mut state, mut seq) = (Canvas::default(), 0);
            for chunk in events.chunks(page) {
                let text = serde_json::to_string(&chunk.iter().map(|e| json!([e.seq, e.kind, e.payload])).collect::<Vec<_>>()).unwrap();
                let rows: Vec<PageRow> = serde_json::from_str(&text).unwrap();
                let before = seq;
                let kept = fold_page(&mut state, &mut seq, &rows, every);
                let expected = checkpoints.iter().rfind(|c| c.seq > before && c.seq <= seq);
                let kept = kept.map(|(s, c)| Checkpoint::of(s, c));
                prop_assert_eq!(kept.as_ref(), expected);
            }
            prop_assert_eq!(seq, last);
            prop_assert_eq!(serde_json::to_string(&state).unwrap(), serde_json::to_string(&full).unwrap());
        }

        /// A move read field by field equals the move applied as a whole, for
        /// any shape of payload text.
        #[test]
        fn apply_raw_is_apply(items in prop::collection::vec(arb_event(), 0..30), x in prop_oneof![Just("1"), Just("null"), Just("\"s\""), Just("[1]"), Just("{\"a\":1}"), Just("-0.0"), Just("1e400")], which in 0usize..9) {
            let moves = [
                format!(r#"{{"id":"a","x":{x},"y":2}}"#),
                format!(r#"{{"id":"a","x":{x}}}"#),
                format!(r#"{{"y":{x},"id":"b","kind":"z"}}"#),
                format!(r#"{{"id":"a","x":1,"x":{x}}}"#),
                format!(r#"{{"id":"a","id":"b","x":{x}}}"#),
                format!(r#"{{"id":5,"x":{x}}}"#),
                format!(r#"["a",{x},3]"#),
                format!(r#" {{ "id" : "b" , "x" : {x} }} "#),
                "null".to_owned(),
            ];
            let mut raw = Canvas::default();
            let mut whole = Canvas::default();
            for (k, p) in &items {
                let text = serde_json::to_string(p).unwrap();
                raw.apply_raw(k, &RawValue::from_string(text).unwrap());
                whole.apply(k, p);
            }
            if let Ok(text) = RawValue::from_string(moves[which].clone()) {
                raw.apply_raw("element.moved", &text);
                whole.apply("element.moved", &serde_json::from_str(text.get()).unwrap_or(Value::Null));
            }
            prop_assert_eq!(serde_json::to_string(&raw).unwrap(), serde_json::to_string(&whole).unwrap());
        }

        #[test]
        fn replay_is_deterministic(items in prop::collection::vec(arb_event(), 0..40)) {
            let events: Vec<Event> = items.iter().enumerate().map(|(i, (k, p))| ev(i as u64 + 1, k, p.clone())).collect();
            let a = replay(None, &events, 0).0;
            let b = replay(None, &events, 0).0;
            prop_assert_eq!(a.hash(), b.hash());
        }

        #[test]
        fn validation_never_panics(s in ".{0,200}") {
            if let Ok(v) = serde_json::from_str::<Value>(&s) { let _ = validate_batch(&v); }
        }
    }

    #[test]
    fn state_hash_is_stable() {
        // Pinned: a change to the canvas serialization must be deliberate.
        let mut c = Canvas::default();
        c.apply("element.added", &json!({"id": "a", "kind": "box", "x": 1.5, "y": -2}));
        c.apply("narration", &json!({"text": "hé"}));
        // The literal: any change to field names, order or number formatting shows here.
        assert_eq!(c.hash(), "774b97d435ceefe1df2b47dac72c348179ab2a1d76e66c891913840a7c55ab62");
        assert_eq!(c.hash(), canonical_sha256(&c.to_value()));
        assert_eq!(c.hash().len(), 64);
        let again = Canvas::from_value(&c.to_value()).unwrap();
        assert_eq!(again.hash(), c.hash());
    }
}
