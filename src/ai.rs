//! AI jobs: request validation, lifecycle arithmetic, cache keys, the
//! builtin offline provider (deterministic: explain, BM25 answers, rubric
//! grading, review assist) and OpenAI-compatible request/response shaping.
//! No I/O here: the edge calls providers and stores results.

use crate::canonical::canonical_sha256;
use crate::error::{AppError, AppResult};
use crate::lesson::{Artifact, TimelineItem};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Explain,
    Answer,
    Grade,
    ReviewAssist,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Explain => "explain",
            JobKind::Answer => "answer",
            JobKind::Grade => "grade",
            JobKind::ReviewAssist => "review_assist",
        }
    }
    pub fn parse(s: &str) -> Option<JobKind> {
        [JobKind::Explain, JobKind::Answer, JobKind::Grade, JobKind::ReviewAssist].into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Criterion {
    pub criterion: String,
    pub weight: f64,
}

/// Stored as JSON and read back: `untagged`, most specific variant first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum JobInput {
    Grade { question: String, answer: String, rubric: Vec<Criterion> },
    Answer { question: String },
    Explain { step: u32 },
    ReviewAssist { listing_id: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct JobRequest {
    pub kind: JobKind,
    pub lesson_id: String,
    pub version: u32,
    pub input: JobInput,
}

/// What review assist knows of a listing besides its lesson.
#[derive(Debug, Clone, PartialEq)]
pub struct ListingFacts {
    pub title: String,
    pub summary: String,
}

fn invalid(path: &str, why: &str) -> AppError {
    AppError::bad_request("invalid_field", format!("{path}: {why}"))
}

fn text_field(input: &Value, name: &str, max: usize) -> AppResult<String> {
    input
        .get(name)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.chars().count() <= max)
        .map(str::to_owned)
        .ok_or_else(|| {
            invalid(&format!("input.{name}"), &format!("must be a non-empty string of at most {max} characters"))
        })
}

pub fn validate_request(body: &Value) -> AppResult<JobRequest> {
    let kind = body
        .get("kind")
        .and_then(Value::as_str)
        .and_then(JobKind::parse)
        .ok_or_else(|| invalid("kind", "must be one of explain, answer, grade, review_assist"))?;
    let (lesson_id, version) = crate::lesson::parse_version_ref(body)?;
    let input = body.get("input").filter(|i| i.is_object()).ok_or_else(|| invalid("input", "must be an object"))?;
    let input = match kind {
        JobKind::Explain => JobInput::Explain {
            step: input
                .get("step")
                .and_then(Value::as_u64)
                .filter(|s| *s <= 100_000)
                .ok_or_else(|| invalid("input.step", "must be a non-negative integer"))? as u32,
        },
        JobKind::Answer => JobInput::Answer { question: text_field(input, "question", 2000)? },
        JobKind::Grade => {
            let items = input
                .get("rubric")
                .and_then(Value::as_array)
                .filter(|r| (1..=20).contains(&r.len()))
                .ok_or_else(|| invalid("input.rubric", "must be an array of 1 to 20 criteria"))?;
            let rubric = items
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let (text, weight) = match c {
                        Value::String(s) => (s.as_str(), 1.0),
                        Value::Object(o) => (
                            o.get("criterion").and_then(Value::as_str).unwrap_or_default(),
                            o.get("weight").map_or(Some(1.0), Value::as_f64).unwrap_or(-1.0),
                        ),
                        _ => ("", 1.0),
                    };
                    let text = text.trim();
                    if text.is_empty() || text.chars().count() > 500 {
                        return Err(invalid(
                            &format!("input.rubric[{i}]"),
                            "must be a criterion of 1 to 500 characters",
                        ));
                    }
                    if !(weight > 0.0 && weight <= 100.0) {
                        return Err(invalid(&format!("input.rubric[{i}].weight"), "must be a number in (0, 100]"));
                    }
                    Ok(Criterion { criterion: text.to_owned(), weight })
                })
                .collect::<AppResult<Vec<_>>>()?;
            JobInput::Grade {
                question: text_field(input, "question", 2000)?,
                answer: text_field(input, "answer", 10_000)?,
                rubric,
            }
        }
        JobKind::ReviewAssist => JobInput::ReviewAssist {
            listing_id: input
                .get("listing_id")
                .and_then(Value::as_str)
                .filter(|s| crate::identity::is_valid_id(s))
                .ok_or_else(|| invalid("input.listing_id", "must be a listing id"))?
                .to_owned(),
        },
    };
    Ok(JobRequest { kind, lesson_id, version, input })
}

