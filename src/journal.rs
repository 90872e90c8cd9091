//! Events in words: one sentence per timeline item or event envelope, as a
//! person says it ("Box “Leaf” added", "Moved to step 2"). The replay's event
//! list, the author's timeline and the teacher's step thumbnails all read
//! these through the browser build, so an event is said one way everywhere.
//!
//! Elements are named by the text they have at that item: walking the list
//! once, `element.added` records each element's kind and its label (else its
//! text) and `element.updated` renames it. An element without either is "a
//! <kind>"; an id never seen is "an element".

use serde_json::{Map, Value};

/// One sentence per `(type, payload)` item, in order.
pub fn describe(items: &[(String, Value)]) -> Vec<String> {
    // Element id → `{"kind", "label"}`: what it is called at this item. A
    // serde_json map rather than a map of our own type: the browser core
    // already carries its code.
    let mut names = Map::new();
    items.iter().map(|(kind, payload)| sentence(&mut names, kind, payload)).collect()
}

fn text<'a>(p: &'a Value, key: &str) -> Option<&'a str> {
    p.get(key).and_then(Value::as_str)
}

/// The label, else the text: what the canvas shows on an element.
fn shown(p: &Value) -> Option<&str> {
    text(p, "label").or_else(|| text(p, "text")).filter(|t| !t.is_empty())
}

/// A number of the payload as written, "?" when there is none.
fn number(p: &Value, key: &str) -> String {
    match p.get(key) {
        Some(Value::Number(n)) => n.to_string(),
        _ => "?".into(),
    }
}

/// `Label: “text”`, or `Label` alone when the payload has no such text.
fn quoting(label: &str, p: &Value, key: &str) -> String {
    match text(p, key) {
        Some(t) => format!("{label}: “{t}”"),
        None => label.into(),
    }
}

/// The first letter in capital (ASCII only: Unicode case tables would weigh
/// on the browser core, and kinds and types are ASCII words).
fn capital(s: &str) -> String {
    let mut s = s.to_owned();
    if let Some(first) = s.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    s
}

/// An element's name mid-sentence, from its kind and label or text:
/// `box “Leaf”`, `a dot`, `an image`.
fn phrase(element: &Value) -> String {
    let kind = text(element, "kind").filter(|k| !k.is_empty()).unwrap_or("element");
    match shown(element) {
        Some(t) => format!("{kind} “{t}”"),
        None if matches!(kind.as_bytes().first(), Some(b'a' | b'e' | b'i' | b'o' | b'u')) => format!("an {kind}"),
        None => format!("a {kind}"),
    }
}

/// The name of the element whose id is at `key` of the payload.
fn named(names: &Map<String, Value>, p: &Value, key: &str) -> String {
    match text(p, key).and_then(|id| names.get(id)) {
        Some(element) => phrase(element),
        None => "an element".into(),
    }
}

