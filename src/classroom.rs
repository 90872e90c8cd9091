//! The live classroom's protocol core: wire messages, the session state
//! machine and its rules, as pure functions. The Durable Object adapter decodes
//! socket text, calls [`receive`] (or [`handle`]) and executes the returned
//! [`Effect`]s in order; it holds no business rules. Time and fresh ids are
//! parameters, so the same inputs always give the same effects, and a session's
//! state is always `replay(config, persisted events)`.
//!
//! One message: rate limit → [`decode_client_msg`] → hello gate ([`Connection`])
//! → [`SessionState::decide`] (the rules) → events → [`SessionState::apply`] →
//! effects (persist, then broadcast, then reply / audit).

use std::collections::BTreeMap;

use crate::decode::{self, Obj};
use crate::json;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::run::Event;

/// The one protocol version; `hello` with any other is refused and closed.
pub const PROTOCOL_VERSION: u32 = 1;
/// Bigger frames are refused before parsing: bounds the work one message costs.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;
/// Question, answer and annotation texts, in characters after trimming.
pub const MAX_TEXT_CHARS: usize = 2000;
/// Ids, annotation kinds and colors are short tokens.
pub const MAX_TOKEN_CHARS: usize = 64;
pub const MAX_POINTS: usize = 1000;
/// A snapshot must fit one WebSocket frame (1 MiB on workerd), so the state is
/// bounded: annotations, their points, questions (and per asker, so one learner
/// cannot use up the room's budget).
pub const MAX_ANNOTATIONS: usize = 200;
pub const MAX_TOTAL_POINTS: usize = 20_000;
pub const MAX_QUESTIONS: usize = 100;
pub const MAX_QUESTIONS_PER_ASKER: usize = 10;
/// Observers per session whatever the plan says (plans allow up to 5,000); the
/// next one is closed with `room_full`. A bound on one object's fan-out work.
pub const MAX_OBSERVERS: u32 = 10_000;
/// Per-connection message rate: sustained messages per second, and burst.
pub const RATE_PER_SEC: i64 = 20;
pub const RATE_BURST: i64 = 40;
/// `author_id` of events no person caused (the teacher's connection dropped).
pub const SYSTEM_AUTHOR: &str = "system";
/// WebSocket close codes (4000–4999 are the application's).
pub const CLOSE_UNSUPPORTED_VERSION: u16 = 4426;
pub const CLOSE_ROOM_FULL: u16 = 4429;
pub const JOIN_CODE_LEN: usize = 6;
/// No 0/O, 1/I/L: a code read aloud or off a projector is typed right.
const JOIN_ALPHABET: &[u8; 31] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
#[rustfmt::skip]
const CLIENT_TYPES: [&str; 12] = [
    "hello", "cursor", "annotate", "clear_annotations", "pause", "resume", "end", "answer", "ask",
    "respond", "explain", "ping",
];

// ---------------------------------------------------------------- errors

/// Every refusal a client can see, as `{"type":"error","code","message"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    MessageTooLarge,
    MalformedMessage,
    UnknownMessageType,
    InvalidMessage,
    UnsupportedVersion,
    HelloRequired,
    AuthorityViolation,
    SessionEnded,
    SessionPaused,
    InvalidCursor,
    UnknownQuestion,
    AlreadyResponded,
    InvalidChoice,
    LimitReached,
    RateLimited,
    RoomFull,
    /// A service the command needs (e.g. the AI provider) refused or failed.
    Unavailable,
}

/// A broken protocol rule: a code for programs and a sentence for people.
#[derive(Debug, Clone, PartialEq)]
pub struct ProtocolError {
    pub code: ErrorCode,
    pub message: String,
}

impl ProtocolError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ProtocolError { code, message: message.into() }
    }
    pub fn to_msg(&self) -> ServerMsg {
        ServerMsg::Error { code: self.code, message: self.message.clone() }
    }
}

fn err<T>(code: ErrorCode, message: impl Into<String>) -> Result<T, ProtocolError> {
    Err(ProtocolError::new(code, message))
}

// ---------------------------------------------------------------- wire messages

/// Client → server. Unknown fields are ignored (a newer client may add optional
/// fields within the same protocol version); unknown types are refused.
///
/// Decoded by [`decode_client_msg`] only, which reads the `type` first and then
/// the variant's fields: a derived internally tagged `Deserialize` would buffer
/// every message (serde's `Content`), ~40 KiB of wasm.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    Hello {
        last_seq: Option<u64>,
        version: Option<u32>,
    },
    Cursor {
        step: i64,
        x: Option<f64>,
        y: Option<f64>,
    },
    Annotate(AnnotationDraft),
    ClearAnnotations,
    Pause,
    Resume,
    End,
    Answer {
        question_id: String,
        text: String,
    },
    Ask {
        text: String,
    },
    Respond {
        question_id: String,
        choice: u32,
    },
    /// Teacher opt-in: explain a step (default: the cursor's) with the AI
    /// provider; the explanation arrives later as an `explanation.ready` event.
    Explain {
        step: Option<u32>,
    },
    Ping,
}

/// What the teacher draws. `id` lets a client resend after a reconnect: an
/// annotation id already present makes the command a no-op.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnnotationDraft {
    pub id: Option<String>,
    pub kind: String,
    pub text: Option<String>,
    #[serde(default)]
    pub points: Vec<[f64; 2]>,
    pub color: Option<String>,
}

impl ClientMsg {
    pub fn kind(&self) -> &'static str {
        match self {
            ClientMsg::Hello { .. } => "hello",
            ClientMsg::Cursor { .. } => "cursor",
            ClientMsg::Annotate(_) => "annotate",
            ClientMsg::ClearAnnotations => "clear_annotations",
            ClientMsg::Pause => "pause",
            ClientMsg::Resume => "resume",
            ClientMsg::End => "end",
            ClientMsg::Answer { .. } => "answer",
            ClientMsg::Ask { .. } => "ask",
            ClientMsg::Respond { .. } => "respond",
            ClientMsg::Explain { .. } => "explain",
            ClientMsg::Ping => "ping",
        }
    }

    /// Commands only the session's teacher may send.
    pub fn is_teacher_command(&self) -> bool {
        matches!(
            self,
            ClientMsg::Cursor { .. }
                | ClientMsg::Annotate(_)
                | ClientMsg::ClearAnnotations
                | ClientMsg::Pause
                | ClientMsg::Resume
                | ClientMsg::End
                | ClientMsg::Answer { .. }
                | ClientMsg::Explain { .. }
        )
    }

    /// Field limits; [`SessionState::decide`] re-checks, so a message built in
    /// code cannot bypass them.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        match self {
            ClientMsg::Cursor { x, y, .. } => {
                if x.iter().chain(y).any(|v| !v.is_finite()) {
                    return err(ErrorCode::InvalidMessage, "x and y must be finite numbers");
                }
                Ok(())
            }
            ClientMsg::Annotate(AnnotationDraft { id, kind, text, points, color }) => {
                if let Some(id) = id {
                    check_token("id", id)?;
                }
                check_token("kind", kind)?;
                if let Some(c) = color {
                    check_token("color", c)?;
                }
                if let Some(t) = text {
                    check_text("text", t)?;
                }
                if points.len() > MAX_POINTS {
                    return err(ErrorCode::InvalidMessage, format!("at most {MAX_POINTS} points"));
                }
                if points.iter().flatten().any(|v| !v.is_finite()) {
                    return err(ErrorCode::InvalidMessage, "points must be finite numbers");
                }
                Ok(())
            }
            ClientMsg::Answer { question_id, text } => {
                check_token("question_id", question_id)?;
                check_text("text", text)
            }
            ClientMsg::Ask { text } => check_text("text", text),
            ClientMsg::Respond { question_id, .. } => check_token("question_id", question_id),
            _ => Ok(()),
        }
    }
}

fn check_text(field: &str, text: &str) -> Result<(), ProtocolError> {
    let t = text.trim();
    if t.is_empty() || t.chars().count() > MAX_TEXT_CHARS {
        return err(ErrorCode::InvalidMessage, format!("{field}: 1 to {MAX_TEXT_CHARS} characters required"));
    }
    Ok(())
}

fn check_token(field: &str, token: &str) -> Result<(), ProtocolError> {
    let n = token.chars().count();
    if n == 0 || n > MAX_TOKEN_CHARS || token.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return err(ErrorCode::InvalidMessage, format!("{field}: 1 to {MAX_TOKEN_CHARS} characters, no spaces"));
    }
    Ok(())
}

/// A `cursor` message as it arrives; any other message, or a cursor field of
/// the wrong type, fails here and takes the general path (same answers).
#[derive(Deserialize)]
struct CursorWire<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    step: Option<i64>,
    x: Option<f64>,
    y: Option<f64>,
}

/// Socket text → message. Never panics: size first (cheap), then JSON, then the
/// type, then the fields, so each failure has its own code.
pub fn decode_client_msg(text: &str) -> Result<ClientMsg, ProtocolError> {
    if text.len() > MAX_MESSAGE_BYTES {
        return err(ErrorCode::MessageTooLarge, format!("messages are limited to {MAX_MESSAGE_BYTES} bytes"));
    }
    // Fastest path: the teacher's cursor, many a second, read in one pass.
    if let Ok(CursorWire { kind, step: Some(step), x, y }) = serde_json::from_str::<CursorWire>(text) {
        if kind == "cursor" {
            let msg = ClientMsg::Cursor { step, x, y };
            msg.validate()?;
            return Ok(msg);
        }
    }
    // Fast path: a well-formed message of a known type decodes in two passes
    // (its type, then its fields). Anything else takes the slow path below,
    // which says precisely what is wrong.
    if let Ok(msg) = wire::decode(text) {
        msg.validate()?;
        return Ok(msg);
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|e| ProtocolError::new(ErrorCode::MalformedMessage, format!("not JSON: {e}")))?;
    let Some(kind) = value.get("type").and_then(Value::as_str) else {
        return err(ErrorCode::MalformedMessage, "expected a JSON object with a string `type`");
    };
    let Some(kind) = wire::Kind::parse(kind) else {
        return err(ErrorCode::UnknownMessageType, format!("unknown message type `{kind}`"));
    };
    // The fields' error from the fast path's own decoder (the text, not the
    // value): one decoder per message type in the build, not two.
    let msg = wire::variant(kind, &mut serde_json::Deserializer::from_str(text))
        .map_err(|e| ProtocolError::new(ErrorCode::InvalidMessage, e.to_string()))?;
    msg.validate()?;
    Ok(msg)
}

/// [`ClientMsg`] decoding without serde's buffering of internally tagged
/// enums. Accepts exactly what the derived decoder accepted: objects with one
/// string `type` (other fields ignored, but parsed, so a lone surrogate or an
/// out-of-range number anywhere is still refused), and serde's sequence form
/// `[type, fields...]`.
mod wire {
    use super::{AnnotationDraft, ClientMsg, CLIENT_TYPES};
    use serde::de::{
        self, value::SeqAccessDeserializer, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
    };
    use serde::Deserialize;
    use std::fmt;

    /// A known message type.
    #[derive(Clone, Copy)]
    pub struct Kind(&'static str);

    impl Kind {
        pub fn parse(name: &str) -> Option<Kind> {
            CLIENT_TYPES.iter().find(|t| **t == name).copied().map(Kind)
        }

        /// The message of a type without fields (its other fields are ignored).
        fn unit(self) -> Option<ClientMsg> {
            Some(match self.0 {
                "clear_annotations" => ClientMsg::ClearAnnotations,
                "pause" => ClientMsg::Pause,
                "resume" => ClientMsg::Resume,
                "end" => ClientMsg::End,
                "ping" => ClientMsg::Ping,
                _ => return None,
            })
        }
    }

    #[derive(Deserialize)]
    struct Hello {
        last_seq: Option<u64>,
        version: Option<u32>,
    }
    #[derive(Deserialize)]
    struct Cursor {
        step: i64,
        x: Option<f64>,
        y: Option<f64>,
    }
    #[derive(Deserialize)]
    struct Answer {
        question_id: String,
        text: String,
    }
    #[derive(Deserialize)]
    struct Ask {
        text: String,
    }
    #[derive(Deserialize)]
    struct Respond {
        question_id: String,
        choice: u32,
    }
    #[derive(Deserialize)]
    struct Explain {
        step: Option<u32>,
    }

    /// The fields of a message of type `kind`, from `d` (the whole object, or
    /// the rest of a sequence after its type).
    pub fn variant<'de, D: Deserializer<'de>>(kind: Kind, d: D) -> Result<ClientMsg, D::Error> {
        Ok(match kind.0 {
            "hello" => {
                let Hello { last_seq, version } = Hello::deserialize(d)?;
                ClientMsg::Hello { last_seq, version }
            }
            "cursor" => {
                let Cursor { step, x, y } = Cursor::deserialize(d)?;
                ClientMsg::Cursor { step, x, y }
            }
            "annotate" => ClientMsg::Annotate(AnnotationDraft::deserialize(d)?),
            "answer" => {
                let Answer { question_id, text } = Answer::deserialize(d)?;
                ClientMsg::Answer { question_id, text }
            }
            "ask" => ClientMsg::Ask { text: Ask::deserialize(d)?.text },
            "respond" => {
                let Respond { question_id, choice } = Respond::deserialize(d)?;
                ClientMsg::Respond { question_id, choice }
            }
            "explain" => ClientMsg::Explain { step: Explain::deserialize(d)?.step },
            _ => kind.unit().ok_or_else(|| de::Error::unknown_variant(kind.0, &CLIENT_TYPES))?,
        })
    }

    /// Text → message: one pass for the type (and the sequence form), a
    /// second for the fields of an object.
    pub fn decode(text: &str) -> Result<ClientMsg, serde_json::Error> {
        match serde_json::from_str(text)? {
            Peeked::Msg(msg) => Ok(msg),
            Peeked::Object(kind) => match kind.unit() {
                Some(msg) => Ok(msg),
                None => {
                    let mut de = serde_json::Deserializer::from_str(text);
                    let msg = variant(kind, &mut de)?;
                    de.end()?;
                    Ok(msg)
                }
            },
        }
    }

    enum Peeked {
        /// An object with this type, its fields not read yet.
        Object(Kind),
        /// A sequence: its type comes first, so it decodes in one pass.
        Msg(ClientMsg),
    }

    impl<'de> Deserialize<'de> for Peeked {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(PeekVisitor)
        }
    }