/// Exponential backoff between attempts: 2, 4, 8 … seconds, at most 5 minutes.
pub fn retry_delay_secs(attempt: u32) -> u32 {
    2u32.saturating_pow(attempt.clamp(1, 9)).min(300)
}

fn normalize(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// The same question asked twice (modulo spacing and case) hits the cache.
pub fn cache_key(kind: JobKind, lesson_sha256: &str, input: &JobInput, provider: &str, model: &str) -> String {
    let input = match input {
        JobInput::Explain { step } => json!({"step": step}),
        JobInput::Answer { question } => json!({"question": normalize(question)}),
        JobInput::Grade { question, answer, rubric } => json!({
            "question": normalize(question), "answer": normalize(answer),
            "rubric": rubric.iter().map(|c| json!([normalize(&c.criterion), c.weight])).collect::<Vec<_>>(),
        }),
        JobInput::ReviewAssist { listing_id } => json!({"listing_id": listing_id}),
    };
    canonical_sha256(
        &json!({"kind": kind.as_str(), "lesson": lesson_sha256, "input": input, "provider": provider, "model": model}),
    )
}

const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "do", "does", "for", "from", "how", "i", "in", "is", "it", "of",
    "on", "or", "that", "the", "this", "to", "was", "what", "when", "where", "which", "who", "why", "with", "you",
];

fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric() && c != '/')
        .map(|t| t.to_lowercase())
        .filter(|t| !t.is_empty() && !STOP_WORDS.contains(&t.as_str()))
        .map(|t| stem(&t))
        .collect()
}

/// A light stemmer (plural and common suffixes) so "halves" meets "half".
fn stem(t: &str) -> String {
    for (suffix, repl) in [("ves", "f"), ("ies", "y"), ("ing", ""), ("es", ""), ("s", "")] {
        if t.len() > suffix.len() + 2 {
            if let Some(base) = t.strip_suffix(suffix) {
                return format!("{base}{repl}");
            }
        }
    }
    t.to_owned()
}

/// Lesson passages with the step that carries them (1-based; quiz prompts step 0).
fn passages(artifact: &Artifact) -> Vec<(u32, String)> {
    let mut out: Vec<(u32, String)> = artifact
        .timeline
        .iter()
        .enumerate()
        .filter_map(|(i, item)| item_text(item).map(|t| (i as u32 + 1, t)))
        .collect();
    out.extend(artifact.quiz.iter().map(|q| (0, q.prompt.clone())));
    out
}

fn item_text(item: &TimelineItem) -> Option<String> {
    let p = &item.payload;
    ["text", "title", "label"]
        .iter()
        .find_map(|k| p.get(*k).and_then(Value::as_str))
        .map(str::to_owned)
        .filter(|t| !t.trim().is_empty())
}

/// BM25 (k1 = 1.2, b = 0.75) of every passage against the query, best first.
pub fn bm25_rank(passages: &[(u32, String)], query: &str) -> Vec<(usize, f64)> {
    let docs: Vec<Vec<String>> = passages.iter().map(|(_, t)| tokens(t)).collect();
    let n = docs.len() as f64;
    let avg = docs.iter().map(Vec::len).sum::<usize>() as f64 / n.max(1.0);
    let mut terms = tokens(query);
    terms.sort();
    terms.dedup();
    let mut scores: Vec<(usize, f64)> = docs
        .iter()
        .enumerate()
        .map(|(i, doc)| {
            let len = doc.len() as f64;
            let score = terms
                .iter()
                .map(|term| {
                    let df = docs.iter().filter(|d| d.contains(term)).count() as f64;
                    let tf = doc.iter().filter(|t| *t == term).count() as f64;
                    let idf = ((n - df + 0.5) / (df + 0.5) + 1.0).ln();
                    idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * len / avg.max(1.0)))
                })
                .sum::<f64>();
            (i, score)
        })
        .filter(|(_, s)| *s > 0.0)
        .collect();
    // Ties keep lesson order, so output never depends on sort stability quirks.
    scores.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scores
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub fn run_builtin(
    kind: JobKind,
    input: &JobInput,
    artifact: &Artifact,
    listing: Option<&ListingFacts>,
) -> AppResult<Value> {
    match (kind, input) {
        (JobKind::Explain, JobInput::Explain { step }) => explain(artifact, *step),
        (JobKind::Answer, JobInput::Answer { question }) => Ok(answer(artifact, question)),
        (JobKind::Grade, JobInput::Grade { answer, rubric, .. }) => Ok(grade(answer, rubric)),
        (JobKind::ReviewAssist, JobInput::ReviewAssist { .. }) => Ok(review_assist(artifact, listing)),
        _ => Err(AppError::unprocessable("input_mismatch", "input does not fit the job kind")),
    }
}

