//! Every entry point of the browser build, in one file. The web app loads the
//! pure core compiled a second time (`--features browser`, wasm-bindgen
//! `--target web`, into `public/core/`, see scripts/build.sh) through
//! `public/js/core.js`: canvas folds and lesson frames, the session fold of the
//! live player and the class replay, the teacher's class summary, events in
//! words, canonical JSON and state hashes, credential verification and the
//! quiz score preview all run the server's code. JavaScript only renders.
//!
//! Values cross the boundary as JSON text: the glue stays small, big integers
//! and odd floats arrive exactly as the server wrote them, and the JavaScript
//! side parses what it renders. Nothing here panics on input: bad JSON is a
//! thrown `Error` with a sentence.

use serde_json::{Map, Value};
use wasm_bindgen::prelude::*;

use crate::canonical::{canonical_sha256, to_canonical_string};
use crate::certificate;
use crate::classroom::{self, AnswerKey, SessionConfig, SessionState};
use crate::grading::{self, QuizItem};
use crate::run::{Canvas, Event};

fn parse(text: &str, what: &str) -> Result<Value, JsError> {
    serde_json::from_str(text).map_err(|e| JsError::new(&format!("{what}: not JSON ({e})")))
}

fn to_text<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

fn empty() -> Value {
    Value::Object(Map::new())
}

// ---------------------------------------------------------------- canonical JSON

/// RFC 8785 canonical form of a JSON text.
#[wasm_bindgen]
pub fn canonicalize(json: &str) -> Result<String, JsError> {
    Ok(to_canonical_string(&parse(json, "canonicalize")?))
}

/// sha256 (64 hex) of the canonical form: the state hash of the server
/// (`GET /v1/runs/{id}/state` → `hash` is this of `state`).
#[wasm_bindgen]
pub fn canonical_hash(json: &str) -> Result<String, JsError> {
    Ok(canonical_sha256(&parse(json, "canonical_hash")?))
}

/// [`canonical_hash`] of the value at a JSON pointer (`/state` of a
/// `GET /v1/runs/{id}/state` body), read from the text as the server wrote it.
#[wasm_bindgen]
pub fn canonical_hash_at(json: &str, pointer: &str) -> Result<String, JsError> {
    let value = parse(json, "canonical_hash_at")?;
    let at = value.pointer(pointer).ok_or_else(|| JsError::new(&format!("nothing at {pointer}")))?;
    Ok(canonical_sha256(at))
}

// ---------------------------------------------------------------- canvas

/// Items `{type, payload}` (timeline items or event envelopes) of a JSON array.
fn items(json: &str) -> Result<Vec<(String, Value)>, JsError> {
    items_of(parse(json, "items")?)
}

/// [`items`] of an array already parsed.
fn items_of(value: Value) -> Result<Vec<(String, Value)>, JsError> {
    let Value::Array(list) = value else {
        return Err(JsError::new("items: must be a JSON array"));
    };
    Ok(list
        .into_iter()
        .map(|mut it| {
            let kind = it.get("type").and_then(Value::as_str).unwrap_or_default().to_owned();
            let payload = it.get_mut("payload").map(Value::take).unwrap_or_else(empty);
            (kind, payload)
        })
        .collect())
}

/// The canvas fold of `src/run.rs`, the one behind run replay and frames.
#[wasm_bindgen]
#[derive(Default)]
pub struct CanvasFold {
    canvas: Canvas,
}

#[wasm_bindgen]
impl CanvasFold {
    /// The empty canvas.
    #[wasm_bindgen(constructor)]
    pub fn new() -> CanvasFold {
        CanvasFold::default()
    }

    /// Resume from a state the server sent (a checkpoint, a frame's `state`).
    pub fn from_state(json: &str) -> Result<CanvasFold, JsError> {
        let canvas = Canvas::from_value(&parse(json, "state")?)
            .map_err(|e| JsError::new(&format!("state: not a canvas ({e})")))?;
        Ok(CanvasFold { canvas })
    }

    /// Fold one item; `payload` is JSON text (an empty string is `{}`).
    pub fn apply(&mut self, kind: &str, payload: &str) -> Result<(), JsError> {
        let payload = if payload.is_empty() { empty() } else { parse(payload, "payload")? };
        self.canvas.apply(kind, &payload);
        Ok(())
    }

