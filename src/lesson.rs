//! Lessons: immutable artifacts (metadata + a timeline of canvas operations +
//! a quiz with its answer key). Validation names the offending field path;
//! the sha256 of the canonical JSON names the content; frames are folds of
//! the timeline with the same reducer as run replay.

use crate::canonical::canonical_sha256;
use crate::decode::{self, Obj};
use crate::error::{AppError, AppResult};
use crate::grading::{validate_quiz, QuizItem};
use crate::run::{Canvas, Event};
use serde::Serialize;
use serde_json::{Map, Value};

pub const FORMAT: &str = "dropple.lesson/1";
pub const MAX_TIMELINE_ITEMS: usize = 10_000;
pub const DEFAULT_PASS_THRESHOLD: f64 = 0.7;

/// Timeline item types and the payload fields each requires (name, is_number).
const ITEM_RULES: &[(&str, &[(&str, bool)])] = &[
    ("element.added", &[("id", false), ("kind", false), ("x", true), ("y", true)]),
    ("element.updated", &[("id", false)]),
    ("element.moved", &[("id", false), ("x", true), ("y", true)]),
    ("element.removed", &[("id", false)]),
    ("edge.added", &[("id", false), ("from", false), ("to", false)]),
    ("edge.removed", &[("id", false)]),
    ("narration", &[("text", false)]),
    ("chapter", &[("title", false)]),
];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineItem {
    #[serde(rename = "type")]
    pub kind: String,
    pub payload: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Source {
    pub run_id: String,
    pub from_seq: u64,
    pub to_seq: u64,
}

/// What an author supplies; the server adds ids, version, author and time.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    pub title: String,
    pub summary: String,
    pub tags: Vec<String>,
    pub language: String,
    pub timeline: Vec<TimelineItem>,
    pub quiz: Vec<QuizItem>,
    pub pass_threshold: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Artifact {
    pub format: String,
    pub lesson_id: String,
    pub version: u32,
    pub title: String,
    pub summary: String,
    pub tags: Vec<String>,
    pub language: String,
    pub author_id: String,
    pub org: String,
    pub created_at: String,
    pub timeline: Vec<TimelineItem>,
    pub quiz: Vec<QuizItem>,
    pub pass_threshold: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    /// sha256 of the canonical JSON of every other field.
    #[serde(default)]
    pub sha256: String,
}

impl TimelineItem {
    pub fn from_value(value: &Value) -> Result<Self, String> {
        let o = Obj::of(value)?;
        let item = TimelineItem { kind: o.req("type", decode::text), payload: o.req("payload", decode::any) };
        o.done(item)
    }
}

impl Source {
    pub fn from_value(value: &Value) -> Result<Self, String> {
        let o = Obj::of(value)?;
        let source = Source {
            run_id: o.req("run_id", decode::text),
            from_seq: o.req("from_seq", decode::uint),
            to_seq: o.req("to_seq", decode::uint),
        };
        o.done(source)
    }
}

impl Artifact {
    pub fn from_value(value: &Value) -> Result<Self, String> {
        let o = Obj::of(value)?;
        let artifact = Artifact {
            format: o.req("format", decode::text),
            lesson_id: o.req("lesson_id", decode::text),
            version: o.req("version", decode::uint),
            title: o.req("title", decode::text),
            summary: o.req("summary", decode::text),
            tags: o.req("tags", decode::texts),
            language: o.req("language", decode::text),
            author_id: o.req("author_id", decode::text),
            org: o.req("org", decode::text),
            created_at: o.req("created_at", decode::text),
            timeline: o.req("timeline", |v| decode::list(v, TimelineItem::from_value)),
            quiz: o.req("quiz", |v| decode::list(v, QuizItem::from_value)),
            pass_threshold: o.req("pass_threshold", decode::number),
            source: o.opt("source", Source::from_value),
            sha256: o.opt("sha256", decode::text).unwrap_or_default(),
        };
        o.done(artifact)
    }
}

fn invalid(path: &str, why: &str) -> AppError {
    AppError::bad_request("invalid_field", format!("{path}: {why}"))
}

fn text(obj: &Map<String, Value>, key: &str, max: usize, required: bool) -> AppResult<String> {
    match obj.get(key) {
        None | Some(Value::Null) if !required => Ok(String::new()),
        Some(Value::String(s)) if s.chars().count() <= max && (!required || !s.trim().is_empty()) => Ok(s.clone()),
        Some(Value::String(_)) => Err(invalid(key, &format!("must be 1..{max} characters"))),
        _ => Err(invalid(key, "must be a string")),
    }
}

pub fn validate_timeline(items: &Value, path: &str) -> AppResult<Vec<TimelineItem>> {
    let arr = items.as_array().ok_or_else(|| invalid(path, "must be an array"))?;
    if arr.len() > MAX_TIMELINE_ITEMS {
        return Err(AppError::too_large(format!("{path}: at most {MAX_TIMELINE_ITEMS} items")));
    }
    // A loop, not `map(..).collect::<Result<..>>()`: one copy of the code
    // rather than the iterator adapters' instances around it.
    let mut items = Vec::with_capacity(arr.len());
    for (i, item) in arr.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let kind = item.get("type").and_then(Value::as_str).unwrap_or_default();
        let rules = ITEM_RULES
            .iter()
            .find(|(t, _)| *t == kind)
            .map(|(_, r)| *r)
            .ok_or_else(|| invalid(&format!("{at}.type"), "must be one of element.added, element.updated, element.moved, element.removed, edge.added, edge.removed, narration, chapter"))?;
        let payload = item
            .get("payload")
            .filter(|p| p.is_object())
            .ok_or_else(|| invalid(&format!("{at}.payload"), "must be an object"))?;
        if payload.to_string().len() > crate::run::MAX_PAYLOAD_BYTES {
            return Err(AppError::too_large(format!("{at}.payload: too large")));
        }
        for (field, numeric) in rules {
            let v = payload.get(*field);
            let ok = if *numeric {
                v.and_then(Value::as_f64).is_some_and(f64::is_finite)
            } else {
                v.and_then(Value::as_str).is_some_and(|s| !s.is_empty() && s.len() <= 10_000)
            };
            if !ok {
                let want = if *numeric { "a number" } else { "a non-empty string" };
                return Err(invalid(&format!("{at}.payload.{field}"), &format!("must be {want}")));
            }
        }
        if kind == "element.added" || kind == "element.updated" {
            match payload.get(ASSET_FIELD) {
                None => {}
                Some(Value::Null) if kind == "element.updated" => {}
                Some(v) if v.as_str().is_some_and(is_sha256) => {}
                Some(_) => {
                    return Err(invalid(
                        &format!("{at}.payload.{ASSET_FIELD}"),
                        "must be the sha256 of an uploaded asset (64 lowercase hex digits)",
                    ))
                }
            }
        }
        items.push(TimelineItem { kind: kind.to_owned(), payload: payload.clone() });
    }
    Ok(items)
}