fn explain(artifact: &Artifact, step: u32) -> AppResult<Value> {
    let len = artifact.timeline.len() as u32;
    if step > len {
        return Err(AppError::unprocessable(
            "step_out_of_range",
            format!("input.step: the lesson has steps 0 to {len}"),
        ));
    }
    let frame = artifact.frame(step as usize).unwrap_or_default();
    let chapter = frame.chapters.last().map(|c| c.text.clone());
    let idx = step.saturating_sub(1) as usize;
    let around: Vec<String> = (idx.saturating_sub(1)..=(idx + 1).min(len.saturating_sub(1) as usize))
        .filter_map(|i| artifact.timeline.get(i))
        .filter(|i| i.kind == "narration")
        .filter_map(item_text)
        .collect();
    let action = match artifact.timeline.get(idx).filter(|_| step > 0) {
        None => "The canvas is empty: the lesson has not started yet.".to_owned(),
        Some(item) => {
            let id = item.payload.get("id").and_then(Value::as_str).unwrap_or("");
            let what = item_text(item).map(|t| format!(" (\"{t}\")")).unwrap_or_default();
            match item.kind.as_str() {
                "element.added" => format!(
                    "Step {step} adds the {} \"{id}\"{what}.",
                    item.payload.get("kind").and_then(Value::as_str).unwrap_or("element")
                ),
                "element.moved" => format!("Step {step} moves \"{id}\" to a new position."),
                "element.updated" => format!("Step {step} changes \"{id}\"{what}."),
                "element.removed" => format!("Step {step} removes \"{id}\" from the canvas."),
                "edge.added" => format!(
                    "Step {step} connects \"{}\" to \"{}\".",
                    item.payload.get("from").and_then(Value::as_str).unwrap_or(""),
                    item.payload.get("to").and_then(Value::as_str).unwrap_or("")
                ),
                "edge.removed" => format!("Step {step} removes a connection."),
                "chapter" => format!("Step {step} starts the chapter{what}."),
                _ => format!("Step {step} says{what}."),
            }
        }
    };
    let mut text = action;
    if let Some(c) = &chapter {
        text.push_str(&format!(" This is part of \"{c}\"."));
    }
    for n in &around {
        text.push_str(&format!(" The teacher says: \"{n}\""));
    }
    text.push_str(&format!(
        " On the canvas now: {} element(s), {} connection(s).",
        frame.elements.len(),
        frame.edges.len()
    ));
    Ok(json!({"text": text, "step": step, "chapter": chapter, "elements": frame.elements.keys().collect::<Vec<_>>()}))
}

fn answer(artifact: &Artifact, question: &str) -> Value {
    let ps = passages(artifact);
    let ranked = bm25_rank(&ps, question);
    let top: Vec<&(usize, f64)> = ranked.iter().take(3).collect();
    if top.is_empty() {
        return json!({"answer": "This lesson does not cover that question.", "citations": [], "confidence": 0.0});
    }
    let citations: Vec<Value> = top
        .iter()
        .filter_map(|(i, s)| ps.get(*i).map(|(step, text)| json!({"step": step, "text": text, "score": round3(*s)})))
        .collect();
    let best = top.first().and_then(|(i, _)| ps.get(*i)).map(|(_, t)| t.clone()).unwrap_or_default();
    let max = top.first().map(|(_, s)| *s).unwrap_or(0.0);
    json!({"answer": best, "citations": citations, "confidence": round3(max / (max + 2.0))})
}

fn grade(answer: &str, rubric: &[Criterion]) -> Value {
    let answer_tokens = tokens(answer);
    let total: f64 = rubric.iter().map(|c| c.weight).sum();
    let mut earned = 0.0;
    let criteria: Vec<Value> = rubric
        .iter()
        .map(|c| {
            let wanted = tokens(&c.criterion);
            let hit = wanted.iter().filter(|w| answer_tokens.contains(w)).count();
            // Met when at least half of the criterion's content words appear.
            let met = !wanted.is_empty() && hit * 2 >= wanted.len();
            if met {
                earned += c.weight;
            }
            json!({"criterion": c.criterion, "met": met, "weight": c.weight})
        })
        .collect();
    let score = if total > 0.0 { round3((earned / total).clamp(0.0, 1.0)) } else { 0.0 };
    let missing: Vec<&str> = rubric
        .iter()
        .zip(&criteria)
        .filter(|(_, v)| v["met"] == json!(false))
        .map(|(c, _)| c.criterion.as_str())
        .collect();
    let feedback = if missing.is_empty() {
        "The answer covers every criterion.".to_owned()
    } else {
        format!("Missing or unclear: {}.", missing.join("; "))
    };
    json!({"score": score, "criteria": criteria, "feedback": feedback})
}