    struct PeekVisitor;

    impl<'de> Visitor<'de> for PeekVisitor {
        type Value = Peeked;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a client message")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Peeked, A::Error> {
            let mut kind = None;
            while let Some(is_type) = map.next_key_seed(KeyIsType)? {
                if !is_type {
                    map.next_value::<Parsed>()?;
                } else if kind.is_some() {
                    return Err(de::Error::duplicate_field("type"));
                } else {
                    kind = Some(map.next_value_seed(KindSeed)?);
                }
            }
            kind.map(Peeked::Object).ok_or_else(|| de::Error::missing_field("type"))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Peeked, A::Error> {
            let kind = seq.next_element_seed(KindSeed)?.ok_or_else(|| de::Error::missing_field("type"))?;
            if let Some(msg) = kind.unit() {
                // A variant without fields takes no more elements.
                return match seq.next_element::<IgnoredAny>()? {
                    None => Ok(Peeked::Msg(msg)),
                    Some(_) => Err(de::Error::invalid_length(2, &"1 element in sequence")),
                };
            }
            variant(kind, SeqAccessDeserializer::new(seq)).map(Peeked::Msg)
        }
    }

    /// A map key: whether it is `type`.
    struct KeyIsType;

    impl<'de> DeserializeSeed<'de> for KeyIsType {
        type Value = bool;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
            d.deserialize_str(self)
        }
    }

    impl<'de> Visitor<'de> for KeyIsType {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a field name")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
            Ok(v == "type")
        }
    }

    /// A known message type (a string).
    struct KindSeed;

    impl<'de> DeserializeSeed<'de> for KindSeed {
        type Value = Kind;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Kind, D::Error> {
            d.deserialize_str(self)
        }
    }

    impl<'de> Visitor<'de> for KindSeed {
        type Value = Kind;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a message type")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Kind, E> {
            Kind::parse(v).ok_or_else(|| E::unknown_variant(v, &CLIENT_TYPES))
        }
    }

    /// Any JSON value, parsed and dropped. Unlike `IgnoredAny`, which skips
    /// strings and numbers unchecked, it refuses what parsing them refuses.
    struct Parsed;

    impl<'de> Deserialize<'de> for Parsed {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(Parsed)
        }
    }

    impl<'de> Visitor<'de> for Parsed {
        type Value = Parsed;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<Parsed, E> {
            Ok(Parsed)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Parsed, E> {
            Ok(Parsed)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Parsed, E> {
            Ok(Parsed)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Parsed, E> {
            Ok(Parsed)
        }
        fn visit_str<E>(self, _: &str) -> Result<Parsed, E> {
            Ok(Parsed)
        }
        fn visit_unit<E>(self) -> Result<Parsed, E> {
            Ok(Parsed)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Parsed, A::Error> {
            while seq.next_element::<Parsed>()?.is_some() {}
            Ok(Parsed)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Parsed, A::Error> {
            while map.next_entry::<Parsed, Parsed>()?.is_some() {}
            Ok(Parsed)
        }
    }
}

/// Server → client. Every client handles the first five types; `roster` and
/// `answer_key` (the teacher only) and `quiz_feedback` (the responder only)
/// are additive: a client may ignore them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// `presence` is `None` from the core (it does not count sockets): the
    /// adapter fills it in before sending.
    Snapshot {
        seq: u64,
        state: Box<SessionState>,
        presence: Option<u32>,
    },
    Event {
        seq: u64,
        event: Event,
    },
    Presence {
        count: u32,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
    Pong,
    /// To the teacher: who is here. `learners` are the user ids of connected
    /// observer sockets (sorted, at most [`MAX_ROSTER`]); `count` counts every
    /// observer (sockets and SSE streams), never the teacher.
    Roster {
        count: u32,
        learners: Vec<String>,
    },
    /// To the session's teacher at their hello: the quiz's answer key (the
    /// teacher's copy of the lesson comes without it).
    AnswerKey {
        answers: AnswerKey,
    },
    /// To a learner right after their quiz response was recorded.
    QuizFeedback {
        question_id: String,
        choice: u32,
        correct: bool,
        answer: u32,
    },
}

/// Names a roster lists: a bound on one message, whatever the class size.
pub const MAX_ROSTER: usize = 500;

/// The teacher's roster from the user ids of connected observer sockets.
pub fn roster(observer_ids: impl IntoIterator<Item = String>, count: u32) -> ServerMsg {
    // A sorted Vec, not a BTreeSet: no new collection code in the worker's wasm.
    let mut learners: Vec<String> = observer_ids.into_iter().collect();
    crate::order::sort_by(&mut learners, Ord::cmp);
    learners.dedup();
    learners.truncate(MAX_ROSTER);
    ServerMsg::Roster { count, learners }
}

/// A quiz answer key (question id → correct choice). It never enters the
/// session state, which every observer receives.
pub type AnswerKey = BTreeMap<String, u32>;

/// What opens a session's object: its config, and beside it the answer key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionInit {
    pub config: SessionConfig,
    #[serde(default)]
    pub answer_key: AnswerKey,
}

/// The responder's feedback when `effects` record their quiz response: a
/// response cannot change once given, so the key may be shown at once.
pub fn quiz_feedback(key: &AnswerKey, effects: &[Effect], learner: &str) -> Option<ServerMsg> {
    let Some(Effect::Persist(events)) = effects.first() else { return None };
    events.iter().find_map(|e| match e.session_event() {
        Some(SessionEvent::QuizResponded { question_id, choice, learner_id }) if learner_id == learner => {
            let answer = *key.get(&question_id)?;
            Some(ServerMsg::QuizFeedback { question_id, choice, correct: choice == answer, answer })
        }
        _ => None,
    })
}

// ---------------------------------------------------------------- session state

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Teacher,
    Observer,
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::json_value::unit_variant(d, &["teacher", "observer"], &[Role::Teacher, Role::Observer])
    }
}

/// The author of a message, as the adapter authenticated it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Who {
    pub user_id: String,
    pub role: Role,
}

/// A quiz question of the pinned lesson: only its id and number of choices
/// (the answer key never enters the live session).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuizRef {
    pub id: String,
    pub choices: u32,
}

/// Fixed when the session is created: the exact lesson version and its teacher.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SessionConfig {
    pub session_id: String,
    pub run_id: String,
    pub lesson_id: String,
    pub version: u32,
    pub sha256: String,
    pub teacher_id: String,
    pub org: String,
    /// Number of timeline items; the cursor step ranges over `0..=step_count`.
    pub step_count: u32,
    pub quiz: Vec<QuizRef>,
}

// In a derived `SessionState`.
decode::deserialize_from_value!(SessionConfig);

impl SessionInit {
    pub fn from_value(value: &Value) -> Result<Self, String> {
        let o = Obj::of(value)?;
        let init = SessionInit {
            config: o.req("config", SessionConfig::from_value),
            answer_key: o.opt("answer_key", answer_key_from_value).unwrap_or_default(),
        };
        o.done(init)
    }
}

/// `{question id: index of the correct choice}`.
pub fn answer_key_from_value(value: &Value) -> Result<AnswerKey, String> {
    let map = value.as_object().ok_or("expected an object")?;
    let mut key = AnswerKey::new();
    for (id, index) in map {
        key.insert(id.clone(), decode::uint(index).map_err(|e| format!("{id}: {e}"))?);
    }
    Ok(key)
}

impl QuizRef {
    pub fn from_value(value: &Value) -> Result<Self, String> {
        let o = Obj::of(value)?;
        let quiz = QuizRef { id: o.req("id", decode::text), choices: o.req("choices", decode::uint) };
        o.done(quiz)
    }
}

impl SessionConfig {
    pub fn from_value(value: &Value) -> Result<Self, String> {
        let o = Obj::of(value)?;
        let config = SessionConfig {
            session_id: o.req("session_id", decode::text),
            run_id: o.req("run_id", decode::text),
            lesson_id: o.req("lesson_id", decode::text),
            version: o.req("version", decode::uint),
            sha256: o.req("sha256", decode::text),
            teacher_id: o.req("teacher_id", decode::text),
            org: o.req("org", decode::text),
            step_count: o.req("step_count", decode::uint),
            quiz: o.req("quiz", |v| decode::list(v, QuizRef::from_value)),
        };
        o.done(config)
    }