    /// Fold a JSON array of `{type, payload}` in order.
    pub fn apply_all(&mut self, json: &str) -> Result<(), JsError> {
        for (kind, payload) in items(json)? {
            self.canvas.apply(&kind, &payload);
        }
        Ok(())
    }

    pub fn applied(&self) -> f64 {
        self.canvas.applied as f64
    }

    /// The state as JSON text (the shape of the server's `state`).
    pub fn state(&self) -> String {
        to_text(&self.canvas)
    }

    pub fn hash(&self) -> String {
        self.canvas.hash()
    }
}

/// Frames of one lesson version, computed locally from its artifact: frame k
/// is the canvas after the first k timeline items (what
/// `GET …/frames/{k}` answers). Folded states are kept every `STRIDE` items,
/// so any frame costs at most `STRIDE` applies.
#[wasm_bindgen]
pub struct Lesson {
    timeline: Vec<(String, Value)>,
    kept: Vec<Canvas>,
}

const STRIDE: usize = 64;
const MAX_KEPT: usize = 512;

#[wasm_bindgen]
impl Lesson {
    /// From an artifact (or any object with a `timeline` array).
    #[wasm_bindgen(constructor)]
    pub fn new(artifact: &str) -> Result<Lesson, JsError> {
        let mut value = parse(artifact, "artifact")?;
        let timeline = value
            .get_mut("timeline")
            .filter(|t| t.is_array())
            .map(Value::take)
            .ok_or_else(|| JsError::new("artifact: no timeline"))?;
        let timeline = items_of(timeline)?;
        let mut kept = vec![Canvas::default()];
        let mut canvas = Canvas::default();
        for (i, (kind, payload)) in timeline.iter().enumerate() {
            canvas.apply(kind, payload);
            if (i + 1) % STRIDE == 0 {
                kept.push(canvas.clone());
            }
        }
        Ok(Lesson { timeline, kept })
    }

    /// Number of timeline items (frames are 0..=steps).
    pub fn steps(&self) -> u32 {
        self.timeline.len() as u32
    }

    fn canvas_at(&self, k: usize) -> Canvas {
        let k = k.min(self.timeline.len());
        let mut canvas = self.kept.get(k / STRIDE).cloned().unwrap_or_default();
        for (kind, payload) in &self.timeline[(k / STRIDE) * STRIDE..k] {
            canvas.apply(kind, payload);
        }
        canvas
    }

    /// `{"cursor", "steps", "item", "state"}` of frame k (clamped to the end).
    pub fn frame(&self, k: u32) -> String {
        let k = (k as usize).min(self.timeline.len());
        let item = k.checked_sub(1).and_then(|n| self.timeline.get(n));
        let item = item.map(|(kind, payload)| crate::json!({"type": kind, "payload": payload}));
        to_text(&crate::json!({
            "cursor": k, "steps": self.timeline.len(), "item": item, "state": self.canvas_at(k).to_value(),
        }))
    }

    pub fn frame_hash(&self, k: u32) -> String {
        self.canvas_at(k as usize).hash()
    }
}

// ---------------------------------------------------------------- session

/// The session fold of `src/classroom.rs` (`SessionState::apply`): the live
/// player's copy of the session, and the class replay.
#[wasm_bindgen]
pub struct SessionFold {
    state: SessionState,
}

fn unknown_config() -> SessionConfig {
    SessionConfig {
        session_id: String::new(),
        run_id: String::new(),
        lesson_id: String::new(),
        version: 0,
        sha256: String::new(),
        teacher_id: String::new(),
        org: String::new(),
        step_count: 0,
        quiz: Vec::new(),
    }
}

/// An envelope through the core's own reader (the one archives are read
/// with): no derived decoder for it in this build.
fn event_of(value: Value) -> Result<Event, JsError> {
    Event::from_value(value).ok_or_else(|| {
        JsError::new(
            "event: not an event envelope (id, run_id, type, author_id: text; seq, timestamp: integers; a payload)",
        )
    })
}