const BLOCKED_WORDS: &[&str] = &["idiot", "stupid", "hate", "kill", "scam"];

fn review_assist(artifact: &Artifact, listing: Option<&ListingFacts>) -> Value {
    let mut flags: Vec<Value> = Vec::new();
    let summary = listing.map(|l| l.summary.as_str()).unwrap_or(&artifact.summary);
    if summary.trim().chars().count() < 20 {
        flags
            .push(json!({"code": "short_summary", "message": "The summary is missing or shorter than 20 characters."}));
    }
    if artifact.quiz.is_empty() {
        flags.push(json!({"code": "no_quiz", "message": "The lesson has no quiz, so no certificate can be earned."}));
    }
    if artifact.timeline.is_empty() {
        flags.push(json!({"code": "empty_timeline", "message": "The lesson has no steps."}));
    }
    let mut known: BTreeMap<String, ()> = BTreeMap::new();
    for (i, item) in artifact.timeline.iter().enumerate() {
        let step = i + 1;
        let id = item.payload.get("id").and_then(Value::as_str).unwrap_or("").to_owned();
        match item.kind.as_str() {
            "element.added" => {
                known.insert(id, ());
            }
            "element.moved" | "element.updated" | "element.removed" if !known.contains_key(&id) => {
                flags.push(json!({"code": "broken_reference", "message": format!("Step {step} refers to \"{id}\", which was never added."), "step": step}));
            }
            "edge.added" => {
                for end in ["from", "to"] {
                    let target = item.payload.get(end).and_then(Value::as_str).unwrap_or("");
                    if !known.contains_key(target) {
                        flags.push(json!({"code": "broken_reference", "message": format!("Step {step} connects \"{target}\", which was never added."), "step": step}));
                    }
                }
            }
            "narration" if item_text(item).is_none() => {
                flags.push(json!({"code": "empty_narration", "message": format!("Step {step} has empty narration."), "step": step}));
            }
            _ => {}
        }
        if let Some(text) = item_text(item) {
            let lower = text.to_lowercase();
            if let Some(w) =
                BLOCKED_WORDS.iter().find(|w| lower.split(|c: char| !c.is_alphanumeric()).any(|t| t == **w))
            {
                flags.push(json!({"code": "blocked_word", "message": format!("Step {step} uses the blocked word \"{w}\"."), "step": step}));
            }
        }
    }
    json!({"ok": flags.is_empty(), "flags": flags})
}

pub const SYSTEM_PROMPT: &str = "You are Dropple's teaching assistant. Use only the lesson given. \
Answer in JSON only, in the shape the user message asks for. Be brief and concrete.";

fn task_prompt(kind: JobKind, input: &JobInput) -> String {
    match input {
        JobInput::Explain { step } => format!("Explain step {step} of the lesson to a learner. Reply {{\"text\": string, \"step\": {step}}}."),
        JobInput::Answer { question } => format!("Answer the learner's question from the lesson, citing step numbers. Question: {question}. Reply {{\"answer\": string, \"citations\": [{{\"step\": number, \"text\": string}}], \"confidence\": number 0..1}}."),
        JobInput::Grade { question, answer, rubric } => format!(
            "Grade the answer against the rubric. Question: {question}. Answer: {answer}. Rubric: {}. Reply {{\"score\": number 0..1, \"criteria\": [{{\"criterion\": string, \"met\": boolean}}], \"feedback\": string}}.",
            rubric.iter().map(|c| format!("{} (weight {})", c.criterion, c.weight)).collect::<Vec<_>>().join("; ")
        ),
        JobInput::ReviewAssist { .. } => format!("List problems a marketplace reviewer should know about ({}). Reply {{\"ok\": boolean, \"flags\": [{{\"code\": string, \"message\": string}}]}}.", kind.as_str()),
    }
}