/// The element field that references a media asset (`POST /v1/assets`) by
/// its sha256, e.g. an image element `{"kind": "image", "asset": "9f86…"}`.
pub const ASSET_FIELD: &str = "asset";

/// 64 lowercase hex digits.
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Every asset a timeline references, first reference first, each once:
/// (field path such as `timeline[3].payload.asset`, sha256).
pub fn asset_refs(timeline: &[TimelineItem]) -> Vec<(String, String)> {
    let mut refs: Vec<(String, String)> = Vec::new();
    for (i, item) in timeline.iter().enumerate() {
        if item.kind != "element.added" && item.kind != "element.updated" {
            continue;
        }
        if let Some(sha) = item.payload.get(ASSET_FIELD).and_then(Value::as_str).filter(|s| is_sha256(s)) {
            if !refs.iter().any(|(_, seen)| seen == sha) {
                refs.push((format!("timeline[{i}].payload.{ASSET_FIELD}"), sha.to_owned()));
            }
        }
    }
    refs
}

/// Validate a lesson body (`POST /v1/lessons`, a new version, or an import).
pub fn validate_draft(body: &Value) -> AppResult<Draft> {
    let obj = body.as_object().ok_or_else(|| invalid("body", "must be a JSON object"))?;
    let title = text(obj, "title", 200, true)?;
    let summary = text(obj, "summary", 5_000, false)?;
    let language = match obj.get("language") {
        None | Some(Value::Null) => "en".to_owned(),
        Some(Value::String(s))
            if (2..=16).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
        {
            s.clone()
        }
        Some(_) => return Err(invalid("language", "must be a BCP 47 tag such as en or pt-BR")),
    };
    let tags = match obj.get("tags") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(t)) if t.len() <= 20 => t
            .iter()
            .enumerate()
            .map(|(i, tag)| {
                tag.as_str()
                    .map(|s| s.trim().to_lowercase())
                    .filter(|s| !s.is_empty() && s.chars().count() <= 40)
                    .ok_or_else(|| invalid(&format!("tags[{i}]"), "must be a string of 1..40 characters"))
            })
            .collect::<AppResult<Vec<_>>>()?,
        Some(_) => return Err(invalid("tags", "must be an array of at most 20 strings")),
    };
    let timeline = validate_timeline(obj.get("timeline").unwrap_or(&Value::Null), "timeline")?;
    let quiz: Vec<QuizItem> = match obj.get("quiz") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            if items.len() > 200 {
                return Err(AppError::too_large("quiz: at most 200 questions"));
            }
            let mut quiz = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                quiz.push(QuizItem::from_value(item).map_err(|e| invalid(&format!("quiz[{i}]"), &e))?);
            }
            quiz
        }
        Some(_) => return Err(invalid("quiz", "must be an array")),
    };
    validate_quiz(&quiz).map_err(|(path, why)| invalid(&path, &why))?;
    if let Some(i) = quiz.iter().position(|q| q.step.is_some_and(|s| s as usize > timeline.len())) {
        return Err(invalid(&format!("quiz[{i}].step"), &format!("must be within 0..={}", timeline.len())));
    }
    let pass_threshold = match obj.get("pass_threshold") {
        None | Some(Value::Null) => DEFAULT_PASS_THRESHOLD,
        Some(v) => v
            .as_f64()
            .filter(|t| (0.0..=1.0).contains(t))
            .ok_or_else(|| invalid("pass_threshold", "must be a number from 0 to 1"))?,
    };
    Ok(Draft { title, summary, tags, language, timeline, quiz, pass_threshold })
}