#[wasm_bindgen]
impl SessionFold {
    /// From a snapshot's `state` (JSON text), or the initial state of a
    /// session whose config is unknown (empty text): a run replayed alone.
    #[wasm_bindgen(constructor)]
    pub fn new(snapshot_state: &str) -> Result<SessionFold, JsError> {
        if snapshot_state.is_empty() {
            return Ok(SessionFold { state: SessionState::new(unknown_config()) });
        }
        let state = serde_json::from_value(parse(snapshot_state, "snapshot")?)
            .map_err(|e| JsError::new(&format!("snapshot: not a session state ({e})")))?;
        Ok(SessionFold { state })
    }

    /// Fold one event envelope (JSON text). False when it was not applied
    /// because its seq is at or below the state's (a duplicate).
    pub fn apply(&mut self, event: &str) -> Result<bool, JsError> {
        let ev = event_of(parse(event, "event")?)?;
        let fresh = ev.seq > self.state.seq;
        self.state.apply(&ev);
        Ok(fresh)
    }

    /// Fold a JSON array of envelopes in order; returns the seq reached.
    pub fn apply_all(&mut self, events: &str) -> Result<f64, JsError> {
        let Value::Array(list) = parse(events, "events")? else {
            return Err(JsError::new("events: must be a JSON array"));
        };
        for v in list {
            self.state.apply(&event_of(v)?);
        }
        Ok(self.state.seq as f64)
    }

    pub fn seq(&self) -> f64 {
        self.state.seq as f64
    }

    pub fn state(&self) -> String {
        to_text(&self.state)
    }

    pub fn hash(&self) -> String {
        canonical_sha256(&crate::json_value::serialized(&self.state))
    }

    /// The teacher's view of the class (`classroom::class_summary`):
    /// `answer_key` is `{question id: choice}` (JSON text; `{}` when unknown),
    /// `present` the last roster's learners (a JSON array of ids).
    pub fn class_summary(&self, answer_key: &str, present_json: &str) -> Result<String, JsError> {
        // Read with a few lookups, not serde: no deserializer code for these in the core.
        let mut key = AnswerKey::new();
        if let Value::Object(m) = parse(answer_key, "answer key")? {
            for (id, choice) in &m {
                if let Some(choice) = choice.as_u64().and_then(|c| u32::try_from(c).ok()) {
                    key.insert(id.clone(), choice);
                }
            }
        }
        let mut present = Vec::new();
        if let Value::Array(list) = parse(present_json, "present")? {
            present.extend(list.into_iter().filter_map(|v| if let Value::String(id) = v { Some(id) } else { None }));
        }
        Ok(to_text(&classroom::class_summary(&self.state, &key, &present)))
    }
}

/// Scrubbing a run: its events are held once, states are kept every
/// `stride` events (64, doubled whenever more than `MAX_KEPT` states would be
/// held, so a 100,000-event run keeps at most 512 of them), and the state at
/// any seq costs at most `stride` applies.
/// `kind` is "canvas" (run replay, the fold behind `GET /v1/runs/{id}/state`)
/// or "session" (a live session's run). A replay may start from a checkpoint
/// the server sent (`from_checkpoint`), then only the tail is folded here.
#[wasm_bindgen]
pub struct Replay {
    session: bool,
    base_seq: u64,
    events: Vec<Event>,
    stride: usize,
    canvases: Vec<Canvas>,
    sessions: Vec<SessionState>,
    canvas: Canvas,
    sess: SessionState,
}

#[wasm_bindgen]
impl Replay {
    #[wasm_bindgen(constructor)]
    pub fn new(kind: &str) -> Result<Replay, JsError> {
        let session = match kind {
            "canvas" => false,
            "session" => true,
            _ => return Err(JsError::new("kind must be canvas or session")),
        };
        let sess = SessionState::new(unknown_config());
        Ok(Replay {
            session,
            base_seq: 0,
            events: Vec::new(),
            stride: STRIDE,
            canvases: vec![Canvas::default()],
            sessions: vec![sess.clone()],
            canvas: Canvas::default(),
            sess,
        })
    }