/// A chat-completions body: the lesson as context, trimmed to a budget.
pub fn openai_request(kind: JobKind, input: &JobInput, artifact: &Artifact, model: &str) -> Value {
    const CONTEXT_BUDGET: usize = 12_000;
    let mut context = format!("Lesson: {}\nSummary: {}\n", artifact.title, artifact.summary);
    for (step, text) in passages(artifact) {
        let line = format!("[step {step}] {text}\n");
        if context.len() + line.len() > CONTEXT_BUDGET {
            break;
        }
        context.push_str(&line);
    }
    json!({
        "model": model,
        "temperature": 0,
        "response_format": {"type": "json_object"},
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": format!("{context}\n{}", task_prompt(kind, input))},
        ],
    })
}

/// The provider's JSON content, checked against the kind's result shape.
pub fn parse_openai_response(response: &Value, kind: JobKind) -> AppResult<Value> {
    let bad = |why: &str| AppError::internal(format!("provider response rejected: {why}"));
    let content = response
        .pointer("/choices/0/message/content")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no choices[0].message.content"))?;
    let mut v: Value = serde_json::from_str(content).map_err(|_| bad("content is not JSON"))?;
    let required: &[&str] = match kind {
        JobKind::Explain => &["text"],
        JobKind::Answer => &["answer"],
        JobKind::Grade => &["score", "feedback"],
        JobKind::ReviewAssist => &["flags"],
    };
    if let Some(missing) = required.iter().find(|k| v.get(**k).is_none()) {
        return Err(bad(&format!("missing {missing}")));
    }
    if kind == JobKind::Grade {
        let score = v.get("score").and_then(Value::as_f64).ok_or_else(|| bad("score is not a number"))?;
        v["score"] = json!(score.clamp(0.0, 1.0));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lesson::validate_draft;
    use proptest::prelude::*;

    fn artifact() -> Artifact {
        let body = json!({
            "title": "Fractions", "summary": "Halves and quarters on a number line.",
            "timeline": [
                {"type": "chapter", "payload": {"title": "Halves"}},
                {"type": "element.added", "payload": {"id": "half", "kind": "dot", "x": 1, "y": 2, "text": "1/2"}},
                {"type": "narration", "payload": {"text": "One half sits exactly in the middle of the line."}},
                {"type": "narration", "payload": {"text": "A quarter is half of a half."}},
                {"type": "element.moved", "payload": {"id": "ghost", "x": 1, "y": 1}}
            ],
            "quiz": [{"id": "q1", "prompt": "Where is one half?", "choices": ["middle", "end"], "answer": 0}]
        });
        Artifact::new(validate_draft(&body).unwrap(), "l1", 1, "ana", "acme", "2026-01-01T00:00:00Z", None)
    }

    fn req(kind: &str, input: Value) -> AppResult<JobRequest> {
        validate_request(&json!({"kind": kind, "lesson_id": "l1", "version": 1, "input": input}))
    }

    #[test]
    fn validation_names_fields() {
        assert!(req("explain", json!({"step": 2})).is_ok());
        for (kind, input, field) in [
            ("teleport", json!({}), "kind"),
            ("explain", json!({"step": -1}), "input.step"),
            ("answer", json!({"question": "  "}), "input.question"),
            ("grade", json!({"question": "q", "answer": "a", "rubric": []}), "input.rubric"),
            (
                "grade",
                json!({"question": "q", "answer": "a", "rubric": [{"criterion": "x", "weight": -2}]}),
                "input.rubric[0].weight",
            ),
            ("review_assist", json!({"listing_id": "../x"}), "input.listing_id"),
        ] {
            let e = req(kind, input).unwrap_err();
            assert!(e.public_message().starts_with(field), "{} vs {field}", e.public_message());
        }
    }

    #[test]
    fn inputs_round_trip_through_storage() {
        for r in [
            req("explain", json!({"step": 2})),
            req("answer", json!({"question": "why?"})),
            req("grade", json!({"question": "q", "answer": "a", "rubric": ["x"]})),
            req("review_assist", json!({"listing_id": "abc"})),
        ] {
            let input = r.unwrap().input;
            let back: JobInput = serde_json::from_str(&serde_json::to_string(&input).unwrap()).unwrap();
            assert_eq!(back, input);
        }
    }

    #[test]
    fn explain_is_deterministic_and_bounded() {
        let a = artifact();
        let one = run_builtin(JobKind::Explain, &JobInput::Explain { step: 2 }, &a, None).unwrap();
        assert_eq!(one, run_builtin(JobKind::Explain, &JobInput::Explain { step: 2 }, &a, None).unwrap());
        assert!(one["text"].as_str().unwrap().contains("half"));
        assert_eq!(one["chapter"], json!("Halves"));
        assert_eq!(run_builtin(JobKind::Explain, &JobInput::Explain { step: 9 }, &a, None).unwrap_err().status(), 422);
    }

    #[test]
    fn bm25_prefers_the_rare_matching_term() {
        let a = artifact();
        let r = run_builtin(JobKind::Answer, &JobInput::Answer { question: "What is a quarter?".into() }, &a, None)
            .unwrap();
        assert_eq!(r["citations"][0]["step"], json!(4));
        let none =
            run_builtin(JobKind::Answer, &JobInput::Answer { question: "photosynthesis".into() }, &a, None).unwrap();
        assert_eq!(none["citations"], json!([]));
        assert_eq!(none["confidence"], json!(0.0));
    }

    #[test]
    fn rubric_scoring() {
        let rubric = vec![
            Criterion { criterion: "mentions the middle".into(), weight: 1.0 },
            Criterion { criterion: "mentions quarters".into(), weight: 3.0 },
        ];
        let all = grade("It is in the middle, two quarters from each end", &rubric);
        assert_eq!(all["score"], json!(1.0));
        assert_eq!(grade("no idea", &rubric)["score"], json!(0.0));
        assert_eq!(grade("the middle", &rubric)["score"], json!(0.25));
    }

    #[test]
    fn review_assist_flags_problems() {
        let r = review_assist(&artifact(), Some(&ListingFacts { title: "t".into(), summary: "short".into() }));
        let codes: Vec<&str> = r["flags"].as_array().unwrap().iter().map(|f| f["code"].as_str().unwrap()).collect();
        assert_eq!(codes, vec!["short_summary", "broken_reference"]);
        assert_eq!(r["ok"], json!(false));
    }

    #[test]
    fn cache_keys_normalize_text_but_not_provider() {
        let q = |s: &str| JobInput::Answer { question: s.into() };
        let k = |i: &JobInput, p: &str| cache_key(JobKind::Answer, "sha", i, p, "m");
        assert_eq!(k(&q("What  is A quarter?"), "builtin"), k(&q("what is a quarter?"), "builtin"));
        assert_ne!(k(&q("what is a quarter?"), "builtin"), k(&q("what is a quarter?"), "openai"));
        assert_ne!(k(&q("what is a half?"), "builtin"), k(&q("what is a quarter?"), "builtin"));
    }

    #[test]
    fn retry_backoff_is_exponential_and_capped() {
        assert_eq!((1..=4).map(retry_delay_secs).collect::<Vec<_>>(), vec![2, 4, 8, 16]);
        assert_eq!(retry_delay_secs(50), 300);
    }

    #[test]
    fn openai_shapes() {
        let body = openai_request(JobKind::Answer, &JobInput::Answer { question: "q".into() }, &artifact(), "m");
        assert_eq!(body["temperature"], json!(0));
        assert!(body["messages"][1]["content"].as_str().unwrap().contains("[step 3]"));
        let ok = json!({"choices": [{"message": {"content": "{\"score\": 1.7, \"feedback\": \"ok\"}"}}]});
        assert_eq!(parse_openai_response(&ok, JobKind::Grade).unwrap()["score"], json!(1.0));
        for bad in [
            json!({}),
            json!({"choices": [{"message": {"content": "not json"}}]}),
            json!({"choices": [{"message": {"content": "{}"}}]}),
        ] {
            assert!(parse_openai_response(&bad, JobKind::Grade).is_err());
        }
    }

    proptest! {
        #[test]
        fn never_panics_and_scores_stay_in_range(s in ".{0,120}", step in 0u32..20) {
            let a = artifact();
            let _ = validate_request(&serde_json::from_str::<Value>(&s).unwrap_or(json!({"kind": s})));
            let _ = run_builtin(JobKind::Explain, &JobInput::Explain { step }, &a, None);
            let r = run_builtin(JobKind::Answer, &JobInput::Answer { question: s.clone() }, &a, None).unwrap();
            let c = r["confidence"].as_f64().unwrap();
            prop_assert!((0.0..=1.0).contains(&c));
            let g = grade(&s, &[Criterion { criterion: "half of a quarter".into(), weight: 2.0 }]);
            let score = g["score"].as_f64().unwrap();
            prop_assert!((0.0..=1.0).contains(&score));
        }
    }
}