impl Artifact {
    pub fn new(
        draft: Draft,
        lesson_id: &str,
        version: u32,
        author_id: &str,
        org: &str,
        created_at: &str,
        source: Option<Source>,
    ) -> Artifact {
        let mut a = Artifact {
            format: FORMAT.into(),
            lesson_id: lesson_id.into(),
            version,
            title: draft.title,
            summary: draft.summary,
            tags: draft.tags,
            language: draft.language,
            author_id: author_id.into(),
            org: org.into(),
            created_at: created_at.into(),
            timeline: draft.timeline,
            quiz: draft.quiz,
            pass_threshold: draft.pass_threshold,
            source,
            sha256: String::new(),
        };
        a.sha256 = a.content_hash();
        a
    }

    /// The hash of everything but the hash itself.
    pub fn content_hash(&self) -> String {
        let mut v = crate::json_value::serialized(self);
        if let Some(o) = v.as_object_mut() {
            o.remove("sha256");
        }
        canonical_sha256(&v)
    }

    /// The artifact as learners see it: the answer key is gone.
    pub fn without_answer_key(&self) -> Value {
        let mut v = crate::json_value::serialized(self);
        if let Some(quiz) = v.get_mut("quiz").and_then(Value::as_array_mut) {
            for q in quiz {
                if let Some(o) = q.as_object_mut() {
                    o.remove("answer");
                }
            }
        }
        v
    }