    /// Start from a server checkpoint `{"seq", "state"}` (a canvas), before any event.
    pub fn from_checkpoint(&mut self, json: &str) -> Result<(), JsError> {
        let v = parse(json, "checkpoint")?;
        let seq = v.get("seq").and_then(Value::as_u64).ok_or_else(|| JsError::new("checkpoint: no seq"))?;
        let canvas = Canvas::from_value(v.get("state").unwrap_or(&Value::Null))
            .map_err(|e| JsError::new(&format!("checkpoint: not a canvas ({e})")))?;
        if self.session || !self.events.is_empty() {
            return Err(JsError::new("checkpoint: only a canvas replay, before any event"));
        }
        self.base_seq = seq;
        self.canvases = vec![canvas.clone()];
        self.canvas = canvas;
        Ok(())
    }

    /// Append envelopes (a JSON array in seq order, or a
    /// `GET /v1/runs/{id}/events` body as the server wrote it); those at or
    /// below the last seq held are skipped. Returns the last seq.
    pub fn push(&mut self, events: &str) -> Result<f64, JsError> {
        let list = match parse(events, "events")? {
            Value::Array(list) => list,
            Value::Object(mut page) => match page.remove("events") {
                Some(Value::Array(list)) => list,
                _ => return Err(JsError::new("events: no events array")),
            },
            _ => return Err(JsError::new("events: must be a JSON array")),
        };
        for v in list {
            let ev = event_of(v)?;
            if ev.seq <= self.last_seq_u64() {
                continue;
            }
            if self.session {
                self.sess.apply(&ev);
            } else {
                self.canvas.apply(&ev.kind, &ev.payload);
            }
            self.events.push(ev);
            if self.events.len().is_multiple_of(self.stride) {
                if self.session {
                    self.sessions.push(self.sess.clone());
                } else {
                    self.canvases.push(self.canvas.clone());
                }
                if self.canvases.len().max(self.sessions.len()) > MAX_KEPT {
                    // kept[i] is the state after i * stride events: keeping
                    // every other one doubles the stride.
                    self.stride *= 2;
                    self.canvases = std::mem::take(&mut self.canvases).into_iter().step_by(2).collect();
                    self.sessions = std::mem::take(&mut self.sessions).into_iter().step_by(2).collect();
                }
            }
        }
        Ok(self.last_seq())
    }

    fn last_seq_u64(&self) -> u64 {
        self.events.last().map_or(self.base_seq, |e| e.seq)
    }

    pub fn last_seq(&self) -> f64 {
        self.last_seq_u64() as f64
    }

    pub fn first_seq(&self) -> f64 {
        self.base_seq as f64
    }

    /// How many events precede-or-equal `seq` among those held.
    fn count_upto(&self, seq: u64) -> usize {
        self.events.partition_point(|e| e.seq <= seq)
    }

    /// The state at `seq` (clamped to what is held) as JSON text:
    /// `{"seq", "state"}`, like `GET /v1/runs/{id}/state?at_seq=`.
    pub fn state_at(&self, seq: f64) -> String {
        let n = self.count_upto(if seq.is_finite() && seq > 0.0 { seq as u64 } else { 0 });
        let at = self.events.get(n.wrapping_sub(1)).map_or(self.base_seq, |e| e.seq);
        let stride = self.stride;
        let start = (n / stride) * stride;
        let tail = &self.events[start..n];
        let state = if self.session {
            let mut s = self.sessions.get(n / stride).cloned().unwrap_or_else(|| self.sess.clone());
            for e in tail {
                s.apply(e);
            }
            crate::json_value::serialized(&s)
        } else {
            let mut c = self.canvases.get(n / stride).cloned().unwrap_or_default();
            for e in tail {
                c.apply(&e.kind, &e.payload);
            }
            c.to_value()
        };
        to_text(&crate::json!({"seq": at, "state": state}))
    }
}

// ---------------------------------------------------------------- events in words

/// One sentence per item (`journal::describe`) of a JSON array of
/// `{type, payload}` (timeline items or event envelopes): a JSON array of strings.
#[wasm_bindgen]
pub fn describe_items(json: &str) -> Result<String, JsError> {
    Ok(to_text(&Value::from(crate::journal::describe(&items(json)?))))
}

// ---------------------------------------------------------------- credentials