    /// The role a user gets in this session: only the session's teacher teaches.
    pub fn role_of(&self, user_id: &str) -> Role {
        if user_id == self.teacher_id {
            Role::Teacher
        } else {
            Role::Observer
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Waiting,
    Live,
    Paused,
    Ended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseReason {
    Teacher,
    TeacherDisconnected,
}

impl PauseReason {
    /// As serde writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            PauseReason::Teacher => "teacher",
            PauseReason::TeacherDisconnected => "teacher_disconnected",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    pub step: i64,
    pub x: Option<f64>,
    pub y: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Annotation {
    pub id: String,
    pub kind: String,
    pub text: Option<String>,
    pub points: Vec<[f64; 2]>,
    pub color: Option<String>,
    /// The cursor step it was drawn on.
    pub step: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Question {
    pub id: String,
    pub text: String,
    pub asker_id: String,
    pub asked_at: i64,
    pub answer: Option<String>,
}

/// Everything a session is; `snapshot.state`. Changed only by [`Self::apply`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionState {
    pub config: SessionConfig,
    pub status: Status,
    /// `Some` exactly while `status` is `paused`.
    pub paused_reason: Option<PauseReason>,
    pub cursor: Cursor,
    pub annotations: Vec<Annotation>,
    pub questions: Vec<Question>,
    /// quiz question id → learner id → choice (ordered maps: stable snapshots).
    pub quiz_responses: BTreeMap<String, BTreeMap<String, u32>>,
    /// Seq of the last applied event.
    pub seq: u64,
    /// Chained hash of the last applied event ([`crate::chain`]): the next
    /// event's `prev`. 64 zeros before the first.
    #[serde(default = "genesis")]
    pub head_hash: String,
}

fn genesis() -> String {
    crate::chain::GENESIS.to_owned()
}

/// The events of a session's run: `type` and `payload` (the variant's
/// fields) of the envelope. Turned into and read from a payload `Value` by
/// hand ([`Self::parts`], [`Self::parse`]), as serde's derive would for this
/// enum externally tagged: the derive cost the worker ~16 KiB before
/// wasm-opt (a `Value` decoder per struct variant) for a dozen fields. The
/// property tests check both against that derive, kept for the tests.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(Serialize, Deserialize))]
pub enum SessionEvent {
    #[cfg_attr(test, serde(rename = "session.started"))]
    Started {},
    #[cfg_attr(test, serde(rename = "cursor.moved"))]
    CursorMoved { step: i64, x: Option<f64>, y: Option<f64> },
    #[cfg_attr(test, serde(rename = "annotation.added"))]
    AnnotationAdded(Annotation),
    #[cfg_attr(test, serde(rename = "annotations.cleared"))]
    AnnotationsCleared {},
    #[cfg_attr(test, serde(rename = "session.paused"))]
    Paused { reason: PauseReason },
    #[cfg_attr(test, serde(rename = "session.resumed"))]
    Resumed {},
    #[cfg_attr(test, serde(rename = "session.ended"))]
    Ended {},
    #[cfg_attr(test, serde(rename = "question.asked"))]
    QuestionAsked { question_id: String, text: String, asker_id: String },
    #[cfg_attr(test, serde(rename = "question.answered"))]
    QuestionAnswered { question_id: String, text: String },
    #[cfg_attr(test, serde(rename = "quiz.responded"))]
    QuizResponded { question_id: String, choice: u32, learner_id: String },
    #[cfg_attr(test, serde(rename = "explanation.requested"))]
    ExplanationRequested { step: u32 },
    #[cfg_attr(test, serde(rename = "explanation.ready"))]
    ExplanationReady { step: u32, job_id: String, text: String },
}

impl SessionEvent {
    /// The event's `type`.
    pub fn kind(&self) -> &'static str {
        use SessionEvent as E;
        match self {
            E::Started {} => "session.started",
            E::CursorMoved { .. } => "cursor.moved",
            E::AnnotationAdded(_) => "annotation.added",
            E::AnnotationsCleared {} => "annotations.cleared",
            E::Paused { .. } => "session.paused",
            E::Resumed {} => "session.resumed",
            E::Ended {} => "session.ended",
            E::QuestionAsked { .. } => "question.asked",
            E::QuestionAnswered { .. } => "question.answered",
            E::QuizResponded { .. } => "quiz.responded",
            E::ExplanationRequested { .. } => "explanation.requested",
            E::ExplanationReady { .. } => "explanation.ready",
        }
    }

    /// Append the payload's canonical text to `out`; returns the type. The
    /// hot event (every cursor move) is written directly: no `Value` built,
    /// walked and dropped per move. The property tests check it against the
    /// generic path.
    fn write_payload(&self, out: &mut String) -> String {
        if let SessionEvent::CursorMoved { step, x, y } = self {
            let coordinate = |c: &Option<f64>, out: &mut String| match c {
                Some(v) => crate::canonical::write_f64(*v, out),
                None => out.push_str("null"),
            };
            out.push_str("{\"step\":");
            crate::canonical::write_canonical(&Value::from(*step), out);
            out.push_str(",\"x\":");
            coordinate(x, out);
            out.push_str(",\"y\":");
            coordinate(y, out);
            out.push('}');
            return "cursor.moved".to_owned();
        }
        let (kind, payload) = self.parts();
        crate::canonical::write_canonical(&payload, out);
        kind
    }

    /// `(type, payload)` for the envelope: the fields by name, an absent
    /// coordinate as `null` (a non-finite one too, as serde writes it).
    fn parts(&self) -> (String, Value) {
        use SessionEvent as E;
        let mut fields = serde_json::Map::new();
        let mut put = |name: &str, value: Value| {
            fields.insert(name.to_owned(), value);
        };
        match self {
            E::Started {} | E::AnnotationsCleared {} | E::Resumed {} | E::Ended {} => {}
            E::CursorMoved { step, x, y } => {
                put("step", Value::from(*step));
                put("x", Value::from(*x));
                put("y", Value::from(*y));
            }
            // A rare event: through the text its snapshot is written in, not
            // a second serializer for the type.
            E::AnnotationAdded(a) => return (self.kind().to_owned(), crate::json_value::serialized(a)),
            E::Paused { reason } => put("reason", Value::from(reason.as_str())),
            E::QuestionAsked { question_id, text, asker_id } => {
                put("question_id", Value::from(question_id.as_str()));
                put("text", Value::from(text.as_str()));
                put("asker_id", Value::from(asker_id.as_str()));
            }
            E::QuestionAnswered { question_id, text } => {
                put("question_id", Value::from(question_id.as_str()));
                put("text", Value::from(text.as_str()));
            }
            E::QuizResponded { question_id, choice, learner_id } => {
                put("question_id", Value::from(question_id.as_str()));
                put("choice", Value::from(*choice));
                put("learner_id", Value::from(learner_id.as_str()));
            }
            E::ExplanationRequested { step } => put("step", Value::from(*step)),
            E::ExplanationReady { step, job_id, text } => {
                put("step", Value::from(*step));
                put("job_id", Value::from(job_id.as_str()));
                put("text", Value::from(text.as_str()));
            }
        }
        (self.kind().to_owned(), Value::Object(fields))
    }

    /// `None` for types this module does not know (other writers, newer
    /// versions) and for payloads that do not fit the type. Read as serde
    /// reads a struct variant from a `Value`: fields by name from an object
    /// (others ignored, an absent coordinate `None`), integers in range and
    /// without a fraction.
    pub fn parse(ev: &Event) -> Option<SessionEvent> {
        use SessionEvent as E;
        let p = &ev.payload;
        Some(match ev.kind.as_str() {
            "session.started" => fields(p, []).map(|[]| E::Started {})?,
            "cursor.moved" => {
                let [step, x, y] = fields(p, ["step", "x", "y"])?;
                E::CursorMoved { step: step?.as_i64()?, x: coordinate(x)?, y: coordinate(y)? }
            }
            "annotation.added" => E::AnnotationAdded(Annotation::from_value(p)?),
            "annotations.cleared" => fields(p, []).map(|[]| E::AnnotationsCleared {})?,
            "session.paused" => {
                let [reason] = fields(p, ["reason"])?;
                E::Paused { reason: PauseReason::deserialize(reason?.clone()).ok()? }
            }
            "session.resumed" => fields(p, []).map(|[]| E::Resumed {})?,
            "session.ended" => fields(p, []).map(|[]| E::Ended {})?,
            "question.asked" => {
                let [question_id, text, asker_id] = fields(p, ["question_id", "text", "asker_id"])?;
                E::QuestionAsked { question_id: string(question_id)?, text: string(text)?, asker_id: string(asker_id)? }
            }
            "question.answered" => {
                let [question_id, text] = fields(p, ["question_id", "text"])?;
                E::QuestionAnswered { question_id: string(question_id)?, text: string(text)? }
            }
            "quiz.responded" => {
                let [question_id, choice, learner_id] = fields(p, ["question_id", "choice", "learner_id"])?;
                E::QuizResponded {
                    question_id: string(question_id)?,
                    choice: whole_u32(choice)?,
                    learner_id: string(learner_id)?,
                }
            }
            "explanation.requested" => {
                let [step] = fields(p, ["step"])?;
                E::ExplanationRequested { step: whole_u32(step)? }
            }
            "explanation.ready" => {
                let [step, job_id, text] = fields(p, ["step", "job_id", "text"])?;
                E::ExplanationReady { step: whole_u32(step)?, job_id: string(job_id)?, text: string(text)? }
            }
            _ => return None,
        })
    }
}

/// A struct variant's fields in `payload`, in `names`' order: by name from an
/// object (others ignored); nothing else is a struct variant.
fn fields<'a, const N: usize>(payload: &'a Value, names: [&str; N]) -> Option<[Option<&'a Value>; N]> {
    let object = payload.as_object()?;
    Some(names.map(|name| object.get(name)))
}

fn string(v: Option<&Value>) -> Option<String> {
    v?.as_str().map(str::to_owned)
}

/// `Some(None)` when absent or `null`; `None` (not this event) when not a string.
fn optional_string(v: Option<&Value>) -> Option<Option<String>> {
    match v {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(s.clone())),
        Some(_) => None,
    }
}

impl Annotation {
    /// As [`SessionEvent::parse`] reads a payload.
    fn from_value(payload: &Value) -> Option<Annotation> {
        // A struct (not a struct variant) is also read by position.
        let [id, kind, text, points, color, step] = match payload {
            Value::Array(items) => match items.as_slice() {
                [a, b, c, d, e, f] => [a, b, c, d, e, f].map(Some),
                _ => return None,
            },
            _ => fields(payload, ["id", "kind", "text", "points", "color", "step"])?,
        };
        let items = points?.as_array()?;
        let mut xy = Vec::with_capacity(items.len());
        for point in items {
            match point.as_array()?.as_slice() {
                [x, y] => xy.push([x.as_f64()?, y.as_f64()?]),
                _ => return None,
            }
        }
        Some(Annotation {
            id: string(id)?,
            kind: string(kind)?,
            text: optional_string(text)?,
            points: xy,
            color: optional_string(color)?,
            step: step?.as_i64()?,
        })
    }
}

/// A `u32` as serde reads one: an integer in range, no fraction.
fn whole_u32(v: Option<&Value>) -> Option<u32> {
    u32::try_from(v?.as_u64()?).ok()
}

/// `Some(None)` when absent or `null`; `None` (not this event) when not a number.
fn coordinate(v: Option<&Value>) -> Option<Option<f64>> {
    match v {
        None | Some(Value::Null) => Some(None),
        Some(Value::Number(n)) => n.as_f64().map(Some),
        Some(_) => None,
    }
}

impl SessionState {
    pub fn new(config: SessionConfig) -> Self {
        SessionState {
            config,
            status: Status::Waiting,
            paused_reason: None,
            cursor: Cursor::default(),
            annotations: Vec::new(),
            questions: Vec::new(),
            quiz_responses: BTreeMap::new(),
            seq: 0,
            head_hash: genesis(),
        }
    }

    /// The only way state changes. Events at or below `seq` were already
    /// folded (replay from a checkpoint is idempotent); unknown types only
    /// advance `seq`. Trusts the event: the rules ran in [`Self::decide`].
    pub fn apply(&mut self, ev: &Event) {
        if ev.seq <= self.seq {
            return;
        }
        self.head_hash.clone_from(&ev.hash);
        match SessionEvent::parse(ev) {
            Some(event) => self.apply_typed(ev.seq, ev.timestamp, event),
            None => self.seq = ev.seq,
        }
    }

    /// [`Self::apply`] for an event already in typed form: the live path
    /// commits what it just decided without a JSON round trip.
    fn apply_typed(&mut self, seq: u64, timestamp: i64, event: SessionEvent) {
        if seq <= self.seq {
            return;
        }
        self.seq = seq;
        match event {
            SessionEvent::Started {} => {
                if self.status == Status::Waiting {
                    self.status = Status::Live;
                }
            }
            SessionEvent::CursorMoved { step, x, y } => self.cursor = Cursor { step, x, y },
            SessionEvent::AnnotationAdded(a) => self.annotations.push(a),
            SessionEvent::AnnotationsCleared {} => self.annotations.clear(),
            SessionEvent::Paused { reason } => {
                self.status = Status::Paused;
                self.paused_reason = Some(reason);
            }
            SessionEvent::Resumed {} => {
                self.status = Status::Live;
                self.paused_reason = None;
            }
            SessionEvent::Ended {} => {
                self.status = Status::Ended;
                self.paused_reason = None;
            }
            SessionEvent::QuestionAsked { question_id, text, asker_id } => {
                self.questions.push(Question { id: question_id, text, asker_id, asked_at: timestamp, answer: None });
            }
            SessionEvent::QuestionAnswered { question_id, text } => {
                if let Some(q) = self.questions.iter_mut().find(|q| q.id == question_id) {
                    q.answer = Some(text);
                }
            }
            SessionEvent::QuizResponded { question_id, choice, learner_id } => {
                self.quiz_responses.entry(question_id).or_default().insert(learner_id, choice);
            }
            // Explanations live in the log only; the canvas state does not change.
            SessionEvent::ExplanationRequested { .. } | SessionEvent::ExplanationReady { .. } => {}
        }
    }

    /// Authority is the core's: the role must say teacher AND the user must be
    /// the session's teacher.
    fn is_teacher(&self, who: &Who) -> bool {
        who.role == Role::Teacher && who.user_id == self.config.teacher_id
    }

    /// The rules: which events a message causes, or why it is refused. Pure;
    /// an empty list means "accepted, nothing changes" (e.g. `pause` twice).
    pub fn decide(&self, who: &Who, msg: &ClientMsg) -> Result<Vec<SessionEvent>, ProtocolError> {
        use ClientMsg as M;
        use ErrorCode as C;
        use SessionEvent as E;
        let teacher = self.is_teacher(who);
        if msg.is_teacher_command() && !teacher {
            return err(C::AuthorityViolation, format!("only the session's teacher may send `{}`", msg.kind()));
        }
        msg.validate()?;
        let paused = self.status == Status::Paused;
        // The teacher's first command opens the session (ending one that never
        // started does not); `next` is the seq the command's own event gets.
        let start = self.status == Status::Waiting && msg.is_teacher_command() && *msg != M::End;
        let next = self.seq + 1 + u64::from(start);
        let events = match msg {
            M::Ping => return Ok(Vec::new()),
            M::Hello { version, .. } => return self.decide_hello(teacher, *version),
            _ if self.status == Status::Ended => return err(C::SessionEnded, "the session has ended"),
            M::Explain { step } => {
                let step = step.unwrap_or(self.cursor.step.clamp(0, i64::from(u32::MAX)) as u32);
                if step > self.config.step_count {
                    return err(C::InvalidCursor, format!("step must be within 0..={}", self.config.step_count));
                }
                vec![E::ExplanationRequested { step }]
            }
            M::Cursor { step, x, y } => {
                if paused {
                    return err(C::SessionPaused, "the session is paused; the cursor is frozen");
                }
                if *step < 0 || *step > i64::from(self.config.step_count) {
                    return err(C::InvalidCursor, format!("step must be within 0..={}", self.config.step_count));
                }
                vec![E::CursorMoved { step: *step, x: *x, y: *y }]
            }
            M::Annotate(AnnotationDraft { id, kind, text, points, color }) => {
                let id = id.clone().unwrap_or_else(|| format!("a{next}"));
                if self.annotations.iter().any(|a| a.id == id) {
                    return Ok(Vec::new());
                }
                let used: usize = self.annotations.iter().map(|a| a.points.len()).sum();
                if self.annotations.len() >= MAX_ANNOTATIONS || used + points.len() > MAX_TOTAL_POINTS {
                    return err(C::LimitReached, "too many annotations; clear some first");
                }
                vec![E::AnnotationAdded(Annotation {
                    id,
                    kind: kind.clone(),
                    text: text.as_ref().map(|t| t.trim().to_string()),
                    points: points.clone(),
                    color: color.clone(),
                    step: self.cursor.step,
                })]
            }
            M::ClearAnnotations => vec![E::AnnotationsCleared {}],
            M::Pause if paused => Vec::new(),
            M::Pause => vec![E::Paused { reason: PauseReason::Teacher }],
            M::Resume if paused => vec![E::Resumed {}],
            M::Resume => Vec::new(),
            M::End => vec![E::Ended {}],
            M::Answer { question_id, text } => {
                if !self.questions.iter().any(|q| q.id == *question_id) {
                    return err(C::UnknownQuestion, format!("no question `{question_id}`"));
                }
                vec![E::QuestionAnswered { question_id: question_id.clone(), text: text.trim().to_string() }]
            }
            M::Ask { text } => {
                let mine = self.questions.iter().filter(|q| q.asker_id == who.user_id).count();
                if self.questions.len() >= MAX_QUESTIONS || mine >= MAX_QUESTIONS_PER_ASKER {
                    return err(C::LimitReached, "no more questions can be asked here");
                }
                // Deterministic id: the seq of the `question.asked` event.
                vec![E::QuestionAsked {
                    question_id: format!("q{next}"),
                    text: text.trim().to_string(),
                    asker_id: who.user_id.clone(),
                }]
            }
            M::Respond { question_id, choice } => {
                let Some(quiz) = self.config.quiz.iter().find(|q| q.id == *question_id) else {
                    return err(C::UnknownQuestion, format!("no quiz question `{question_id}`"));
                };
                if *choice >= quiz.choices {
                    return err(C::InvalidChoice, format!("choice must be below {}", quiz.choices));
                }
                let responded = self.quiz_responses.get(question_id);
                if responded.is_some_and(|m| m.contains_key(&who.user_id)) {
                    return err(C::AlreadyResponded, "you already responded to this question");
                }
                vec![E::QuizResponded {
                    question_id: question_id.clone(),
                    choice: *choice,
                    learner_id: who.user_id.clone(),
                }]
            }
        };
        Ok(if start { std::iter::once(E::Started {}).chain(events).collect() } else { events })
    }