    /// Frame `k`: the canvas after the first `k` items; `None` past the end.
    pub fn frame(&self, k: usize) -> Option<Canvas> {
        let items = self.timeline.get(..k)?;
        let mut canvas = Canvas::default();
        for item in items {
            canvas.apply(&item.kind, &item.payload);
        }
        Some(canvas)
    }
}

/// `{"lesson_id", "version"}` in a request body: which exact version a
/// session, attempt or listing is about.
pub fn parse_version_ref(body: &Value) -> AppResult<(String, u32)> {
    let lesson_id = body
        .get("lesson_id")
        .and_then(Value::as_str)
        .filter(|id| crate::identity::is_valid_id(id))
        .ok_or_else(|| invalid("lesson_id", "must be a lesson id"))?;
    let version = body
        .get("version")
        .and_then(Value::as_u64)
        .filter(|v| (1..=u64::from(u32::MAX)).contains(v))
        .ok_or_else(|| invalid("version", "must be a positive integer"))?;
    Ok((lesson_id.to_owned(), version as u32))
}

/// Export: a recorded run's canvas events become a timeline. Events the
/// canvas does not know (cursor moves, session control) are left out.
pub fn timeline_from_events(events: &[Event]) -> Vec<TimelineItem> {
    events
        .iter()
        .filter(|e| ITEM_RULES.iter().any(|(t, _)| *t == e.kind))
        .map(|e| TimelineItem { kind: e.kind.clone(), payload: e.payload.clone() })
        .collect()
}