/// Verify a credential with the server's code (`certificate::verify`, the
/// signature by the browser's Web Crypto as the worker's by workerd's):
/// structure, eddsa-jcs-2022 proof with the key from `issuer_profile`,
/// validity window at `now` (RFC 3339), and revocation from
/// `status_list` (the status list credential as last fetched; empty text
/// when none is at hand). The list's own proof is checked with the same
/// profile before its bit is trusted. A promise of `{valid, checks}`.
#[wasm_bindgen]
pub fn verify_credential(
    credential: String,
    issuer_profile: String,
    status_list: String,
    now: String,
) -> js_sys::Promise {
    js_sys::futures::future_to_promise(async move {
        match verify_credential_text(&credential, &issuer_profile, &status_list, &now).await {
            Ok(text) => Ok(JsValue::from_str(&text)),
            Err(e) => Err(e.into()),
        }
    })
}

async fn verify_credential_text(
    credential: &str,
    issuer_profile: &str,
    status_list: &str,
    now: &str,
) -> Result<String, JsError> {
    let doc = parse(credential, "credential")?;
    let profile = if issuer_profile.is_empty() { Value::Null } else { parse(issuer_profile, "issuer profile")? };
    let resolve = |vm: &str| certificate::resolve_from_profile(&profile, vm);
    let list = if status_list.is_empty() { None } else { Some(parse(status_list, "status list")?) };
    let mut list_note = None;
    let revoked = match (certificate::status_entry(&doc), &list) {
        (Some((url, index)), Some(list)) if list.get("id").and_then(Value::as_str) == Some(url.as_str()) => {
            let checked = crate::webcrypto::verify(list, resolve, None, now).await;
            if checked.checks.iter().any(|c| c.name == "proof" && c.ok) {
                let as_of = list.get("validFrom").and_then(Value::as_str).unwrap_or("?").to_owned();
                list_note = Some(as_of);
                certificate::revoked_in(list, index)
            } else {
                None
            }
        }
        _ => None,
    };
    let mut result = crate::webcrypto::verify(&doc, resolve, revoked, now).await;
    if let Some(as_of) = list_note {
        for c in result.checks.iter_mut().filter(|c| c.name == "status") {
            c.detail = format!("{} (status list of {as_of})", c.detail);
        }
    }
    Ok(to_text(&result))
}

/// `[url, index]` of a credential's status entry, or `null`.
#[wasm_bindgen]
pub fn status_entry(credential: &str) -> Result<String, JsError> {
    let doc = parse(credential, "credential")?;
    Ok(to_text(&certificate::status_entry(&doc)))
}

// ---------------------------------------------------------------- grading

/// The learner's own score preview, where the rules allow it: only a quiz
/// that carries its answer key (authors see it; learners never get it, so
/// for them this answers `null` and the server grades on submit).
/// `answers` is `{question id: choice index}`. Returns a grade or `null`.
#[wasm_bindgen]
pub fn grade_preview(quiz: &str, answers: &str, pass_threshold: f64) -> Result<String, JsError> {
    let items = match crate::decode::list(&parse(quiz, "quiz")?, QuizItem::from_value) {
        Ok(items) => items,
        Err(_) => return Ok("null".into()),
    };
    if items.is_empty() || items.iter().any(|q| grading::answer_index(q).is_none()) {
        return Ok("null".into());
    }
    let answers: std::collections::BTreeMap<String, usize> =
        serde_json::from_value(parse(answers, "answers")?).map_err(|e| JsError::new(&format!("answers: {e}")))?;
    Ok(to_text(&grading::grade(&items, &answers, pass_threshold)))
}

// ---------------------------------------------------------------- parity tests

/// Stream `seed` of the parity generator (`src/streams.rs`) as a JSON array
/// of append items.
#[wasm_bindgen]
pub fn random_stream(seed: u32) -> String {
    to_text(&crate::streams::random_stream(u64::from(seed)))
}

/// The same stream as append bodies (`{"events": [...]}`, at most
/// `run::MAX_BATCH_EVENTS` each), one JSON text per element of the array.
#[wasm_bindgen]
pub fn random_stream_batches(seed: u32) -> Vec<String> {
    crate::streams::random_stream(u64::from(seed))
        .chunks(crate::run::MAX_BATCH_EVENTS)
        .map(|batch| to_text(&crate::json!({ "events": batch })))
        .collect()
}
