//! Deterministic grading of quiz attempts against a lesson's answer key.
//! Pure: the same items and answers always give the same grade.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::decode::{self, Obj};

/// One multiple-choice question. `answer` is the key: a choice index
/// (number) or the exact text of one of the choices.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuizItem {
    pub id: String,
    pub prompt: String,
    pub choices: Vec<String>,
    pub answer: Value,
    /// The timeline step at which the lesson asks it (players show it once
    /// the cursor reaches that step); absent: at the end of the lesson.
    /// Skipped when absent, so artifacts written before it hash the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u32>,
}

impl QuizItem {
    pub fn from_value(value: &Value) -> Result<Self, String> {
        let o = Obj::of(value)?;
        let item = QuizItem {
            id: o.req("id", decode::text),
            prompt: o.req("prompt", decode::text),
            choices: o.req("choices", decode::texts),
            answer: o.req("answer", decode::any),
            step: o.opt("step", decode::uint),
        };
        o.done(item)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grade {
    /// correct / total, in 0..=1; an empty quiz scores 1.0.
    pub score: f64,
    pub passed: bool,
    pub correct: u32,
    pub total: u32,
    /// (question id, answered correctly), in quiz order.
    pub per_question: Vec<(String, bool)>,
}

/// Resolve `value` (a choice index or the exact text of a choice) against
/// `choices`. Index numbers must be non-negative integers in range.
fn resolve(choices: &[String], value: &Value) -> Option<usize> {
    match value {
        Value::Number(n) => {
            let index = match (n.as_u64(), n.as_f64()) {
                (Some(u), _) => u,
                (None, Some(f)) if f >= 0.0 && f.fract() == 0.0 && f < 1e15 => f as u64,
                _ => return None,
            };
            let index = usize::try_from(index).ok()?;
            (index < choices.len()).then_some(index)
        }
        Value::String(text) => choices.iter().position(|c| c == text),
        _ => None,
    }
}

/// The index of the correct choice, if the item's key resolves.
pub fn answer_index(item: &QuizItem) -> Option<usize> {
    resolve(&item.choices, &item.answer)
}

/// A learner's answer (a choice index or the exact text of a choice) as a
/// choice index; `None` if it names no choice of this item.
pub fn normalize_answer(item: &QuizItem, answer: &Value) -> Option<usize> {
    resolve(&item.choices, answer)
}

/// One question of a graded attempt, for the learner who submitted it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuestionFeedback {
    pub question_id: String,
    /// The learner's choice; `None` when left unanswered.
    pub choice: Option<usize>,
    pub correct: bool,
    /// The key, shown only once the attempt passed: a learner who failed
    /// tries again without having been handed the answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<usize>,
}

/// Per-question feedback on a graded attempt, in quiz order.
pub fn feedback(items: &[QuizItem], answers: &BTreeMap<String, usize>, grade: &Grade) -> Vec<QuestionFeedback> {
    items
        .iter()
        .zip(&grade.per_question)
        .map(|(item, (_, correct))| QuestionFeedback {
            question_id: item.id.clone(),
            choice: answers.get(&item.id).copied(),
            correct: *correct,
            answer: if grade.passed { answer_index(item) } else { None },
        })
        .collect()
}

/// Check a quiz as authored: ids unique and non-empty, at least two
/// choices, and an answer key that resolves to one of them.
/// The error is (field path such as `quiz[2].answer`, message).
pub fn validate_quiz(items: &[QuizItem]) -> Result<(), (String, String)> {
    // Each id with where it first was (a map of the type grading already
    // uses for answers: no set's B-tree code in the wasm).
    let mut seen = BTreeMap::<String, usize>::new();
    for (i, item) in items.iter().enumerate() {
        let field = |name: &str| format!("quiz[{i}].{name}");
        if item.id.trim().is_empty() {
            return Err((field("id"), "must not be empty".into()));
        }
        if seen.insert(item.id.clone(), i).is_some() {
            return Err((field("id"), format!("duplicate question id {:?}", item.id)));
        }
        if item.choices.len() < 2 {
            return Err((field("choices"), "needs at least 2 choices".into()));
        }
        if answer_index(item).is_none() {
            return Err((field("answer"), "must be a choice index or the exact text of a choice".into()));
        }
    }
    Ok(())
}

/// Grade `answers` (question id → chosen index) against the key. Missing
/// answers, answers to unknown ids and items whose key does not resolve
/// count as incorrect. `passed` is `score >= pass_threshold`.
pub fn grade(items: &[QuizItem], answers: &BTreeMap<String, usize>, pass_threshold: f64) -> Grade {
    let per_question: Vec<(String, bool)> = items
        .iter()
        .map(|item| {
            let ok = match (answer_index(item), answers.get(&item.id)) {
                (Some(key), Some(given)) => key == *given,
                _ => false,
            };
            (item.id.clone(), ok)
        })
        .collect();
    let total = u32::try_from(per_question.len()).unwrap_or(u32::MAX);
    let correct = u32::try_from(per_question.iter().filter(|(_, ok)| *ok).count()).unwrap_or(0);
    let score = if total == 0 { 1.0 } else { (f64::from(correct) / f64::from(total)).clamp(0.0, 1.0) };
    Grade { score, passed: score >= pass_threshold, correct, total, per_question }
}

/// Answer events one attempt may hold per quiz question. Answers can be
/// changed (the latest counts), but not without end: the attempt's run is
/// the evidence a certificate hashes, so it stays bounded.
pub const MAX_ANSWERS_PER_QUESTION: u64 = 20;

/// Answer events allowed in an attempt of a quiz with `questions` items.
pub fn answer_event_limit(questions: usize) -> u64 {
    (questions as u64).max(1).saturating_mul(MAX_ANSWERS_PER_QUESTION)
}

/// The answers an attempt's events record: the latest `attempt.answered`
/// choice per question, counting only events before the first
/// `attempt.submitted` (answers close at submission). Events in seq order.
pub fn answers_from_events(events: &[crate::run::Event]) -> BTreeMap<String, usize> {
    let mut answers = BTreeMap::new();
    for e in events {
        match e.kind.as_str() {
            "attempt.submitted" => break,
            "attempt.answered" => {
                let question = e.payload.get("question_id").and_then(Value::as_str);
                let choice = e.payload.get("choice").and_then(Value::as_u64).and_then(|c| usize::try_from(c).ok());
                if let (Some(q), Some(c)) = (question, choice) {
                    answers.insert(q.to_owned(), c);
                }
            }
            _ => {}
        }
    }
    answers
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn item(id: &str, answer: Value) -> QuizItem {
        QuizItem {
            id: id.into(),
            prompt: format!("question {id}"),
            choices: vec!["red".into(), "green".into(), "blue".into()],
            answer,
            step: None,
        }
    }

    fn answers(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn answers_by_index_or_text() {
        let q = item("q1", json!("green"));
        assert_eq!(answer_index(&q), Some(1));
        assert_eq!(normalize_answer(&q, &json!(2)), Some(2));
        assert_eq!(normalize_answer(&q, &json!(2.0)), Some(2));
        assert_eq!(normalize_answer(&q, &json!("blue")), Some(2));
        assert_eq!(normalize_answer(&q, &json!("Blue")), None);
        assert_eq!(normalize_answer(&q, &json!(3)), None);
        assert_eq!(normalize_answer(&q, &json!(-1)), None);
        assert_eq!(normalize_answer(&q, &json!(1.5)), None);
        assert_eq!(normalize_answer(&q, &json!(null)), None);
        assert_eq!(normalize_answer(&q, &json!([1])), None);
    }

    #[test]
    fn validation_names_the_field() {
        assert_eq!(validate_quiz(&[]), Ok(()));
        assert_eq!(validate_quiz(&[item("a", json!(0)), item("b", json!("blue"))]), Ok(()));
        let err = |items: &[QuizItem]| validate_quiz(items).unwrap_err().0;
        assert_eq!(err(&[item("a", json!(0)), item(" ", json!(0))]), "quiz[1].id");
        assert_eq!(err(&[item("a", json!(0)), item("a", json!(1))]), "quiz[1].id");
        let mut few = item("c", json!(0));
        few.choices.truncate(1);
        assert_eq!(err(&[item("a", json!(0)), item("b", json!(1)), few]), "quiz[2].choices");
        assert_eq!(err(&[item("a", json!(3))]), "quiz[0].answer");
        assert_eq!(err(&[item("a", json!("purple"))]), "quiz[0].answer");
        assert_eq!(err(&[item("a", json!(true))]), "quiz[0].answer");
    }

    #[test]
    fn grading_counts_correct_answers() {
        let quiz = [item("a", json!(0)), item("b", json!("green")), item("c", json!(2))];
        let g = grade(&quiz, &answers(&[("a", 0), ("b", 1), ("c", 0), ("zzz", 1)]), 0.6);
        assert_eq!((g.correct, g.total), (2, 3));
        assert!((g.score - 2.0 / 3.0).abs() < 1e-12);
        assert!(g.passed);
        assert_eq!(g.per_question, vec![("a".into(), true), ("b".into(), true), ("c".into(), false)]);
        let none = grade(&quiz, &BTreeMap::new(), 0.5);
        assert_eq!((none.score, none.passed, none.correct), (0.0, false, 0));
        let all = grade(&quiz, &answers(&[("a", 0), ("b", 1), ("c", 2)]), 1.0);
        assert_eq!((all.score, all.passed), (1.0, true));
        let empty = grade(&[], &BTreeMap::new(), 0.8);
        assert_eq!((empty.score, empty.passed, empty.total), (1.0, true, 0));
        let failed = grade(&quiz, &answers(&[("a", 0), ("c", 1)]), 0.9);
        let fb = feedback(&quiz, &answers(&[("a", 0), ("c", 1)]), &failed);
        assert_eq!(
            fb.iter().map(|f| (f.question_id.as_str(), f.choice, f.correct, f.answer)).collect::<Vec<_>>(),
            vec![("a", Some(0), true, None), ("b", None, false, None), ("c", Some(1), false, None)]
        );
        let passed = grade(&quiz, &answers(&[("a", 0), ("b", 1)]), 0.5);
        let keys: Vec<_> = feedback(&quiz, &answers(&[("a", 0), ("b", 1)]), &passed).iter().map(|f| f.answer).collect();
        assert_eq!(keys, vec![Some(0), Some(1), Some(2)]);
        // A key that does not resolve can never be answered correctly.
        let broken = grade(&[item("x", json!(9))], &answers(&[("x", 9)]), 0.5);
        assert_eq!(broken.correct, 0);
    }

    fn ev(seq: u64, kind: &str, payload: Value) -> crate::run::Event {
        crate::run::Event {
            id: format!("e{seq}"),
            run_id: "r".into(),
            seq,
            kind: kind.into(),
            payload,
            timestamp: 0,
            author_id: "lea".into(),
            hash: String::new(),
        }
    }

    #[test]
    fn the_latest_answer_before_submission_counts() {
        let events = [
            ev(1, "attempt.started", json!({})),
            ev(2, "attempt.answered", json!({"question_id": "a", "choice": 0})),
            ev(3, "attempt.answered", json!({"question_id": "b", "choice": 2})),
            ev(4, "attempt.answered", json!({"question_id": "a", "choice": 1})),
            ev(5, "attempt.answered", json!({"question_id": "c", "choice": "x"})),
            ev(6, "attempt.submitted", json!({})),
            ev(7, "attempt.answered", json!({"question_id": "b", "choice": 0})),
        ];
        assert_eq!(answers_from_events(&events), answers(&[("a", 1), ("b", 2)]));
        // Past the first page of events (grading once read only 1,000).
        let mut many = vec![ev(1, "attempt.started", json!({}))];
        for seq in 2..2_500 {
            many.push(ev(seq, "attempt.answered", json!({"question_id": "a", "choice": seq % 3})));
        }
        assert_eq!(answers_from_events(&many), answers(&[("a", 2_499 % 3)]));
        assert_eq!(answer_event_limit(0), MAX_ANSWERS_PER_QUESTION);
        assert_eq!(answer_event_limit(3), 3 * MAX_ANSWERS_PER_QUESTION);
    }

    proptest! {
        #[test]
        fn score_is_bounded_and_monotone(
            keys in proptest::collection::vec(0usize..3, 0..12),
            given in proptest::collection::vec(proptest::option::of(0usize..4), 0..12),
            threshold in 0.0f64..1.0,
            fix in any::<prop::sample::Index>(),
        ) {
            let quiz: Vec<QuizItem> = keys.iter().enumerate()
                .map(|(i, k)| item(&format!("q{i}"), json!(k))).collect();
            let mut ans: BTreeMap<String, usize> = given.iter().enumerate()
                .filter_map(|(i, g)| g.map(|g| (format!("q{i}"), g))).collect();
            let g = grade(&quiz, &ans, threshold);
            prop_assert!((0.0..=1.0).contains(&g.score));
            prop_assert_eq!(g.passed, g.score >= threshold);
            prop_assert_eq!(g.total as usize, quiz.len());
            prop_assert!(g.correct <= g.total);
            // Correcting one answer never lowers the score.
            if !keys.is_empty() {
                let i = fix.index(keys.len());
                ans.insert(format!("q{i}"), keys[i]);
                let better = grade(&quiz, &ans, threshold);
                prop_assert!(better.score >= g.score);
                prop_assert!(better.correct >= g.correct);
                prop_assert!(!g.passed || better.passed);
            }
        }
    }
}