fn sentence(names: &mut Map<String, Value>, kind: &str, p: &Value) -> String {
    match kind {
        "session.started" => "Class started".into(),
        "session.resumed" => "Class resumed".into(),
        "session.ended" => "Class ended".into(),
        "session.paused" if text(p, "reason") == Some("teacher_disconnected") => {
            "Paused: the teacher lost the connection".into()
        }
        "session.paused" => "Paused by the teacher".into(),
        "cursor.moved" => format!("Moved to step {}", number(p, "step")),
        "annotation.added" => "Drew on the canvas".into(),
        "annotations.cleared" => "Cleared the drawings".into(),
        "question.asked" => quoting("Question asked", p, "text"),
        "question.answered" => quoting("Question answered", p, "text"),
        "quiz.responded" => format!("Quiz answer from {}", text(p, "learner_id").unwrap_or("a learner")),
        "explanation.requested" => format!("Explanation asked for step {}", number(p, "step")),
        "explanation.ready" => format!("Explanation ready for step {}", number(p, "step")),
        "element.added" => {
            let mut element = Map::new();
            for (field, value) in [("kind", text(p, "kind")), ("label", shown(p))] {
                if let Some(value) = value {
                    element.insert(field.into(), value.into());
                }
            }
            let element = Value::Object(element);
            let said = format!("{} added", capital(&phrase(&element)));
            if let Some(id) = text(p, "id") {
                names.insert(id.into(), element);
            }
            said
        }
        "element.moved" => format!("{} moved", capital(&named(names, p, "id"))),
        "element.removed" => format!("{} removed", capital(&named(names, p, "id"))),
        "element.updated" => {
            let mut said = capital(&named(names, p, "id"));
            let renamed = shown(p);
            if let (Some(t), Some(Value::Object(element))) = (renamed, text(p, "id").and_then(|id| names.get_mut(id))) {
                element.insert("label".into(), t.into());
            }
            let has = |a: &str, b: &str| p.get(a).is_some() || p.get(b).is_some();
            let mut sep = " ";
            let mut add = |what: &str| {
                said.push_str(sep);
                said.push_str(what);
                sep = ", ";
            };
            if let Some(t) = renamed {
                add(&format!("renamed “{t}”"));
            }
            if has("w", "h") {
                add("resized");
            }
            if has("x", "y") {
                add("moved");
            }
            if sep == " " {
                said.push_str(" changed");
            }
            said
        }
        "edge.added" => format!("{} connected to {}", capital(&named(names, p, "from")), named(names, p, "to")),
        "edge.removed" => "Connection removed".into(),
        "narration" => quoting("Narration", p, "text"),
        "chapter" => match text(p, "title") {
            Some(t) => format!("Chapter “{t}” begins"),
            None => "A chapter begins".into(),
        },
        "attempt.answered" => {
            let choice =
                p.get("choice").and_then(Value::as_u64).map_or("?".into(), |c| c.saturating_add(1).to_string());
            format!("Answered {}: choice {choice}", text(p, "question_id").unwrap_or("a question"))
        }
        "attempt.submitted" => {
            let n = number(p, "answers");
            format!("Submitted {n} answer{}", if n == "1" { "" } else { "s" })
        }
        "attempt.graded" => {
            let score = p.get("score").and_then(Value::as_f64).unwrap_or(0.0);
            let passed = p.get("passed").and_then(Value::as_bool).unwrap_or(false);
            // A whole percent, rounded half up: no float formatting in the browser core.
            format!("Graded: {}%, {}", (score * 100.0 + 0.5) as i64, if passed { "passed" } else { "not passed" })
        }
        // A type this module does not know, said as its words: `x_custom.thing` → "X custom thing".
        other => {
            let words: String = other.chars().map(|c| if c == '.' || c == '_' { ' ' } else { c }).collect();
            if words.bytes().all(|b| b == b' ') {
                "Something happened".into()
            } else {
                capital(&words)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn said(items: &[(&str, Value)]) -> Vec<String> {
        describe(&items.iter().map(|(k, p)| (k.to_string(), p.clone())).collect::<Vec<_>>())
    }

    #[test]
    fn elements_are_named_by_their_text_at_that_item() {
        let words = said(&[
            ("element.added", json!({"id": "s", "kind": "dot", "text": "Sun"})),
            ("element.added", json!({"id": "p", "kind": "box", "label": "Photosynthesis", "text": "ignored"})),
            ("edge.added", json!({"id": "e", "from": "s", "to": "p"})),
            ("element.updated", json!({"id": "p", "label": "Leaf", "w": 10, "x": 3})),
            ("element.moved", json!({"id": "p", "x": 1, "y": 2})),
            ("element.updated", json!({"id": "p", "color": "red"})),
            ("element.removed", json!({"id": "s"})),
            ("edge.removed", json!({"id": "e"})),
        ]);
        assert_eq!(
            words,
            [
                "Dot “Sun” added",
                "Box “Photosynthesis” added",
                "Dot “Sun” connected to box “Photosynthesis”",
                "Box “Photosynthesis” renamed “Leaf”, resized, moved",
                "Box “Leaf” moved",
                "Box “Leaf” changed",
                "Dot “Sun” removed",
                "Connection removed",
            ]
        );
    }

    #[test]
    fn an_element_without_text_is_a_kind_and_an_unknown_id_is_an_element() {
        let words = said(&[
            ("element.added", json!({"id": "d", "kind": "dot"})),
            ("element.added", json!({"id": "i", "kind": "image", "label": ""})),
            ("element.added", json!({"id": "n"})),
            ("element.moved", json!({"id": "d", "x": 1})),
            ("element.updated", json!({"id": "zz", "h": 4})),
            ("edge.added", json!({"from": "i", "to": "nope"})),
            ("element.updated", json!({"id": "d", "text": "Sun"})),
            ("element.removed", json!({"id": "d"})),
        ]);
        assert_eq!(
            words,
            [
                "A dot added",
                "An image added",
                "An element added",
                "A dot moved",
                "An element resized",
                "An image connected to an element",
                "A dot renamed “Sun”",
                "Dot “Sun” removed",
            ]
        );
    }

    #[test]
    fn session_quiz_and_attempt_events() {
        let words = said(&[
            ("session.started", json!({})),
            ("cursor.moved", json!({"step": 2, "x": null, "y": null})),
            ("annotation.added", json!({"id": "a"})),
            ("annotations.cleared", json!({})),
            ("session.paused", json!({"reason": "teacher"})),
            ("session.paused", json!({"reason": "teacher_disconnected"})),
            ("session.resumed", json!({})),
            ("question.asked", json!({"question_id": "q", "text": "Why?", "asker_id": "lea"})),
            ("question.answered", json!({"question_id": "q", "text": "Because."})),
            ("quiz.responded", json!({"question_id": "q1", "choice": 0, "learner_id": "lea"})),
            ("explanation.requested", json!({"step": 3})),
            ("explanation.ready", json!({"step": 3, "job_id": "j", "text": "t"})),
            ("narration", json!({"text": "Plants need light."})),
            ("chapter", json!({"title": "Halves"})),
            ("session.ended", json!({})),
            ("attempt.answered", json!({"question_id": "q2", "choice": 1})),
            ("attempt.submitted", json!({"answers": 1})),
            ("attempt.submitted", json!({"answers": 2})),
            ("attempt.graded", json!({"score": 0.666, "passed": false})),
            ("attempt.graded", json!({"score": 1.0, "passed": true})),
        ]);
        assert_eq!(
            words,
            [
                "Class started",
                "Moved to step 2",
                "Drew on the canvas",
                "Cleared the drawings",
                "Paused by the teacher",
                "Paused: the teacher lost the connection",
                "Class resumed",
                "Question asked: “Why?”",
                "Question answered: “Because.”",
                "Quiz answer from lea",
                "Explanation asked for step 3",
                "Explanation ready for step 3",
                "Narration: “Plants need light.”",
                "Chapter “Halves” begins",
                "Class ended",
                "Answered q2: choice 2",
                "Submitted 1 answer",
                "Submitted 2 answers",
                "Graded: 67%, not passed",
                "Graded: 100%, passed",
            ]
        );
    }

    #[test]
    fn unknown_types_and_missing_fields_still_make_a_sentence() {
        let words = said(&[
            ("x_custom.thing_2", json!({})),
            ("", json!(null)),
            ("narration", json!(null)),
            ("chapter", json!([1])),
            ("cursor.moved", json!({"step": "two"})),
            ("attempt.answered", json!({"choice": -1})),
            ("question.asked", json!({"text": 5})),
        ]);
        assert_eq!(
            words,
            [
                "X custom thing 2",
                "Something happened",
                "Narration",
                "A chapter begins",
                "Moved to step ?",
                "Answered a question: choice ?",
                "Question asked",
            ]
        );
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            prop_oneof![Just("a".to_string()), Just(String::new()), Just("teacher_disconnected".into()), ".*"]
                .prop_map(Value::from),
        ];
        leaf.prop_recursive(2, 8, 4, |inner| prop::collection::vec(inner, 0..3).prop_map(Value::from))
    }

    fn arb_payload() -> impl Strategy<Value = Value> {
        let key = prop_oneof![
            Just("id"),
            Just("kind"),
            Just("label"),
            Just("text"),
            Just("from"),
            Just("to"),
            Just("step"),
            Just("reason"),
            Just("choice"),
            Just("answers"),
            Just("score"),
            Just("passed"),
            Just("title"),
            Just("w"),
            Just("x"),
        ];
        let id = prop_oneof![Just("a"), Just("b")].prop_map(Value::from);
        prop_oneof![
            arb_value(),
            prop::collection::btree_map(key, prop_oneof![id, arb_value()], 0..6)
                .prop_map(|m| { Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()) }),
        ]
    }

    const TYPES: &[&str] = &[
        "session.started",
        "session.paused",
        "session.resumed",
        "session.ended",
        "cursor.moved",
        "annotation.added",
        "annotations.cleared",
        "question.asked",
        "question.answered",
        "quiz.responded",
        "explanation.requested",
        "explanation.ready",
        "element.added",
        "element.moved",
        "element.updated",
        "element.removed",
        "edge.added",
        "edge.removed",
        "narration",
        "chapter",
        "attempt.answered",
        "attempt.submitted",
        "attempt.graded",
    ];

    proptest! {
        #[test]
        fn one_nonempty_sentence_per_item_and_never_a_panic(
            items in prop::collection::vec(
                (prop_oneof![prop::sample::select(TYPES).prop_map(String::from), ".{0,12}"], arb_payload()),
                0..40,
            )
        ) {
            let words = describe(&items);
            prop_assert_eq!(words.len(), items.len());
            prop_assert!(words.iter().all(|w| w.bytes().any(|b| b != b' ')), "no blank sentence");
        }
    }
}