    /// The teacher's arrival opens a waiting session and resumes one paused by
    /// the teacher's disconnect (not one the teacher paused on purpose).
    fn decide_hello(&self, teacher: bool, version: Option<u32>) -> Result<Vec<SessionEvent>, ProtocolError> {
        let v = version.unwrap_or(PROTOCOL_VERSION);
        if v != PROTOCOL_VERSION {
            return err(
                ErrorCode::UnsupportedVersion,
                format!("protocol version {v} is not supported; this server speaks {PROTOCOL_VERSION}"),
            );
        }
        Ok(match (teacher, self.status, self.paused_reason) {
            (true, Status::Waiting, _) => vec![SessionEvent::Started {}],
            (true, Status::Paused, Some(PauseReason::TeacherDisconnected)) => {
                vec![SessionEvent::Resumed {}]
            }
            _ => Vec::new(),
        })
    }

    /// The full state at the current seq (presence left to the adapter).
    pub fn snapshot(&self) -> ServerMsg {
        ServerMsg::Snapshot { seq: self.seq, state: Box::new(self.clone()), presence: None }
    }
}

/// State = fold of `apply` over the session's events.
pub fn replay(config: SessionConfig, events: &[Event]) -> SessionState {
    let mut state = SessionState::new(config);
    for ev in events {
        state.apply(ev);
    }
    state
}

/// What the teacher's console shows of the class, from the folded state:
/// - `learners`: everyone the session knows of but its teacher (connected now,
///   as `present` says, the last roster's learners; or named by a quiz
///   response or a question), in id order, each `{id, here, asked, answers}`
///   where `answers` are `{question_id, choice, correct}` in quiz order and
///   `correct` is `null` when `key` has no answer for that question;
/// - `quiz`: per question of the lesson, `{counts, responses, answer}`: how
///   many chose each choice, how many responded, and the key's answer or `null`.
///
/// The rules of [`SessionState::decide`] keep every response to a question of
/// the lesson with a choice in range; anything else is left out of the counts.
/// Only the browser calls it: the worker is compiled without it (not even
/// unused code changes how the rest of the worker is optimized).
#[cfg(any(test, feature = "browser"))]
pub fn class_summary(state: &SessionState, key: &AnswerKey, present: &[String]) -> Value {
    // Built with plain loops, `Map::insert` and `Value` constructors rather than
    // `json!` and iterator adapters: this runs in the browser core, where
    // every new generic instance is bytes to download.
    let teacher = &state.config.teacher_id;
    // Learner id → here, in id order.
    let mut here = serde_json::Map::new();
    for id in present {
        if id != teacher {
            here.insert(id.clone(), Value::Bool(true));
        }
    }
    let mut note = |id: &String| {
        if id != teacher && !here.contains_key(id) {
            here.insert(id.clone(), Value::Bool(false));
        }
    };
    for by_learner in state.quiz_responses.values() {
        for id in by_learner.keys() {
            note(id);
        }
    }
    for q in &state.questions {
        note(&q.asker_id);
    }
    let mut learners = Vec::new();
    for (id, is_here) in &here {
        let mut answers = Vec::new();
        for q in &state.config.quiz {
            if let Some(&choice) = state.quiz_responses.get(&q.id).and_then(|by_learner| by_learner.get(id)) {
                let mut answer = serde_json::Map::new();
                answer.insert("question_id".into(), Value::from(q.id.as_str()));
                answer.insert("choice".into(), Value::from(choice));
                answer.insert("correct".into(), key.get(&q.id).map_or(Value::Null, |&k| Value::Bool(k == choice)));
                answers.push(Value::Object(answer));
            }
        }
        let asked = state.questions.iter().filter(|q| q.asker_id == *id).count();
        let mut learner = serde_json::Map::new();
        learner.insert("id".into(), Value::from(id.as_str()));
        learner.insert("here".into(), is_here.clone());
        learner.insert("asked".into(), Value::from(asked));
        learner.insert("answers".into(), Value::Array(answers));
        learners.push(Value::Object(learner));
    }
    let mut tally = serde_json::Map::new();
    for q in &state.config.quiz {
        let mut counts = vec![0u32; q.choices as usize];
        let mut responses = 0u32;
        for (_, &choice) in state.quiz_responses.get(&q.id).into_iter().flatten() {
            responses += 1;
            if let Some(n) = counts.get_mut(choice as usize) {
                *n += 1;
            }
        }
        let mut question = serde_json::Map::new();
        question.insert("counts".into(), Value::Array(counts.into_iter().map(Value::from).collect()));
        question.insert("responses".into(), Value::from(responses));
        question.insert("answer".into(), key.get(&q.id).map_or(Value::Null, |&answer| Value::from(answer)));
        tally.insert(q.id.clone(), Value::Object(question));
    }
    let mut summary = serde_json::Map::new();
    summary.insert("learners".into(), Value::Array(learners));
    summary.insert("quiz".into(), Value::Object(tally));
    Value::Object(summary)
}

// ---------------------------------------------------------------- connections

/// Per-socket protocol state, stored in the socket attachment (so it survives
/// hibernation). Each variant carries only what is valid in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Connection {
    /// Accepted, no `hello` yet: receives no broadcasts, may only say hello or ping.
    AwaitingHello { user_id: String, role: Role },
    /// Synced: `last_seq` is the seq this socket was brought up to at its hello;
    /// from then on it receives every broadcast event.
    Connected { user_id: String, role: Role, last_seq: u64 },
}

impl Connection {
    pub fn from_value(value: &Value) -> Result<Self, String> {
        let o = Obj::of(value)?;
        let user_id = o.req("user_id", decode::text);
        let role = match o.req("role", decode::text).as_str() {
            "teacher" => Role::Teacher,
            "observer" => Role::Observer,
            other => return Err(format!("role: unknown role `{other}`")),
        };
        let connection = match o.req("state", decode::text).as_str() {
            "awaiting_hello" => Connection::AwaitingHello { user_id, role },
            "connected" => Connection::Connected { user_id, role, last_seq: o.req("last_seq", decode::uint) },
            other => return Err(format!("state: unknown state `{other}`")),
        };
        o.done(connection)
    }
}

impl RateBucket {
    pub fn from_value(value: &Value) -> Result<Self, String> {
        let o = Obj::of(value)?;
        let bucket = RateBucket { tokens: o.req("tokens", decode::int), last_ms: o.req("last_ms", decode::int) };
        o.done(bucket)
    }
}

impl Peer {
    pub fn from_value(value: &Value) -> Result<Self, String> {
        let o = Obj::of(value)?;
        let (conn, rate) = (o.opt("conn", Connection::from_value), o.req("rate", RateBucket::from_value));
        o.done(conn)?.map(|conn| Peer { conn, rate }).ok_or_else(|| "missing field `conn`".to_owned())
    }
}

impl Connection {
    pub fn new(user_id: impl Into<String>, role: Role) -> Self {
        Connection::AwaitingHello { user_id: user_id.into(), role }
    }
    pub fn who(&self) -> Who {
        match self {
            Connection::AwaitingHello { user_id, role } | Connection::Connected { user_id, role, .. } => {
                Who { user_id: user_id.clone(), role: *role }
            }
        }
    }
    pub fn is_connected(&self) -> bool {
        matches!(self, Connection::Connected { .. })
    }
}

/// A token bucket in thousandths of a message (integers: exact, serializable).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RateBucket {
    pub tokens: i64,
    pub last_ms: i64,
}

impl RateBucket {
    pub fn full(now_ms: i64) -> Self {
        RateBucket { tokens: RATE_BURST * 1000, last_ms: now_ms }
    }
    /// Refill for the time elapsed (a clock going backwards refills nothing),
    /// then spend one message if there is one.
    pub fn take(&mut self, now_ms: i64) -> bool {
        let elapsed = now_ms.saturating_sub(self.last_ms).max(0);
        self.tokens = self.tokens.saturating_add(elapsed.saturating_mul(RATE_PER_SEC)).min(RATE_BURST * 1000);
        self.last_ms = self.last_ms.max(now_ms);
        if self.tokens >= 1000 {
            self.tokens -= 1000;
            true
        } else {
            false
        }
    }
}

/// The whole socket attachment: protocol state and rate bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Peer {
    pub conn: Connection,
    pub rate: RateBucket,
}

impl Peer {
    pub fn new(user_id: impl Into<String>, role: Role, now_ms: i64) -> Self {
        Peer { conn: Connection::new(user_id, role), rate: RateBucket::full(now_ms) }
    }
}

// ---------------------------------------------------------------- effects

/// An event of this session as its storage row holds it: the envelope
/// without `run_id` (one per session), the payload as the canonical JSON
/// text the hash covers, written once.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub seq: u64,
    pub id: String,
    pub kind: String,
    /// Canonical JSON (RFC 8785).
    pub payload: String,
    pub timestamp: i64,
    pub author_id: String,
    pub hash: String,
}

impl StoredEvent {
    /// The event of run `run_id`, its payload parsed.
    pub fn to_event(&self, run_id: &str) -> Event {
        Event {
            id: self.id.clone(),
            run_id: run_id.to_owned(),
            seq: self.seq,
            kind: self.kind.clone(),
            payload: serde_json::from_str(&self.payload).unwrap_or(Value::Null),
            timestamp: self.timestamp,
            author_id: self.author_id.clone(),
            hash: self.hash.clone(),
        }
    }

    /// The typed event (`None` for types this module does not know).
    pub fn session_event(&self) -> Option<SessionEvent> {
        SessionEvent::parse(&self.to_event(""))
    }
}