/// An imported artifact may carry its own sha256: if so it must match.
pub fn check_import_hash(body: &Value, draft: &Draft) -> AppResult<()> {
    let Some(claimed) = body.get("sha256").and_then(Value::as_str) else { return Ok(()) };
    let Ok(original) = Artifact::from_value(body) else {
        return Err(AppError::unprocessable(
            "sha256_unverifiable",
            "sha256: given, but the artifact lacks the fields it covers",
        ));
    };
    if original.content_hash() != claimed || original.timeline != draft.timeline {
        return Err(AppError::unprocessable("sha256_mismatch", "sha256: does not match the artifact's content"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body() -> Value {
        json!({
            "title": "Fractions", "summary": "Halves", "tags": ["Math"],
            "timeline": [
                {"type": "element.added", "payload": {"id": "a", "kind": "box", "x": 1, "y": 2}},
                {"type": "narration", "payload": {"text": "A half"}},
                {"type": "element.moved", "payload": {"id": "a", "x": 5, "y": 6}}
            ],
            "quiz": [{"id": "q1", "prompt": "1/2 + 1/2?", "choices": ["1", "2"], "answer": 0}]
        })
    }

    fn artifact() -> Artifact {
        Artifact::new(validate_draft(&body()).unwrap(), "l1", 1, "ana", "acme", "2026-01-01T00:00:00.000Z", None)
    }

    #[test]
    fn version_refs() {
        assert_eq!(parse_version_ref(&json!({"lesson_id": "l1", "version": 2})).unwrap(), ("l1".into(), 2));
        for (b, field) in [
            (json!({"version": 1}), "lesson_id"),
            (json!({"lesson_id": "../x", "version": 1}), "lesson_id"),
            (json!({"lesson_id": "l", "version": 0}), "version"),
            (json!({"lesson_id": "l", "version": 1e10}), "version"),
        ] {
            assert!(parse_version_ref(&b).unwrap_err().public_message().starts_with(field));
        }
    }

    #[test]
    fn same_content_same_sha256() {
        assert_eq!(artifact().sha256, artifact().sha256);
        let mut other = artifact();
        other.title = "Other".into();
        assert_ne!(other.content_hash(), artifact().sha256);
        assert_eq!(artifact().content_hash(), artifact().sha256);
    }

    #[test]
    fn frames_fold_the_timeline() {
        let a = artifact();
        assert_eq!(a.frame(0).unwrap(), Canvas::default());
        assert_eq!(a.frame(1).unwrap().elements["a"]["x"], json!(1));
        assert_eq!(a.frame(3).unwrap().elements["a"]["x"], json!(5));
        assert!(a.frame(4).is_none());
    }

    #[test]
    fn a_quiz_step_is_kept_and_an_absent_one_changes_no_hash() {
        let mut b = body();
        b["quiz"][0]["step"] = json!(2);
        let a = Artifact::new(validate_draft(&b).unwrap(), "l1", 1, "ana", "acme", "2026-01-01T00:00:00.000Z", None);
        assert_eq!(a.without_answer_key()["quiz"][0]["step"], json!(2));
        assert!(serde_json::to_value(artifact()).unwrap()["quiz"][0].get("step").is_none());
    }

    #[test]
    fn answer_key_hidden() {
        let v = artifact().without_answer_key();
        assert!(v["quiz"][0].get("answer").is_none());
        assert_eq!(v["quiz"][0]["prompt"], json!("1/2 + 1/2?"));
    }

    #[test]
    fn errors_name_the_field_path() {
        let cases = [
            (json!({"summary": "x", "timeline": []}), "title"),
            (
                json!({"title": "t", "timeline": [{"type": "element.added", "payload": {"id": "a", "kind": "box", "x": "1", "y": 2}}]}),
                "timeline[0].payload.x",
            ),
            (json!({"title": "t", "timeline": [{"type": "nope", "payload": {}}]}), "timeline[0].type"),
            (json!({"title": "t", "timeline": [], "pass_threshold": 2}), "pass_threshold"),
            (json!({"title": "t", "timeline": [], "tags": [1]}), "tags[0]"),
            (json!({"title": "t"}), "timeline"),
            (
                json!({"title": "t", "timeline": [], "quiz": [{"id": "q", "prompt": "p", "choices": ["a", "b"], "answer": 0, "step": 1}]}),
                "quiz[0].step",
            ),
        ];
        for (b, path) in cases {
            let e = validate_draft(&b).unwrap_err();
            assert!(e.public_message().starts_with(path), "{} vs {path}", e.public_message());
        }
    }

    #[test]
    fn import_round_trip_checks_the_hash() {
        let a = artifact();
        let exported = serde_json::to_value(&a).unwrap();
        let draft = validate_draft(&exported).unwrap();
        assert!(check_import_hash(&exported, &draft).is_ok());
        let mut tampered = exported.clone();
        tampered["title"] = json!("Changed");
        let d2 = validate_draft(&tampered).unwrap();
        assert_eq!(check_import_hash(&tampered, &d2).unwrap_err().code(), "sha256_mismatch");
    }

    #[test]
    fn asset_references_are_well_formed_and_listed() {
        let sha = "ab".repeat(32);
        let body = |asset: Value| {
            json!({"title": "t", "timeline": [
                {"type": "narration", "payload": {"text": "hi"}},
                {"type": "element.added", "payload": {"id": "a", "kind": "image", "x": 1, "y": 2, "asset": asset}},
            ]})
        };
        let draft = validate_draft(&body(json!(sha))).unwrap();
        assert_eq!(asset_refs(&draft.timeline), vec![("timeline[1].payload.asset".to_owned(), sha.clone())]);
        for bad in [json!("AB".repeat(32)), json!("ab"), json!(7), json!(null), json!(format!("../{sha}"))] {
            let e = validate_draft(&body(bad.clone())).unwrap_err();
            assert_eq!(e.status(), 400, "{bad}");
            assert!(e.body().to_string().contains("timeline[1].payload.asset"), "{e:?}");
        }
        // An update may clear it; repeated references are listed once.
        let twice = json!({"title": "t", "timeline": [
            {"type": "element.added", "payload": {"id": "a", "kind": "image", "x": 1, "y": 2, "asset": sha}},
            {"type": "element.updated", "payload": {"id": "a", "asset": null}},
            {"type": "element.updated", "payload": {"id": "a", "asset": sha}},
        ]});
        assert_eq!(asset_refs(&validate_draft(&twice).unwrap().timeline).len(), 1);
    }
}