/// What the adapter must do, in the order given.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Append these events to storage atomically. If it fails, stop executing
    /// the rest and rebuild the state from storage: nothing was broadcast.
    Persist(Vec<StoredEvent>),
    /// Send `text` (an `event` message, [`ServerMsg::Event`], serialized once
    /// by the core) to every socket whose attachment is `Connected` at this
    /// moment. A socket saying hello becomes `Connected` only when the adapter
    /// writes back its `Peer` after all effects.
    Broadcast { seq: u64, text: String },
    /// Send to the sender only.
    Reply(ServerMsg),
    /// Send the sender every stored event with `seq > after`, in order, as
    /// `event` messages; if some are no longer retained, `Snapshot` of the
    /// current state instead. Always the last effect of a hello, so it sees
    /// everything persisted before it.
    SendSince { after: u64 },
    /// Append to the org's audit log (and log it).
    Audit { action: &'static str, detail: Value },
    /// Close the sender's socket.
    Close { code: u16, reason: &'static str },
    /// Ask the AI provider to explain `step`; its answer comes back through
    /// [`explanation_ready`]. Follows the persisted `explanation.requested`.
    RequestExplanation { step: u32, request_seq: u64 },
}

fn reply_err(code: ErrorCode, message: impl Into<String>) -> Vec<Effect> {
    vec![Effect::Reply(ProtocolError::new(code, message).to_msg())]
}

/// Gate before accepting a socket: observers beyond the cap get `Close(room_full)`.
pub fn admission(role: Role, observers_connected: u32) -> Option<Effect> {
    (role == Role::Observer && observers_connected >= MAX_OBSERVERS)
        .then_some(Effect::Close { code: CLOSE_ROOM_FULL, reason: "room_full" })
}

/// One socket text message, end to end: rate limit, decode, [`handle`].
/// Write `peer` back as the socket attachment after executing the effects.
pub fn receive(
    state: &mut SessionState,
    peer: &mut Peer,
    text: &str,
    now_ms: i64,
    new_id: &mut dyn FnMut() -> String,
) -> Vec<Effect> {
    if !peer.rate.take(now_ms) {
        return reply_err(ErrorCode::RateLimited, format!("more than {RATE_PER_SEC} messages per second; slow down"));
    }
    match decode_client_msg(text) {
        Ok(msg) => handle(state, &mut peer.conn, msg, now_ms, new_id),
        Err(e) => vec![Effect::Reply(e.to_msg())],
    }
}

/// One decoded message from one connection. Updates `conn` (hello) and
/// `state` (through `apply` only) and says what the adapter must do.
pub fn handle(
    state: &mut SessionState,
    conn: &mut Connection,
    msg: ClientMsg,
    now_ms: i64,
    new_id: &mut dyn FnMut() -> String,
) -> Vec<Effect> {
    let who = conn.who();
    match msg {
        ClientMsg::Ping => vec![Effect::Reply(ServerMsg::Pong)],
        ClientMsg::Hello { last_seq, .. } => {
            let known = state.seq;
            let events = match state.decide(&who, &msg) {
                Ok(events) => events,
                Err(e) => {
                    let refused = e.code == ErrorCode::UnsupportedVersion;
                    let close = Effect::Close { code: CLOSE_UNSUPPORTED_VERSION, reason: "unsupported_version" };
                    return std::iter::once(Effect::Reply(e.to_msg())).chain(refused.then_some(close)).collect();
                }
            };
            // Only the hello that opens a connection may start or resume the
            // session: a re-hello on a synced socket never sees an event twice.
            let events = if conn.is_connected() { Vec::new() } else { events };
            let mut out = commit(state, &who.user_id, events, now_ms, new_id);
            match last_seq {
                Some(after) if after <= known => {
                    if after < state.seq {
                        out.push(Effect::SendSince { after });
                    }
                }
                _ => out.push(Effect::Reply(state.snapshot())),
            }
            *conn = Connection::Connected { user_id: who.user_id, role: who.role, last_seq: state.seq };
            out
        }
        _ if !conn.is_connected() => reply_err(ErrorCode::HelloRequired, "say hello before anything else"),
        msg => match state.decide(&who, &msg) {
            Ok(events) => {
                let mut effects = commit(state, &who.user_id, events, now_ms, new_id);
                if let (ClientMsg::Explain { .. }, Some(Effect::Persist(persisted))) = (&msg, effects.first()) {
                    let requested = persisted.iter().find_map(|e| match e.session_event() {
                        Some(SessionEvent::ExplanationRequested { step }) => Some((step, e.seq)),
                        _ => None,
                    });
                    if let Some((step, request_seq)) = requested {
                        effects.push(Effect::RequestExplanation { step, request_seq });
                    }
                }
                effects
            }
            Err(e) if e.code == ErrorCode::AuthorityViolation => vec![
                Effect::Reply(e.to_msg()),
                Effect::Audit {
                    action: "classroom.authority_violation",
                    detail: json!({
                        "session_id": state.config.session_id,
                        "org": state.config.org,
                        "user_id": who.user_id,
                        "command": msg.kind(),
                    }),
                },
            ],
            Err(e) => vec![Effect::Reply(e.to_msg())],
        },
    }
}

/// The AI provider's explanation arrived (asynchronously, from the queue):
/// it becomes the session's next event, written by the system.
pub fn explanation_ready(
    state: &mut SessionState,
    step: u32,
    job_id: &str,
    text: &str,
    now_ms: i64,
    new_id: &mut dyn FnMut() -> String,
) -> Vec<Effect> {
    let text: String = text.chars().take(4 * MAX_TEXT_CHARS).collect();
    let ready = SessionEvent::ExplanationReady { step, job_id: job_id.to_string(), text };
    commit(state, SYSTEM_AUTHOR, vec![ready], now_ms, new_id)
}

/// Call when the teacher's LAST socket closes: a live session pauses (cursor
/// frozen); the teacher's next hello resumes it.
pub fn teacher_disconnected(state: &mut SessionState, now_ms: i64, new_id: &mut dyn FnMut() -> String) -> Vec<Effect> {
    if state.status != Status::Live {
        return Vec::new();
    }
    let paused = SessionEvent::Paused { reason: PauseReason::TeacherDisconnected };
    commit(state, SYSTEM_AUTHOR, vec![paused], now_ms, new_id)
}

/// Number the events (seq = state.seq + 1, …), apply them, and emit one
/// atomic `Persist` followed by one `Broadcast` per event.
fn commit(
    state: &mut SessionState,
    author: &str,
    events: Vec<SessionEvent>,
    now_ms: i64,
    new_id: &mut dyn FnMut() -> String,
) -> Vec<Effect> {
    if events.is_empty() {
        return Vec::new();
    }
    let mut persisted = Vec::with_capacity(events.len());
    // `Persist` first, then one `Broadcast` per event: its slot is filled at the end.
    let mut effects = Vec::with_capacity(1 + events.len());
    effects.push(Effect::Persist(Vec::new()));
    for e in events {
        let seq = state.seq + 1;
        let mut payload = String::with_capacity(64);
        let kind = e.write_payload(&mut payload);
        // The typed event is what `apply` would parse back from (kind, payload):
        // the property tests check live state == replay of the stored events.
        state.apply_typed(seq, now_ms, e);
        let id = new_id();
        // The `event` message (`ServerMsg::Event`) is written around the
        // envelope's canonical text, which is hashed where it lies: one text
        // for the hash and the broadcast, sealed where the seq is assigned,
        // before anything persists it.
        let mut text = String::with_capacity(payload.len() + 320);
        text.push_str(r#"{"type":"event","seq":"#);
        text.push_str(itoa::Buffer::new().format(seq));
        text.push_str(r#","event":"#);
        let envelope_at = text.len();
        crate::chain::write_envelope_head(author, &id, &mut text);
        text.push_str(&payload);
        crate::chain::write_envelope_tail(&state.config.run_id, seq, now_ms, &kind, &mut text);
        let hash = crate::chain::envelope_hash(&state.head_hash, &text[envelope_at..]);
        text.pop(); // the envelope's closing brace: the hash goes in before it
        text.push_str(r#","hash":""#);
        text.push_str(&hash); // lowercase hex: nothing to escape
        text.push_str("\"}}");
        state.head_hash.clone_from(&hash);
        effects.push(Effect::Broadcast { seq, text });
        persisted.push(StoredEvent { seq, id, kind, payload, timestamp: now_ms, author_id: author.to_owned(), hash });
    }
    if let Some(first) = effects.first_mut() {
        *first = Effect::Persist(persisted);
    }
    effects
}

// ---------------------------------------------------------------- join codes

/// A join code from random bytes (pass 16): the first 16 bytes as a 128-bit
/// number reduced modulo 31^6 (bias below 2^-98, i.e. uniform), in base 31.
/// Uniqueness among open sessions is the caller's (retry with new bytes).
pub fn join_code(random: &[u8]) -> String {
    let base = JOIN_ALPHABET.len() as u64;
    let modulus = base.pow(JOIN_CODE_LEN as u32);
    // The 128-bit number mod 31^6 by Horner's rule, one byte at a time: the
    // same remainder with no 128-bit division (a compiler-builtins routine
    // of ~1 KB in the wasm).
    let mut n = random.iter().take(16).fold(0u64, |n, b| ((n << 8) | u64::from(*b)) % modulus);
    let mut out = [0u8; JOIN_CODE_LEN];
    for c in out.iter_mut().rev() {
        *c = JOIN_ALPHABET.get((n % base) as usize).copied().unwrap_or(b'2');
        n /= base;
    }
    out.iter().map(|b| char::from(*b)).collect()
}

/// What a person typed → the canonical code: trims, ignores case, spaces and dashes.
pub fn normalize_join_code(input: &str) -> Option<String> {
    let code: String =
        input.trim().chars().filter(|c| *c != '-' && *c != ' ').map(|c| c.to_ascii_uppercase()).collect();
    (code.len() == JOIN_CODE_LEN && code.bytes().all(|b| JOIN_ALPHABET.contains(&b))).then_some(code)
}

#[cfg(test)]
mod explain_tests {
    use super::*;

    fn state() -> SessionState {
        let config = SessionConfig {
            session_id: "s".into(),
            run_id: "r".into(),
            lesson_id: "l".into(),
            version: 1,
            sha256: "h".into(),
            teacher_id: "tom".into(),
            org: "o".into(),
            step_count: 3,
            quiz: vec![],
        };
        SessionState::new(config)
    }

    #[test]
    fn teacher_opts_in_and_the_explanation_arrives_as_an_event() {
        let mut s = state();
        let mut ids = (0..).map(|n| format!("id{n}"));
        let mut new_id = || ids.next().unwrap_or_default();
        let mut teacher = Connection::Connected { user_id: "tom".into(), role: Role::Teacher, last_seq: 0 };
        let effects = handle(&mut s, &mut teacher, ClientMsg::Explain { step: Some(2) }, 5, &mut new_id);
        assert!(matches!(effects.last(), Some(Effect::RequestExplanation { step: 2, request_seq: 2 })), "{effects:?}");
        let mut observer = Connection::Connected { user_id: "lea".into(), role: Role::Observer, last_seq: 0 };
        let refused = handle(&mut s, &mut observer, ClientMsg::Explain { step: None }, 6, &mut new_id);
        assert!(!refused.iter().any(|e| matches!(e, Effect::RequestExplanation { .. } | Effect::Persist(_))));
        let out = handle(&mut s, &mut teacher, ClientMsg::Explain { step: Some(9) }, 7, &mut new_id);
        assert!(matches!(&out[..], [Effect::Reply(ServerMsg::Error { code: ErrorCode::InvalidCursor, .. })]));
        let before = s.clone();
        let ready = explanation_ready(&mut s, 2, "job", "Step 2 adds a dot.", 8, &mut new_id);
        let Some(Effect::Persist(events)) = ready.first() else { panic!("{ready:?}") };
        assert_eq!(
            (events[0].kind.as_str(), events[0].seq, events[0].author_id.as_str()),
            ("explanation.ready", 3, SYSTEM_AUTHOR)
        );
        assert_eq!((s.cursor.clone(), s.status), (before.cursor, before.status));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use ErrorCode as C;
    use SessionEvent as E;

    fn config() -> SessionConfig {
        SessionConfig {
            session_id: "s1".into(),
            run_id: "r1".into(),
            lesson_id: "l1".into(),
            version: 3,
            sha256: "ab".repeat(32),
            teacher_id: "t".into(),
            org: "o1".into(),
            step_count: 10,
            quiz: vec![QuizRef { id: "k1".into(), choices: 3 }],
        }
    }
    fn teacher() -> Who {
        Who { user_id: "t".into(), role: Role::Teacher }
    }
    fn learner(n: usize) -> Who {
        Who { user_id: format!("u{n}"), role: Role::Observer }
    }
    fn ids() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("ev-{n}")
        }
    }
    /// Given: these events, committed by the core itself onto a fresh session.
    fn given(events: Vec<SessionEvent>) -> SessionState {
        let mut s = SessionState::new(config());
        commit(&mut s, "t", events, 0, &mut ids());
        s
    }
    fn live() -> SessionState {
        given(vec![E::Started {}])
    }
    fn paused(reason: PauseReason) -> SessionState {
        given(vec![E::Started {}, E::Paused { reason }])
    }
    /// When: `who` sends `msg`. Then: the decided events, or the error code.
    fn when(s: &SessionState, who: &Who, msg: ClientMsg) -> Result<Vec<SessionEvent>, C> {
        s.decide(who, &msg).map_err(|e| e.code)
    }
    /// The same through `handle`, as the adapter calls it, on a connected socket.
    fn send(s: &mut SessionState, who: &Who, msg: ClientMsg) -> Vec<Effect> {
        let mut conn = Connection::Connected { user_id: who.user_id.clone(), role: who.role, last_seq: 0 };
        handle(s, &mut conn, msg, 42, &mut ids())
    }
    fn cursor(step: i64) -> ClientMsg {
        ClientMsg::Cursor { step, x: Some(0.5), y: None }
    }
    fn ask(text: &str) -> ClientMsg {
        ClientMsg::Ask { text: text.into() }
    }
    fn hello(last_seq: Option<u64>) -> ClientMsg {
        ClientMsg::Hello { last_seq, version: Some(PROTOCOL_VERSION) }
    }
    fn note(id: Option<&str>) -> ClientMsg {
        let (kind, text, color) = ("note".into(), Some("see".into()), None);
        ClientMsg::Annotate(AnnotationDraft { id: id.map(Into::into), kind, text, points: vec![[1.0, 2.0]], color })
    }
    fn error_code(effects: &[Effect]) -> Option<C> {
        effects.iter().find_map(|e| match e {
            Effect::Reply(ServerMsg::Error { code, .. }) => Some(*code),
            _ => None,
        })
    }
    /// A broadcast text as a client reads it, numbers normalized the way the
    /// envelope's canonical form writes them (1.0 is `1` on the wire).
    fn wire_event(text: &str) -> ServerMsg {
        let msg: ServerMsg = serde_json::from_str(text).expect("the broadcast is a server message");
        match msg {
            ServerMsg::Event { seq, mut event } => {
                event.payload = serde_json::from_str(&crate::canonical::to_canonical_string(&event.payload)).unwrap();
                ServerMsg::Event { seq, event }
            }
            other => other,
        }
    }

    /// The persisted events as a run holds them (the rows' payload texts
    /// parsed): replay reads them so.
    fn persisted(effects: &[Effect]) -> Vec<Event> {
        let batches = effects.iter().filter_map(|e| match e {
            Effect::Persist(evs) => Some(evs.iter().map(|e| e.to_event(&config().run_id))),
            _ => None,
        });
        batches.flatten().collect()
    }

    #[test]
    fn decode_refuses_each_kind_of_bad_input_with_its_code() {
        let code = |t: &str| decode_client_msg(t).err().map(|e| e.code);
        let text = |n: usize| format!(r#"{{"type":"ask","text":"{}"}}"#, "é".repeat(n));
        assert_eq!(code(&text(MAX_MESSAGE_BYTES / 2)), Some(C::MessageTooLarge));
        for bad in ["", "{", "[1]", "3", r#"{"type":3}"#, r#"{"text":"x"}"#] {
            assert_eq!(code(bad), Some(C::MalformedMessage), "{bad}");
        }
        assert_eq!(code(r#"{"type":"teleport"}"#), Some(C::UnknownMessageType));
        for bad in [
            r#"{"type":"cursor","step":"2"}"#,
            r#"{"type":"cursor","step":1.5}"#,
            r#"{"type":"cursor"}"#,
            r#"{"type":"respond","question_id":"k1","choice":-1}"#,
            r#"{"type":"ask","text":"   "}"#,
            r#"{"type":"annotate","kind":"ink","points":[[1]]}"#,
            r#"{"type":"annotate","kind":"has space"}"#,
            r#"{"type":"hello","last_seq":-3}"#,
            &text(MAX_TEXT_CHARS + 1),
        ] {
            assert_eq!(code(bad), Some(C::InvalidMessage), "{bad}");
        }
        assert_eq!(code(&text(MAX_TEXT_CHARS)), None);
    }

    #[test]
    fn decode_reads_the_type_first_and_still_parses_every_field() {
        // Other fields are ignored but must be valid JSON values, as when
        // serde buffered the whole message.
        for bad in [r#"{"type":"ping","x":"\ud800"}"#, r#"{"type":"ping","x":[1e400]}"#] {
            assert_eq!(decode_client_msg(bad).err().map(|e| e.code), Some(C::MalformedMessage), "{bad}");
        }
        // serde's sequence form of an internally tagged enum: `[type, fields...]`.
        assert_eq!(decode_client_msg(r#"["ping"]"#), Ok(ClientMsg::Ping));
        assert_eq!(
            decode_client_msg(r#"["respond","k1",2]"#),
            Ok(ClientMsg::Respond { question_id: "k1".into(), choice: 2 })
        );
        assert_eq!(decode_client_msg(r#"["ping",1]"#).err().map(|e| e.code), Some(C::MalformedMessage));
        let e = decode_client_msg(r#"{"type":"respond","question_id":"k1","choice":-1}"#).unwrap_err();
        // Where in the text, as the decoder of the fast path reports it.
        assert_eq!(e.message, "invalid value: integer `-1`, expected u32 at line 1 column 48");
    }

    #[test]
    fn decode_ignores_unknown_fields_and_round_trips_every_type() {
        assert_eq!(decode_client_msg(r#"{"type":"ping","extra":1}"#), Ok(ClientMsg::Ping));
        let zoomed = decode_client_msg(r#"{"type":"cursor","step":2,"zoom":3}"#);
        assert_eq!(zoomed, Ok(ClientMsg::Cursor { step: 2, x: None, y: None }));
        for text in [
            r#"{"type":"hello"}"#,
            r#"{"type":"hello","last_seq":4,"version":1}"#,
            r#"{"type":"cursor","step":3,"x":0.25,"y":-1e3}"#,
            r##"{"type":"annotate","id":"a1","kind":"ink","points":[[1,-2.5]],"color":"#f00"}"##,
            r#"{"type":"annotate","kind":"note","text":"look"}"#,
            r#"{"type":"clear_annotations"}"#,
            r#"{"type":"pause"}"#,
            r#"{"type":"resume"}"#,
            r#"{"type":"end"}"#,
            r#"{"type":"answer","question_id":"q1","text":"yes"}"#,
            r#"{"type":"ask","text":"why?"}"#,
            r#"{"type":"respond","question_id":"k1","choice":2}"#,
            r#"{"type":"ping"}"#,
        ] {
            let msg = decode_client_msg(text).unwrap();
            assert!(text.contains(&format!(r#""type":"{}""#, msg.kind())));
            let again = serde_json::to_string(&msg).unwrap();
            assert_eq!(decode_client_msg(&again), Ok(msg));
        }
    }

    #[test]
    fn hello_gates_the_connection_and_syncs_it() {
        let mut s = given(vec![E::Started {}, E::CursorMoved { step: 2, x: None, y: None }]);
        let mut conn = Connection::new("u1", Role::Observer);
        // Given a fresh socket, when it sends a command or a wrong version, then it stays out.
        let out = handle(&mut s, &mut conn, ask("hi"), 0, &mut ids());
        assert_eq!(error_code(&out), Some(C::HelloRequired));
        assert_eq!(handle(&mut s, &mut conn, ClientMsg::Ping, 0, &mut ids()), [Effect::Reply(ServerMsg::Pong)]);
        let v2 = ClientMsg::Hello { last_seq: None, version: Some(2) };
        let out = handle(&mut s, &mut conn, v2, 0, &mut ids());
        assert_eq!(error_code(&out), Some(C::UnsupportedVersion));
        let close = Effect::Close { code: CLOSE_UNSUPPORTED_VERSION, reason: "unsupported_version" };
        assert_eq!(out[1], close);
        assert!(!conn.is_connected());
        // When it says hello: a snapshot without a usable last_seq, else the missed events.
        let snap = vec![Effect::Reply(s.snapshot())];
        for (last, expected) in
            [(None, snap.clone()), (Some(9), snap), (Some(1), vec![Effect::SendSince { after: 1 }]), (Some(2), vec![])]
        {
            let mut conn = Connection::new("u1", Role::Observer);
            assert_eq!(handle(&mut s, &mut conn, hello(last), 0, &mut ids()), expected);
            let synced = Connection::Connected { user_id: "u1".into(), role: Role::Observer, last_seq: 2 };
            assert_eq!(conn, synced);
        }
        let wire = serde_json::to_value(s.snapshot()).unwrap();
        assert_eq!((wire["type"].as_str(), wire["seq"].as_u64()), (Some("snapshot"), Some(2)));
        assert_eq!(
            (wire["state"]["status"].as_str(), wire["state"]["cursor"]["step"].as_i64()),
            (Some("live"), Some(2))
        );
    }

    #[test]
    fn the_teachers_presence_starts_pauses_and_resumes_the_session() {
        // Given a waiting session, when the teacher says hello, then it starts, synced last.
        let mut s = given(vec![]);
        let mut conn = Connection::new("t", Role::Teacher);
        let out = handle(&mut s, &mut conn, hello(Some(0)), 5, &mut ids());
        assert_eq!(s.status, Status::Live);
        assert_eq!(persisted(&out)[0].kind, "session.started");
        assert!(matches!(
            out.as_slice(),
            [Effect::Persist(_), Effect::Broadcast { .. }, Effect::SendSince { after: 0 }]
        ));
        assert_eq!(handle(&mut s, &mut conn, hello(Some(1)), 6, &mut ids()), [], "a re-hello only resyncs");
        // When the teacher's connection drops, then the session pauses and the cursor freezes.
        let ev = persisted(&teacher_disconnected(&mut s, 7, &mut ids()));
        assert_eq!((ev[0].kind.as_str(), ev[0].author_id.as_str()), ("session.paused", SYSTEM_AUTHOR));
        assert_eq!(ev[0].payload, json!({"reason": "teacher_disconnected"}));
        assert_eq!(s.clone().unchained(), paused(PauseReason::TeacherDisconnected).with_seq(2).unchained());
        assert_eq!(when(&s, &teacher(), cursor(1)), Err(C::SessionPaused));
        assert_eq!(teacher_disconnected(&mut s, 8, &mut ids()), []);
        assert_eq!(when(&s, &learner(1), hello(None)), Ok(vec![]));
        // When the teacher comes back, then it resumes; a deliberate pause stays.
        let out = handle(&mut s, &mut Connection::new("t", Role::Teacher), hello(None), 9, &mut ids());
        assert_eq!((persisted(&out)[0].kind.as_str(), s.status), ("session.resumed", Status::Live));
        assert_eq!(when(&paused(PauseReason::Teacher), &teacher(), hello(None)), Ok(vec![]));
        assert_eq!(teacher_disconnected(&mut given(vec![]), 0, &mut ids()), []);
    }

    impl SessionState {
        fn with_seq(mut self, seq: u64) -> Self {
            self.seq = seq;
            self
        }
        /// The state without its chain head, for comparing folds of different events.
        fn unchained(mut self) -> Self {
            self.head_hash = genesis();
            self
        }
    }

    #[test]
    fn only_the_sessions_teacher_may_command_and_violations_are_audited() {
        let commands = [
            cursor(1),
            note(None),
            ClientMsg::ClearAnnotations,
            ClientMsg::Pause,
            ClientMsg::Resume,
            ClientMsg::End,
            ClientMsg::Answer { question_id: "q2".into(), text: "x".into() },
        ];
        let asked = E::QuestionAsked { question_id: "q2".into(), text: "?".into(), asker_id: "u1".into() };
        // A forged role is not enough: the user must be the session's teacher.
        let impostor = Who { user_id: "u9".into(), role: Role::Teacher };
        for who in [learner(1), impostor] {
            for msg in commands.clone() {
                let mut s = given(vec![E::Started {}, asked.clone()]);
                let before = s.clone();
                let out = send(&mut s, &who, msg.clone());
                assert_eq!(error_code(&out), Some(C::AuthorityViolation));
                let [_, Effect::Audit { action: "classroom.authority_violation", detail }] = out.as_slice() else {
                    panic!("{out:?}")
                };
                assert_eq!(detail["command"], msg.kind());
                assert_eq!(s, before);
            }
        }
    }

    #[test]
    fn the_status_machine_and_the_cursor_rules() {
        let t = &teacher();
        let waiting = given(vec![]);
        let moved = E::CursorMoved { step: 4, x: Some(0.5), y: None };
        assert_eq!(when(&waiting, t, cursor(4)), Ok(vec![E::Started {}, moved]));
        let pause = E::Paused { reason: PauseReason::Teacher };
        assert_eq!(when(&waiting, t, ClientMsg::Pause), Ok(vec![E::Started {}, pause.clone()]));
        assert_eq!(when(&waiting, t, ClientMsg::End), Ok(vec![E::Ended {}]));
        assert_eq!(when(&waiting, &learner(1), ask("hi")).map(|e| e.len()), Ok(1));
        let s = live();
        assert_eq!(when(&s, t, cursor(-1)), Err(C::InvalidCursor));
        assert_eq!(when(&s, t, cursor(11)), Err(C::InvalidCursor));
        assert!(when(&s, t, cursor(0)).is_ok() && when(&s, t, cursor(10)).is_ok());
        let nan = ClientMsg::Cursor { step: 1, x: Some(f64::NAN), y: None };
        assert_eq!(when(&s, t, nan), Err(C::InvalidMessage));
        assert_eq!(when(&s, t, ClientMsg::Resume), Ok(vec![]));
        assert_eq!(when(&s, t, ClientMsg::Pause), Ok(vec![pause]));
        let p = paused(PauseReason::Teacher);
        assert_eq!(when(&p, t, cursor(1)), Err(C::SessionPaused));
        assert_eq!(when(&p, t, ClientMsg::Pause), Ok(vec![]));
        assert_eq!(when(&p, t, ClientMsg::Resume), Ok(vec![E::Resumed {}]));
        assert_eq!(when(&p, t, ClientMsg::End), Ok(vec![E::Ended {}]));
        let ended = given(vec![E::Started {}, E::Ended {}]);
        for msg in [cursor(1), ClientMsg::Resume, ClientMsg::End, ask("late?")] {
            assert_eq!(when(&ended, t, msg), Err(C::SessionEnded));
        }
        let respond = ClientMsg::Respond { question_id: "k1".into(), choice: 0 };
        assert_eq!(when(&ended, &learner(1), respond), Err(C::SessionEnded));
        assert_eq!(when(&ended, &learner(1), hello(None)), Ok(vec![]));
    }

    #[test]
    fn questions_are_asked_by_anyone_answered_by_the_teacher_and_bounded() {
        let mut s = live();
        let ev = persisted(&send(&mut s, &learner(1), ask("  why?  ")));
        assert_eq!(ev[0].kind, "question.asked");
        assert_eq!(ev[0].payload, json!({"question_id": "q2", "text": "why?", "asker_id": "u1"}));
        assert_eq!(s.questions[0].asked_at, 42);
        let answer = |id: &str| ClientMsg::Answer { question_id: id.into(), text: "because".into() };
        assert_eq!(when(&s, &teacher(), answer("q9")), Err(C::UnknownQuestion));
        send(&mut s, &teacher(), answer("q2"));
        assert_eq!(s.questions[0].answer.as_deref(), Some("because"));
        for _ in 1..MAX_QUESTIONS_PER_ASKER {
            send(&mut s, &learner(1), ask("again"));
        }
        assert_eq!(when(&s, &learner(1), ask("more")), Err(C::LimitReached));
        assert!(when(&s, &learner(2), ask("mine")).is_ok());
    }

    #[test]
    fn quiz_responses_are_one_per_learner_per_question() {
        let first = E::QuizResponded { question_id: "k1".into(), choice: 1, learner_id: "u1".into() };
        let s = given(vec![E::Started {}, first]);
        let respond = |q: &str, choice| ClientMsg::Respond { question_id: q.into(), choice };
        assert_eq!(when(&s, &learner(1), respond("k1", 0)), Err(C::AlreadyResponded));
        assert_eq!(when(&s, &learner(2), respond("k7", 0)), Err(C::UnknownQuestion));
        assert_eq!(when(&s, &learner(2), respond("k1", 3)), Err(C::InvalidChoice));
        let second = E::QuizResponded { question_id: "k1".into(), choice: 2, learner_id: "u2".into() };
        assert_eq!(when(&s, &learner(2), respond("k1", 2)), Ok(vec![second]));
        assert_eq!(s.quiz_responses["k1"]["u1"], 1);
    }

    #[test]
    fn the_responder_alone_learns_whether_they_were_right() {
        let key: AnswerKey = [("k1".to_string(), 2)].into();
        let mut s = live();
        let effects = send(&mut s, &learner(3), ClientMsg::Respond { question_id: "k1".into(), choice: 0 });
        let expected = ServerMsg::QuizFeedback { question_id: "k1".into(), choice: 0, correct: false, answer: 2 };
        assert_eq!(quiz_feedback(&key, &effects, "u3"), Some(expected));
        assert_eq!(quiz_feedback(&key, &effects, "u4"), None);
        let refused = send(&mut s, &learner(3), ClientMsg::Respond { question_id: "k1".into(), choice: 2 });
        assert_eq!(quiz_feedback(&key, &refused, "u3"), None);
        let right = send(&mut s, &learner(5), ClientMsg::Respond { question_id: "k1".into(), choice: 2 });
        assert!(matches!(quiz_feedback(&key, &right, "u5"), Some(ServerMsg::QuizFeedback { correct: true, .. })));
        // A session opened before keys were kept: no feedback, nothing breaks.
        assert_eq!(quiz_feedback(&AnswerKey::new(), &right, "u5"), None);
    }

    #[test]
    fn the_class_summary_says_who_answered_what_and_tallies_each_choice() {
        let mut cfg = config();
        cfg.quiz.push(QuizRef { id: "k2".into(), choices: 2 });
        let mut s = SessionState::new(cfg);
        let responded =
            |q: &str, choice, who: &str| E::QuizResponded { question_id: q.into(), choice, learner_id: who.into() };
        let events = vec![
            E::Started {},
            responded("k1", 2, "u2"),
            responded("k1", 0, "u1"),
            responded("k2", 1, "u1"),
            E::QuestionAsked { question_id: "q1".into(), text: "?".into(), asker_id: "u3".into() },
            E::QuestionAsked { question_id: "q2".into(), text: "?".into(), asker_id: "u3".into() },
            E::QuestionAsked { question_id: "q3".into(), text: "?".into(), asker_id: "t".into() },
        ];
        commit(&mut s, "t", events, 0, &mut ids());
        let key: AnswerKey = [("k1".to_string(), 2)].into();
        let present = ["u4".to_string(), "u1".to_string(), "t".to_string()];
        let summary = class_summary(&s, &key, &present);
        assert_eq!(
            summary,
            json!({
                "learners": [
                    {"id": "u1", "here": true, "asked": 0, "answers": [
                        {"question_id": "k1", "choice": 0, "correct": false},
                        {"question_id": "k2", "choice": 1, "correct": null},
                    ]},
                    {"id": "u2", "here": false, "asked": 0, "answers": [{"question_id": "k1", "choice": 2, "correct": true}]},
                    {"id": "u3", "here": false, "asked": 2, "answers": []},
                    {"id": "u4", "here": true, "asked": 0, "answers": []},
                ],
                "quiz": {
                    "k1": {"counts": [1, 0, 1], "responses": 2, "answer": 2},
                    "k2": {"counts": [0, 1], "responses": 1, "answer": null},
                },
            })
        );
        // A fresh session: no learners, every choice at zero.
        let empty = class_summary(&given(vec![]), &AnswerKey::new(), &[]);
        assert_eq!(
            empty,
            json!({"learners": [], "quiz": {"k1": {"counts": [0, 0, 0], "responses": 0, "answer": null}}})
        );
    }

    #[test]
    fn the_roster_is_sorted_unique_and_bounded() {
        let ids = ["lea", "ann", "lea"].map(String::from);
        assert_eq!(roster(ids, 3), ServerMsg::Roster { count: 3, learners: vec!["ann".into(), "lea".into()] });
        let many = (0..MAX_ROSTER + 7).map(|n| format!("u{n:05}"));
        let ServerMsg::Roster { learners, .. } = roster(many, 0) else { unreachable!() };
        assert_eq!(learners.len(), MAX_ROSTER);
        let text = serde_json::to_string(&roster(["a".to_string()], 1)).unwrap();
        assert_eq!(text, r#"{"type":"roster","count":1,"learners":["a"]}"#);
        let key = ServerMsg::AnswerKey { answers: [("q1".to_string(), 2)].into() };
        assert_eq!(serde_json::to_string(&key).unwrap(), r#"{"type":"answer_key","answers":{"q1":2}}"#);
    }

    #[test]
    fn annotations_are_idempotent_by_id_bounded_and_cleared() {
        let mut s = given(vec![E::Started {}, E::CursorMoved { step: 3, x: None, y: None }]);
        assert_eq!(persisted(&send(&mut s, &teacher(), note(Some("n1")))).len(), 1);
        assert_eq!(send(&mut s, &teacher(), note(Some("n1"))), []);
        send(&mut s, &teacher(), note(None));
        let drawn: Vec<_> = s.annotations.iter().map(|a| (a.id.as_str(), a.step)).collect();
        assert_eq!(drawn, [("n1", 3), ("a4", 3)]);
        for _ in 2..MAX_ANNOTATIONS {
            send(&mut s, &teacher(), note(None));
        }
        assert_eq!(when(&s, &teacher(), note(None)), Err(C::LimitReached));
        send(&mut s, &teacher(), ClientMsg::ClearAnnotations);
        assert!(s.annotations.is_empty());
    }

    #[test]
    fn events_are_persisted_then_broadcast_with_a_full_envelope() {
        let mut s = given(vec![]);
        let out = send(&mut s, &teacher(), cursor(2));
        let [Effect::Persist(rows), Effect::Broadcast { seq: 1, text: b1 }, Effect::Broadcast { seq: 2, text: b2 }] =
            out.as_slice()
        else {
            panic!("{out:?}")
        };
        // The storage row holds the payload's canonical text, hashed as written.
        assert_eq!(rows[1].payload, r#"{"step":2,"x":0.5,"y":null}"#);
        let evs = persisted(&out);
        assert_eq!(
            (wire_event(b1), wire_event(b2)),
            (ServerMsg::Event { seq: 1, event: evs[0].clone() }, ServerMsg::Event { seq: 2, event: evs[1].clone() })
        );
        let e = &evs[1];
        assert_eq!((e.id.as_str(), e.run_id.as_str(), e.seq, e.kind.as_str()), ("ev-2", "r1", 2, "cursor.moved"));
        assert_eq!((e.timestamp, e.author_id.as_str()), (42, "t"));
        assert_eq!(e.payload, json!({"step": 2, "x": 0.5, "y": null}));
        let wire: Value = serde_json::from_str(b2).unwrap();
        assert_eq!((wire["type"].as_str(), wire["event"]["type"].as_str()), (Some("event"), Some("cursor.moved")));
    }

    #[test]
    fn apply_skips_folded_seqs_and_unknown_types() {
        let mut s = live();
        let mut ev = persisted(&send(&mut given(vec![]), &teacher(), ClientMsg::End))[0].clone();
        s.apply(&ev); // seq 1 is already folded
        assert_eq!(s, live());
        (ev.seq, ev.kind) = (2, "x_custom.thing".into());
        s.apply(&ev);
        assert_eq!(s.unchained(), live().with_seq(2).unchained());
    }

    #[test]
    fn rate_limits_decode_errors_and_admission() {
        let mut b = RateBucket::full(0);
        assert_eq!((0..RATE_BURST).filter(|_| b.take(0)).count() as i64, RATE_BURST);
        assert!(!b.take(0) && !b.take(49) && b.take(50));
        assert!(!b.take(-10_000), "a clock going backwards refills nothing");
        let mut s = live();
        let mut peer = Peer::new("u1", Role::Observer, 0);
        assert_eq!(error_code(&receive(&mut s, &mut peer, "nope", 0, &mut ids())), Some(C::MalformedMessage));
        receive(&mut s, &mut peer, r#"{"type":"hello"}"#, 0, &mut ids());
        assert!(peer.conn.is_connected());
        let attachment = serde_json::to_string(&peer).unwrap();
        assert_eq!(decode::from_text(&attachment, Peer::from_value).unwrap(), peer);
        let codes: Vec<_> = (0..RATE_BURST)
            .map(|_| error_code(&receive(&mut s, &mut peer, r#"{"type":"ping"}"#, 0, &mut ids())))
            .collect();
        let allowed = codes.iter().take_while(|c| c.is_none()).count() as i64;
        assert_eq!((allowed, codes.last()), (RATE_BURST - 2, Some(&Some(C::RateLimited))));
        let full = Effect::Close { code: CLOSE_ROOM_FULL, reason: "room_full" };
        assert_eq!(admission(Role::Observer, MAX_OBSERVERS), Some(full));
        assert_eq!(admission(Role::Observer, MAX_OBSERVERS - 1), None);
        assert_eq!(admission(Role::Teacher, MAX_OBSERVERS), None);
    }

    #[test]
    fn join_codes_are_unambiguous_uniform_and_normalized() {
        let code = join_code(&[7u8; 16]);
        assert_eq!((code.len(), code.clone()), (JOIN_CODE_LEN, join_code(&[7u8; 16])));
        assert_ne!(code, join_code(&[8u8; 16]));
        assert_eq!(join_code(&[]), "222222");
        let typed = format!("  {}-{} ", code[..3].to_lowercase(), &code[3..]);
        assert_eq!(normalize_join_code(&typed), Some(code));
        for bad in ["", "ABCDE", "ABCDEFG", "ABCDE0", "abcdeI", "ÄBCDEF"] {
            assert_eq!(normalize_join_code(bad), None, "{bad}");
        }
        let mut counts = [0u32; 31];
        for i in 0..31_000u64 {
            let bytes = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) as u128 * 0xD1B5_4A32_D192_ED03).to_be_bytes();
            for b in join_code(&bytes).bytes() {
                counts[JOIN_ALPHABET.iter().position(|a| *a == b).unwrap()] += 1;
            }
        }
        assert!(counts.iter().all(|c| (5400..6600).contains(c)), "{counts:?}");
    }

    /// The digits of the 128-bit number mod 31^6, as first defined.
    fn join_code_by_u128(random: &[u8]) -> String {
        let wide = random.iter().take(16).fold(0u128, |n, b| (n << 8) | u128::from(*b));
        let base = JOIN_ALPHABET.len() as u128;
        let mut n = wide % base.pow(JOIN_CODE_LEN as u32);
        let mut out = [0u8; JOIN_CODE_LEN];
        for c in out.iter_mut().rev() {
            *c = JOIN_ALPHABET[(n % base) as usize];
            n /= base;
        }
        out.iter().map(|b| char::from(*b)).collect()
    }

    proptest::proptest! {
        #[test]
        fn join_code_is_the_128_bit_remainder(random in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..24)) {
            proptest::prop_assert_eq!(join_code(&random), join_code_by_u128(&random));
        }
    }

    // ------------------------------------------------------------ properties

    #[derive(Debug, Clone)]
    enum Op {
        Send(usize, ClientMsg),
        Drop(usize),
        Rejoin(usize, bool),
    }

    fn any_msg() -> impl Strategy<Value = ClientMsg> {
        prop_oneof![
            4 => (-2i64..13, proptest::option::of(-5.0f64..5.0))
                .prop_map(|(step, x)| ClientMsg::Cursor { step, x, y: x }),
            2 => (0u8..4).prop_map(|n| note((n > 0).then(|| ["n1", "n2", "n3"][n as usize - 1]))),
            1 => Just(ClientMsg::ClearAnnotations),
            2 => Just(ClientMsg::Pause),
            2 => Just(ClientMsg::Resume),
            1 => Just(ClientMsg::End),
            2 => (1u64..20, "[a-z ]{0,6}")
                .prop_map(|(n, text)| ClientMsg::Answer { question_id: format!("q{n}"), text }),
            2 => "[a-z]{1,6}".prop_map(|text| ClientMsg::Ask { text }),
            2 => (prop_oneof![Just("k1"), Just("k2")], 0u32..4)
                .prop_map(|(q, choice)| ClientMsg::Respond { question_id: q.into(), choice }),
            1 => Just(ClientMsg::Ping),
            1 => proptest::option::of(0u64..30).prop_map(hello),
        ]
    }

    fn any_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            10 => (0usize..4, any_msg()).prop_map(|(i, m)| Op::Send(i, m)),
            1 => (0usize..4).prop_map(Op::Drop),
            2 => (0usize..4, any::<bool>()).prop_map(|(i, r)| Op::Rejoin(i, r)),
        ]
    }

    /// A model adapter with its clients: 0 is the teacher, 1..=3 observers.
    /// `seen[i]` is the last seq client i holds: every delivery must be the next.
    struct Sim {
        state: SessionState,
        store: Vec<Event>,
        conns: Vec<Connection>,
        seen: Vec<u64>,
        now: i64,
        ids: u64,
    }

    impl Sim {
        fn who(i: usize) -> Who {
            if i == 0 {
                teacher()
            } else {
                learner(i)
            }
        }

        fn execute(&mut self, sender: usize, effects: &[Effect]) {
            for e in effects {
                match e {
                    Effect::Persist(evs) => {
                        self.store.extend(evs.iter().map(|e| e.to_event(&self.state.config.run_id)))
                    }
                    Effect::Broadcast { seq, text } => {
                        let event = match wire_event(text) {
                            ServerMsg::Event { seq: s, event } if s == *seq => event,
                            other => panic!("not the event message of seq {seq}: {other:?}"),
                        };
                        let stored = self.store.last().map(crate::run::Event::to_value);
                        let canonical = crate::canonical::to_canonical_string;
                        assert_eq!(
                            stored.as_ref().map(canonical),
                            Some(canonical(&event.to_value())),
                            "persisted before broadcast"
                        );
                        for (i, c) in self.conns.iter().enumerate() {
                            if c.is_connected() {
                                assert_eq!(self.seen[i] + 1, *seq, "client {i}: gap or duplicate");
                                self.seen[i] = *seq;
                            }
                        }
                    }
                    Effect::Reply(ServerMsg::Snapshot { seq, .. }) => self.seen[sender] = *seq,
                    Effect::SendSince { after } => {
                        assert_eq!(self.seen[sender], *after);
                        for ev in self.store.iter().filter(|e| e.seq > *after) {
                            assert_eq!(self.seen[sender] + 1, ev.seq);
                            self.seen[sender] = ev.seq;
                        }
                    }
                    _ => {}
                }
            }
        }

        /// Executes like the adapter: the sender's attachment is written back last.
        fn step(&mut self, i: usize, msg: Option<ClientMsg>) -> Vec<Effect> {
            self.now += 100;
            if let Some(ClientMsg::Hello { last_seq: Some(claimed), .. }) = msg {
                self.seen[i] = claimed; // a client holds exactly what it claims
            }
            let mut conn = self.conns[i].clone();
            let ids = &mut self.ids;
            let mut new_id = || {
                *ids += 1;
                format!("id{ids}")
            };
            let out = match msg {
                Some(msg) => handle(&mut self.state, &mut conn, msg, self.now, &mut new_id),
                None => teacher_disconnected(&mut self.state, self.now, &mut new_id),
            };
            self.execute(i, &out);
            self.conns[i] = conn;
            out
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn random_sessions_are_gapless_authoritative_and_replayable(ops in proptest::collection::vec(any_op(), 0..80)) {
            let mut sim = Sim {
                state: SessionState::new(config()),
                store: Vec::new(),
                conns: (0..4).map(|i| Connection::new(Sim::who(i).user_id, Sim::who(i).role)).collect(),
                seen: vec![0; 4],
                now: 0,
                ids: 0,
            };
            for i in (0..4).rev() {
                sim.step(i, Some(hello(None)));
            }
            for op in ops {
                match op {
                    Op::Send(i, msg) => {
                        let before = sim.state.clone();
                        let teacher_cmd = msg.is_teacher_command();
                        let out = sim.step(i, Some(msg));
                        if i > 0 {
                            prop_assert_eq!(&sim.state.cursor, &before.cursor);
                            if teacher_cmd {
                                prop_assert!(persisted(&out).is_empty());
                                prop_assert_eq!(&sim.state, &before);
                            }
                        }
                    }
                    Op::Drop(i) => {
                        sim.conns[i] = Connection::new(Sim::who(i).user_id, Sim::who(i).role);
                        if i == 0 {
                            sim.step(0, None);
                        }
                    }
                    Op::Rejoin(i, resume) => {
                        let last = resume.then_some(sim.seen[i]);
                        sim.step(i, Some(hello(last)));
                    }
                }
            }
            let seqs: Vec<u64> = sim.store.iter().map(|e| e.seq).collect();
            prop_assert_eq!(seqs, (1..=sim.state.seq).collect::<Vec<_>>());
            let stored: Vec<Event> = serde_json::from_str(&serde_json::to_string(&sim.store).unwrap()).unwrap();
            prop_assert_eq!(&replay(config(), &stored), &sim.state);
            // The object seals what it persists: the stored log is one intact chain.
            let mut walk = crate::chain::Walk::default();
            prop_assert!(walk.check(&stored).is_ok());
            prop_assert_eq!(&walk.head, &sim.state.head_hash);
            for (i, c) in sim.conns.iter().enumerate() {
                prop_assert!(!c.is_connected() || sim.seen[i] == sim.state.seq);
            }
        }

        #[test]
        fn cursor_payloads_are_written_as_the_generic_path_writes_them(
            step in any::<i64>(),
            x in proptest::option::of(any::<u64>()),
            y in proptest::option::of(-1e6f64..1e6),
        ) {
            let event = E::CursorMoved { step, x: x.map(f64::from_bits), y };
            let mut written = String::new();
            prop_assert_eq!(event.write_payload(&mut written), "cursor.moved");
            prop_assert_eq!(written, crate::canonical::to_canonical_string(&event.parts().1));
        }

        #[test]
        fn decode_never_panics_on_any_text(text in any::<String>()) {
            let _ = decode_client_msg(&text);
        }

        #[test]
        fn decode_never_panics_on_json_like_text(
            text in r#"\{"type":"(hello|cursor|annotate|answer|ask|respond|ping|x)"(,"[a-z_]{1,9}":(-?[0-9]{1,22}(\.[0-9]e[0-9]{1,3})?|"[a-z ]{0,5}"|null|\[\[[0-9.,e-]{0,12}\]\]|\{\}|true)){0,4}\}"#
        ) {
            let _ = decode_client_msg(&text);
        }
    }

    /// Strings with what JSON escapes, and non-ASCII.
    fn any_text() -> impl Strategy<Value = String> {
        "[a-z \"\\\\é\n]{0,6}"
    }

    fn any_session_event() -> impl Strategy<Value = SessionEvent> {
        let coordinate = || proptest::option::of(any::<u64>().prop_map(f64::from_bits));
        let point = (any::<u64>(), any::<f64>()).prop_map(|(a, b)| [f64::from_bits(a), b]);
        let annotation = (
            any_text(),
            any_text(),
            proptest::option::of(any_text()),
            proptest::collection::vec(point, 0..3),
            proptest::option::of(any_text()),
            any::<i64>(),
        )
            .prop_map(|(id, kind, text, points, color, step)| Annotation {
                id,
                kind,
                text,
                points,
                color,
                step,
            });
        prop_oneof![
            Just(E::Started {}),
            Just(E::AnnotationsCleared {}),
            Just(E::Resumed {}),
            Just(E::Ended {}),
            (any::<i64>(), coordinate(), coordinate()).prop_map(|(step, x, y)| E::CursorMoved { step, x, y }),
            annotation.prop_map(E::AnnotationAdded),
            prop_oneof![Just(PauseReason::Teacher), Just(PauseReason::TeacherDisconnected)]
                .prop_map(|reason| E::Paused { reason }),
            (any_text(), any_text(), any_text()).prop_map(|(question_id, text, asker_id)| E::QuestionAsked {
                question_id,
                text,
                asker_id
            }),
            (any_text(), any_text()).prop_map(|(question_id, text)| E::QuestionAnswered { question_id, text }),
            (any_text(), any::<u32>(), any_text()).prop_map(|(question_id, choice, learner_id)| E::QuizResponded {
                question_id,
                choice,
                learner_id
            }),
            any::<u32>().prop_map(|step| E::ExplanationRequested { step }),
            (any::<u32>(), any_text(), any_text()).prop_map(|(step, job_id, text)| E::ExplanationReady {
                step,
                job_id,
                text
            }),
        ]
    }

    /// The fields of each type in declaration order (serde's order for arrays).
    fn declared(kind: &str) -> &'static [&'static str] {
        match kind {
            "cursor.moved" => &["step", "x", "y"],
            "session.paused" => &["reason"],
            "question.asked" => &["question_id", "text", "asker_id"],
            "question.answered" => &["question_id", "text"],
            "quiz.responded" => &["question_id", "choice", "learner_id"],
            "explanation.requested" => &["step"],
            "explanation.ready" => &["step", "job_id", "text"],
            "annotation.added" => &["id", "kind", "text", "points", "color", "step"],
            _ => &[],
        }
    }

    /// Payloads near the real ones: any JSON whose keys are mostly field names.
    fn any_payload() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (0u64..4).prop_map(Value::from),
            (u64::from(u32::MAX) - 1..u64::from(u32::MAX) + 2).prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            (-3i64..3).prop_map(|n| Value::from(n as f64)),
            any_text().prop_map(Value::from),
            prop_oneof![Just("teacher"), Just("teacher_disconnected"), Just("Teacher")].prop_map(Value::from),
        ];
        let key = prop_oneof![
            prop::sample::select(vec![
                "step",
                "x",
                "y",
                "reason",
                "question_id",
                "text",
                "asker_id",
                "choice",
                "learner_id",
                "job_id",
                "id",
                "kind",
                "points",
                "color",
            ])
            .prop_map(str::to_owned),
            "[a-z]{1,3}",
        ];
        leaf.prop_recursive(2, 24, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map(key.clone(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn event_of(kind: String, payload: Value) -> Event {
        Event {
            id: "e".into(),
            run_id: "r".into(),
            seq: 1,
            kind,
            payload,
            timestamp: 0,
            author_id: "a".into(),
            hash: String::new(),
        }
    }

    /// What serde's derive reads from the envelope's type and payload.
    fn derived_parse(ev: &Event) -> Option<SessionEvent> {
        let mut tagged = serde_json::Map::new();
        tagged.insert(ev.kind.clone(), ev.payload.clone());
        SessionEvent::deserialize(Value::Object(tagged)).ok()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn session_event_parts_are_what_the_derive_writes(event in any_session_event()) {
            let (kind, payload) = event.parts();
            prop_assert_eq!(kind.as_str(), event.kind());
            let mut tagged = serde_json::Map::new();
            tagged.insert(kind, payload);
            prop_assert_eq!(Value::Object(tagged), serde_json::to_value(&event).unwrap());
        }

        #[test]
        fn session_events_read_back_as_the_derive_reads_them(
            event in any_session_event(),
            as_array in any::<bool>(),
            pick in any::<usize>(),
            leave_out in any::<bool>(),
            other in any_payload(),
            kind in prop::sample::select(vec![
                "session.started", "cursor.moved", "annotation.added", "annotations.cleared", "session.paused",
                "session.resumed", "session.ended", "question.asked", "question.answered", "quiz.responded",
                "explanation.requested", "explanation.ready", "session.unknown",
            ]),
        ) {
            // A payload as written, by position, and any payload under any type.
            let (written_kind, written) = event.parts();
            let positional = match &written {
                Value::Object(m) => Value::Array(
                    declared(&written_kind).iter().map(|f| m.get(*f).cloned().unwrap_or(Value::Null)).collect(),
                ),
                other => other.clone(),
            };
            // One field of what was written changed to `other`, or left out.
            let mut mutated = written.clone();
            let names = declared(&written_kind);
            if let (Value::Object(m), false) = (&mut mutated, names.is_empty()) {
                let field = &names[pick % names.len()];
                if leave_out {
                    m.remove(*field);
                } else {
                    m.insert((*field).to_owned(), other.clone());
                }
            }
            let mut cases = vec![
                event_of(written_kind.clone(), written),
                event_of(written_kind.clone(), mutated),
                event_of(kind.to_owned(), other),
            ];
            if as_array {
                cases.push(event_of(written_kind, positional));
            }
            for ev in cases {
                let got = SessionEvent::parse(&ev);
                prop_assert_eq!(&got, &derived_parse(&ev), "{} {}", ev.kind, ev.payload);
            }
            // What was written reads back (a point that is not finite is
            // written as null, which an annotation cannot read).
            let back = SessionEvent::parse(&event_of(event.kind().to_owned(), event.parts().1));
            prop_assert!(back.is_some() || matches!(event, E::AnnotationAdded(_)));
            if let Some(back) = back {
                prop_assert_eq!(back.parts(), event.parts());
            }
        }
    }
}
