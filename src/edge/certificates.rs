//! Attempts and certificates over HTTP. An attempt is a run of `attempt.*`
//! events; grading is the pure `grading` module; a pass issues one Open
//! Badges 3.0 credential signed with Ed25519 (eddsa-jcs-2022), revocable
//! through a Bitstring Status List.

use super::edge_cache::{self, Entry, Family, NO_STORE};
use super::http::{allow, created, ok, path_id, Ctx};
use super::lessons;
use super::runs::{self, Appended, RunRow};
use super::store::Db;
use super::store::{self, i, t, u};
use crate::canonical::canonical_sha256;
use crate::certificate::{self, CredentialInput, IssuerSecret, PublicIssuerKey};
use crate::chain;
use crate::error::{AppError, AppResult};
use crate::grading;
use crate::identity::Claims;
use crate::json;
use crate::policy::{self, Action, Scope};
use crate::run::{rfc3339_ms, NewEvent};
use serde_json::Value;
use std::rc::Rc;
use worker::{Method, Response};

store::d1_row! {
    #[derive(Clone)]
    struct AttemptRow {
        id: String,
        /// The lesson's org (which owns the attempt's run).
        org: String,
        learner_id: String,
        /// The learner's own org: a user id is only unique within an org.
        learner_org: String,
        lesson_id: String,
        version: u32,
        /// The version's artifact (content-addressed: the quiz to grade by).
        sha256: String,
        run_id: String,
        submitted: u32,
        score: Option<f64>,
        passed: Option<u32>,
        certificate_id: Option<String>,
    }
}

pub async fn attempts_route(ctx: &mut Ctx, rest: &[&str]) -> AppResult<Response> {
    let m = ctx.method();
    match rest {
        [] => {
            allow(&m, &[Method::Post])?;
            start(ctx).await
        }
        [id, "answers"] => {
            allow(&m, &[Method::Post])?;
            let id = path_id(id, "attempt")?.to_owned();
            answer(ctx, &id).await
        }
        [id, "submit"] => {
            allow(&m, &[Method::Post])?;
            let id = path_id(id, "attempt")?.to_owned();
            submit(ctx, &id).await
        }
        [id] => {
            allow(&m, &[Method::Get])?;
            let id = path_id(id, "attempt")?.to_owned();
            read_attempt(ctx, &id).await
        }
        _ => Err(AppError::not_found("route")),
    }
}

pub async fn certificates_route(ctx: &mut Ctx, rest: &[&str]) -> AppResult<Response> {
    let m = ctx.method();
    match rest {
        [] => {
            allow(&m, &[Method::Get])?;
            list(ctx).await
        }
        ["verify"] => {
            allow(&m, &[Method::Post])?;
            verify(ctx).await
        }
        [id] => {
            allow(&m, &[Method::Get])?;
            let id = path_id(id, "certificate")?.to_owned();
            read(ctx, &id).await
        }
        [id, "revoke"] => {
            allow(&m, &[Method::Post])?;
            let id = path_id(id, "certificate")?.to_owned();
            revoke(ctx, &id).await
        }
        _ => Err(AppError::not_found("route")),
    }
}

fn issuer_id(ctx: &Ctx) -> String {
    ctx.var("ISSUER_URL").unwrap_or_else(|| format!("{}/v1/issuer", ctx.base_url()))
}

fn status_list_url(ctx: &Ctx, list: &str) -> String {
    format!("{}/v1/status-lists/{list}", ctx.base_url())
}

fn issuer_name(ctx: &Ctx) -> String {
    ctx.var("ISSUER_NAME").unwrap_or_else(|| "Dropple Edge".into())
}

/// The signing key as imported into Web Crypto, with the secret text and
/// key id it came from.
struct IssuerSigner {
    secret: String,
    key_id: String,
    public: PublicIssuerKey,
    signer: crate::webcrypto::Signer,
}

impl IssuerSigner {
    /// `credential` secured with an eddsa-jcs-2022 proof by this key.
    async fn sign(&self, credential: Value, now: &str) -> AppResult<Value> {
        let to_sign = certificate::to_sign(credential, &self.public, now);
        let signature = self.signer.sign(to_sign.message()).await.map_err(AppError::internal)?;
        Ok(to_sign.signed(&signature))
    }
}

thread_local! {
    /// The signing key as last imported: once per isolate, not per
    /// signature (the import derives the public half), and again only when
    /// the secret or the key id changes.
    static SIGNER: std::cell::RefCell<Option<Rc<IssuerSigner>>> = const { std::cell::RefCell::new(None) };
}

async fn issuer_signer(ctx: &Ctx) -> AppResult<Rc<IssuerSigner>> {
    let secret = ctx.var("CERT_SIGNING_KEY").ok_or_else(|| AppError::internal("CERT_SIGNING_KEY is not set"))?;
    let key_id = ctx.var("CERT_KEY_ID").unwrap_or_else(|| "key-1".into());
    let kept = SIGNER.with(|k| k.borrow().as_ref().filter(|s| s.secret == secret && s.key_id == key_id).cloned());
    if let Some(kept) = kept {
        return Ok(kept);
    }
    let parsed =
        IssuerSecret::parse(&secret, &key_id).map_err(|e| AppError::internal(format!("CERT_SIGNING_KEY: {e}")))?;
    let signer = crate::webcrypto::signer(parsed.seed()).await.map_err(AppError::internal)?;
    let public = parsed.public(signer.public_key);
    let imported = Rc::new(IssuerSigner { secret, key_id, public, signer });
    SIGNER.with(|k| *k.borrow_mut() = Some(imported.clone()));
    Ok(imported)
}

/// Every key the issuer publishes: the signing key, then the retired keys of
/// `CERT_PREVIOUS_KEYS` that still verify older certificates.
async fn published_keys(ctx: &Ctx) -> AppResult<Vec<PublicIssuerKey>> {
    let previous = certificate::parse_previous_keys(&ctx.var("CERT_PREVIOUS_KEYS").unwrap_or_default())
        .map_err(|e| AppError::internal(format!("CERT_PREVIOUS_KEYS: {e}")))?;
    Ok(certificate::published_keys(&issuer_signer(ctx).await?.public, previous))
}

async fn issuer_profile(ctx: &Ctx) -> AppResult<Value> {
    Ok(certificate::issuer_profile(&issuer_id(ctx), &issuer_name(ctx), &published_keys(ctx).await?))
}

pub async fn issuer(ctx: &mut Ctx) -> AppResult<Response> {
    allow(&ctx.method(), &[Method::Get])?;
    ok(issuer_profile(ctx).await?)
}

/// The columns of an [`AttemptRow`], for every statement that reads one
/// (a macro: `concat!` keeps the statements static strings).
macro_rules! attempt_columns {
    () => {
        "id, org, learner_id, COALESCE(learner_org, org) AS learner_org, lesson_id, version, sha256, run_id, submitted, score, passed, certificate_id"
    };
}

const ATTEMPT_SQL: &str = concat!("SELECT ", attempt_columns!(), " FROM attempts WHERE id = ?1");

async fn load_attempt(db: &Db, id: &str) -> AppResult<AttemptRow> {
    let a: AttemptRow = store::first(db, ATTEMPT_SQL, &[t(id)]).await?.ok_or_else(|| AppError::not_found("attempt"))?;
    KEPT_ATTEMPTS.with(|k| k.keep(a.id.clone(), a.clone()));
    Ok(a)
}

thread_local! {
    /// Attempts this isolate started or read. Only the columns fixed at
    /// start (learner, lesson, artifact, run) may be read from a kept copy:
    /// the others (submitted, grade, certificate) move on in D1.
    static KEPT_ATTEMPTS: store::Kept<AttemptRow> = const { store::Kept::new(4096) };
}

/// The first page of an attempt's events, its run found from the attempt id.
const ATTEMPT_EVENTS_SQL: &str = runs::page_sql!("(SELECT run_id FROM attempts WHERE id = ?1)");

/// A submit's status slot, taken up front: only for an open attempt of the
/// caller's own (anyone else's submit changes nothing). Keyed by the
/// certificate id like [`SLOT_SQL`], so the issue finds it again; a slot of an
/// attempt that fails stays an unused bit of its status list.
const OPEN_SLOT_SQL: &str = "INSERT INTO status_slots (n, certificate_id) SELECT (SELECT COALESCE(MAX(n), -1) + 1 FROM status_slots), ?1 \
     WHERE EXISTS (SELECT 1 FROM attempts WHERE id = ?2 AND submitted = 0 AND learner_id = ?3 AND COALESCE(learner_org, org) = ?4) \
     ON CONFLICT (certificate_id) DO UPDATE SET certificate_id = excluded.certificate_id RETURNING n";

/// The attempt, every event of its run and, for an open attempt of the
/// caller's, its status slot: one round trip (a batch reads one state)
/// unless the run holds more than a page.
async fn attempt_and_events(
    db: &Db,
    claims: &Claims,
    id: &str,
) -> AppResult<(AttemptRow, Vec<crate::run::Event>, Option<u64>)> {
    const PAGE: u64 = 1000;
    let mut results = db
        .batch(vec![
            store::stmt(db, ATTEMPT_SQL, &[t(id)])?,
            store::stmt(db, ATTEMPT_EVENTS_SQL, &[t(id), u(0), u(i64::MAX as u64), u(PAGE)])?,
            store::stmt(db, OPEN_SLOT_SQL, &[t(&certificate_of(id)), t(id), t(&claims.sub), t(&claims.org)])?,
        ])
        .await?
        .into_iter();
    let (Some(attempt), Some(page), Some(slot)) = (results.next(), results.next(), results.next()) else {
        return Err(AppError::internal("D1 batch: a result is missing"));
    };
    let slot = slot.first::<Slot>()?.map(|s| s.n);
    let a = attempt.first::<AttemptRow>()?.ok_or_else(|| AppError::not_found("attempt"))?;
    let events = match page.text("page").as_deref().and_then(runs::page_events) {
        Some(mut events) => {
            if events.len() as u64 == PAGE {
                let after = events.last().map_or(0, |e| e.seq);
                events.extend(events_between(db, &a.run_id, after, i64::MAX as u64).await?);
            }
            events
        }
        // Over D1's 2 MB per value: read as the other paths do.
        None => all_events(db, &a.run_id, i64::MAX as u64).await?,
    };
    Ok((a, events, slot))
}

/// The certificate's evidence: the SHA-256 of the covered events' RFC 8785 form.
fn evidence_sha256(covered: &[crate::run::Event]) -> String {
    canonical_sha256(&crate::json_value::serialized(covered))
}

/// The certificate id of an attempt: derived, so every retry issues the same.
fn certificate_of(attempt_id: &str) -> String {
    derived_id(&format!("certificate:{attempt_id}"))
}

/// The attempt's own learner only (same user id in the same org); anyone
/// else in the learner's org is refused, other orgs see nothing.
fn own_attempt(claims: &Claims, a: &AttemptRow) -> AppResult<()> {
    if a.learner_org != claims.org {
        return Err(AppError::not_found("attempt"));
    }
    if a.learner_id != claims.sub {
        return Err(AppError::forbidden("only the learner who started an attempt works on it"));
    }
    Ok(())
}

/// A fixed UUID derived from `seed`: the events and the certificate of a
/// submission get the same ids on every retry, so a retry never adds twice.
fn derived_id(seed: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(seed.as_bytes());
    let mut bytes = [0u8; 16];
    for (b, d) in bytes.iter_mut().zip(digest) {
        *b = d;
    }
    uuid::Builder::from_random_bytes(bytes).into_uuid().hyphenated().to_string()
}

/// Every event of a run up to `to`, page by page.
async fn all_events(db: &Db, run_id: &str, to: u64) -> AppResult<Vec<crate::run::Event>> {
    events_between(db, run_id, 0, to).await
}

/// Events with `after < seq <= to`, in order.
async fn events_between(db: &Db, run_id: &str, after: u64, to: u64) -> AppResult<Vec<crate::run::Event>> {
    let mut events = Vec::new();
    let mut after = after;
    loop {
        let page = runs::events_page(db, run_id, after, to, 1000).await?;
        let full = page.len() == 1000;
        let Some(tail) = page.last() else { break };
        after = tail.seq;
        events.extend(page);
        if !full {
            break;
        }
    }
    Ok(events)
}

fn attempt_run(a: &AttemptRow) -> RunRow {
    RunRow {
        id: a.run_id.clone(),
        org: a.org.clone(),
        kind: "attempt".into(),
        creator: a.learner_id.clone(),
        created_at: 0,
    }
}

async fn start(ctx: &mut Ctx) -> AppResult<Response> {
    let claims = ctx.claims()?;
    policy::authorize(&claims, Action::AttemptCreate, Scope::ORG, "attempt")?;
    let body = ctx.json().await?;
    let (lesson_id, version) = crate::lesson::parse_version_ref(&body)?;
    let db = ctx.db()?;
    let lesson = lessons::load_lesson(&db, &lesson_id).await?.ok_or_else(|| AppError::not_found("lesson"))?;
    let row =
        lessons::load_version(&db, &lesson_id, version).await?.ok_or_else(|| AppError::not_found("lesson version"))?;
    if lesson.org != claims.org && !lessons::is_public(&db, &lesson_id, version).await? {
        return Err(AppError::not_found("lesson"));
    }
    let run_id = runs::new_id();
    let id = runs::new_id();
    let run = RunRow {
        id: run_id.clone(),
        org: lesson.org.clone(),
        kind: "attempt".into(),
        creator: claims.sub.clone(),
        created_at: ctx.now_ms,
    };
    let started = NewEvent {
        id: runs::new_id(),
        kind: "attempt.started".into(),
        payload: json!({"lesson_id": lesson_id, "version": version, "sha256": row.sha256}),
    };
    // The run, the attempt that owns it and its first event, in one batch.
    let sealed = runs::seal(&db, &run, &claims.sub, &[&started], 0, chain::GENESIS, ctx.now_ms)?;
    let statements = vec![
        runs::insert_run_stmt(&db, &run_id, &lesson.org, "attempt", &claims.sub, ctx.now_ms)?,
        store::stmt(
            &db,
            "INSERT INTO attempts (id, org, learner_id, learner_org, lesson_id, version, sha256, run_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            &[t(&id), t(&lesson.org), t(&claims.sub), t(&claims.org), t(&lesson_id), i(version), t(&row.sha256), t(&run_id), i(ctx.now_ms)],
        )?,
    ];
    sealed.write_after(&db, statements).await?;
    KEPT_ATTEMPTS.with(|k| {
        k.keep(
            id.clone(),
            AttemptRow {
                id: id.clone(),
                org: lesson.org.clone(),
                learner_id: claims.sub.clone(),
                learner_org: claims.org.clone(),
                lesson_id: lesson_id.clone(),
                version,
                sha256: row.sha256.clone(),
                run_id: run_id.clone(),
                submitted: 0,
                score: None,
                passed: None,
                certificate_id: None,
            },
        )
    });
    created(json!({"attempt_id": id, "run_id": run_id, "lesson_id": lesson_id, "version": version}))
}

/// The attempt's quiz: the artifact it started on, by its hash.
async fn artifact_of(ctx: &Ctx, a: &AttemptRow) -> AppResult<Rc<crate::lesson::Artifact>> {
    lessons::artifact(ctx, &a.sha256, &lessons::artifact_key(&a.sha256)).await
}

async fn answer(ctx: &mut Ctx, id: &str) -> AppResult<Response> {
    let claims = ctx.claims()?;
    let db = ctx.db()?;
    // A kept attempt answers who, what and where without a read; whether
    // answers are still open is then checked by the write itself.
    let kept = KEPT_ATTEMPTS.with(|k| k.get(id));
    let a = match &kept {
        Some(a) => a.clone(),
        None => load_attempt(&db, id).await?,
    };
    own_attempt(&claims, &a)?;
    let body = ctx.json().await?;
    let closed = || AppError::conflict("attempt_submitted", "this attempt was already submitted; answers are closed");
    if kept.is_none() && a.submitted != 0 {
        return Err(closed());
    }
    let question_id = body
        .get("question_id")
        .and_then(Value::as_str)
        .ok_or_else(|| AppError::bad_request("invalid_field", "question_id: required string"))?;
    let given = body.get("answer").ok_or_else(|| AppError::bad_request("invalid_field", "answer: required"))?;
    let artifact = artifact_of(ctx, &a).await?;
    let item = artifact.quiz.iter().find(|q| q.id == question_id).ok_or_else(|| {
        AppError::unprocessable("unknown_question", format!("question_id: {question_id} is not in this lesson's quiz"))
    })?;
    let choice = grading::normalize_answer(item, given).ok_or_else(|| {
        AppError::unprocessable(
            "invalid_answer",
            format!("answer: must be a choice index 0..{} or a choice's text", item.choices.len()),
        )
    })?;
    // Answers may be changed (the latest counts), within a bound: the run is
    // the evidence a certificate hashes. The run holds attempt.started + answers.
    let limit = grading::answer_event_limit(artifact.quiz.len());
    let event = NewEvent {
        id: runs::new_id(),
        kind: "attempt.answered".into(),
        payload: json!({"question_id": question_id, "choice": choice}),
    };
    let head = runs::known_head(&a.run_id).filter(|(seq, _)| *seq <= limit);
    if let (Some(_), Some((head_seq, head_hash))) = (&kept, &head) {
        // One round trip: the answer sealed after the head this isolate last
        // wrote, in a batch with a guard that fails it (NOT NULL) if the
        // attempt was submitted meanwhile. Either failing, nothing is written
        // and the reading path below answers.
        let sealed = runs::seal(&db, &attempt_run(&a), &a.learner_id, &[&event], *head_seq, head_hash, ctx.now_ms)?;
        let guard =
            store::stmt(&db, "UPDATE attempts SET submitted = NULL WHERE id = ?1 AND submitted != 0", &[t(id)])?;
        match sealed.write_after(&db, vec![guard]).await {
            Ok(appended) => {
                let (Appended::New { last_seq: seq, .. } | Appended::AlreadyThere { last_seq: seq, .. }) = appended;
                return created(json!({"attempt_id": id, "question_id": question_id, "choice": choice, "seq": seq}));
            }
            Err(e) if store::is_constraint(&e, "constraint failed") => {}
            Err(e) => return Err(e),
        }
    }
    let a = match kept {
        Some(_) => load_attempt(&db, id).await?,
        None => a,
    };
    if a.submitted != 0 {
        return Err(closed());
    }
    // The head this isolate last wrote answers the bound without a read when
    // the append is pinned to it: it lands only if that is still the head.
    let pinned = match head.map(|(seq, _)| seq) {
        Some(head) => match runs::append_events(
            &db,
            &attempt_run(&a),
            &a.learner_id,
            std::slice::from_ref(&event),
            Some(head),
            ctx.now_ms,
        )
        .await
        {
            Ok(appended) => Some(appended),
            Err(e) if e.code() == "seq_conflict" => None,
            Err(e) => return Err(e),
        },
        None => None,
    };
    let appended = match pinned {
        Some(appended) => appended,
        None => {
            if runs::last_seq(&db, &a.run_id).await? > limit {
                return Err(AppError::unprocessable(
                    "too_many_answers",
                    format!(
                        "this attempt already holds {limit} answers, the most one attempt may give; submit it or start another"
                    ),
                ));
            }
            runs::append_events(&db, &attempt_run(&a), &a.learner_id, &[event], None, ctx.now_ms).await?
        }
    };
    let (Appended::New { last_seq: seq, .. } | Appended::AlreadyThere { last_seq: seq, .. }) = appended;
    created(json!({"attempt_id": id, "question_id": question_id, "choice": choice, "seq": seq}))
}

async fn read_attempt(ctx: &mut Ctx, id: &str) -> AppResult<Response> {
    let claims = ctx.claims()?;
    let db = ctx.db()?;
    let a = load_attempt(&db, id).await?;
    own_attempt(&claims, &a)?;
    ok(json!({
        "attempt_id": a.id, "run_id": a.run_id, "lesson_id": a.lesson_id, "version": a.version,
        "submitted": a.submitted != 0, "score": a.score, "passed": a.passed.map(|p| p != 0), "certificate_id": a.certificate_id,
    }))
}

fn submit_json(a: &AttemptRow, correct: Option<u32>, total: Option<u32>, resubmitted: bool) -> Value {
    json!({"attempt_id": a.id, "score": a.score, "passed": a.passed.is_some_and(|p| p != 0),
           "correct": correct, "total": total, "certificate_id": a.certificate_id, "resubmitted": resubmitted})
}

/// Grade once, then finish idempotently: the attempt's grade is recorded
/// first (closing answers), the events carry fixed ids, and the certificate
/// row and the attempt's `certificate_id` are written in one batch. A fault
/// anywhere leaves a state the next submit completes; a certificate is never
/// issued twice (`attempt_id` is unique) and its id never changes.
async fn submit(ctx: &mut Ctx, id: &str) -> AppResult<Response> {
    let claims = ctx.claims()?;
    let db = ctx.db()?;
    let (a, events, open_slot) = attempt_and_events(&db, &claims, id).await?;
    own_attempt(&claims, &a)?;
    let unfinished = a.passed.is_some_and(|p| p != 0) && a.certificate_id.is_none();
    if a.submitted != 0 && !unfinished {
        // Submitting again answers the first result and never issues again.
        return ok(submit_json(&a, None, None, true));
    }
    let artifact = artifact_of(ctx, &a).await?;
    let answers = grading::answers_from_events(&events);
    let grade = grading::grade(&artifact.quiz, &answers, artifact.pass_threshold);
    let recorded = |a: &AttemptRow, score: f64, passed: bool| {
        [
            NewEvent {
                id: derived_id(&format!("attempt.submitted:{}", a.id)),
                kind: "attempt.submitted".into(),
                payload: json!({"answers": answers.len()}),
            },
            NewEvent {
                id: derived_id(&format!("attempt.graded:{}", a.id)),
                kind: "attempt.graded".into(),
                payload: json!({"score": score, "passed": passed, "correct": grade.correct, "total": grade.total, "certificate_id": passed.then(|| certificate_of(&a.id))}),
            },
        ]
    };
    // Flips to submitted exactly once: a concurrent or retried submit keeps
    // the first grade. A pass takes its status slot with it (a slot is keyed
    // by the certificate id, so any retry gets it back; a slot whose
    // certificate is never issued is a harmless unused bit).
    let slot_in_batch = grade.passed && a.certificate_id.is_none() && open_slot.is_none();
    let flip_and_slot = || -> AppResult<Vec<worker::D1PreparedStatement>> {
        let mut statements = vec![store::stmt(
            &db,
            concat!(
                "UPDATE attempts SET submitted = 1, score = ?2, passed = ?3 WHERE id = ?1 AND submitted = 0 RETURNING ",
                attempt_columns!()
            ),
            &[t(id), store::Arg::Real(grade.score), i(grade.passed as i64)],
        )?];
        if slot_in_batch {
            statements.push(store::stmt(&db, SLOT_SQL, &[t(&certificate_of(&a.id))])?);
        }
        Ok(statements)
    };
    // The common case is one round trip: the flip, the two events sealed
    // after the head read above and, for a pass, the certificate signed at
    // the slot taken with that read, in one batch. It lands whole or not at
    // all: an answer that landed since, our events written by an earlier try,
    // another submit's different grade (the guard below sets a NOT NULL column
    // to NULL) or its certificate abort it, and the steps run one by one.
    let head = match events.last() {
        None => Some((0, chain::GENESIS.to_owned())),
        Some(e) if !e.hash.is_empty() => Some((e.seq, e.hash.clone())),
        Some(_) => None,
    };
    let mut at_once = None;
    if let (0, Some((head_seq, head_hash))) = (a.submitted, head) {
        let ours = recorded(&a, grade.score, grade.passed);
        let mut sealed =
            runs::seal(&db, &attempt_run(&a), &a.learner_id, &[&ours[0], &ours[1]], head_seq, &head_hash, ctx.now_ms)?;
        let mut statements = flip_and_slot()?;
        statements.push(store::stmt(
            &db,
            "UPDATE attempts SET submitted = NULL WHERE id = ?1 AND (score IS NOT ?2 OR passed IS NOT ?3)",
            &[t(id), store::Arg::Real(grade.score), i(grade.passed as i64)],
        )?);
        statements.append(&mut sealed.statements);
        let cert_id = certificate_of(&a.id);
        let issued = match (grade.passed, open_slot) {
            (true, Some(n)) => {
                let mut covered = events.clone();
                covered.extend_from_slice(sealed.events());
                let issuance = Issuance {
                    a: &a,
                    artifact: &artifact,
                    cert_id: &cert_id,
                    score: grade.score,
                    seq_to: covered.last().map_or(0, |e| e.seq),
                    events_sha256: evidence_sha256(&covered),
                };
                // A certificate that cannot be signed now (a broken key) is
                // left to the issue below, which fails on its own: the grade
                // is recorded either way.
                match issuance.statements(ctx, &db, n).await {
                    Ok(mut issuing) => {
                        statements.append(&mut issuing);
                        true
                    }
                    Err(_) => false,
                }
            }
            _ => false,
        };
        match db.batch(statements).await {
            Ok(results) => at_once = Some((results, sealed, issued.then_some(cert_id))),
            Err(e) if store::is_constraint(&e, "constraint failed") => {}
            Err(e) => return Err(e),
        }
    }
    // Either way the batch began with `flip_and_slot`'s statements.
    let (results, sealed, issued) = match at_once {
        Some((results, sealed, issued)) => (results, Some(sealed), issued),
        None => (db.batch(flip_and_slot()?).await?, None, None),
    };
    let mut results = results.into_iter();
    let flipped = results.next().map(store::Rows::first::<AttemptRow>).transpose()?.flatten();
    let slot = match open_slot {
        Some(n) => Some(Slot { n }),
        None if slot_in_batch => results.next().map(store::Rows::first::<Slot>).transpose()?.flatten(),
        None => None,
    };
    // Not flipped here: an earlier submit did (in one batch, with the same
    // grade), and its grade stands.
    let mut a = match flipped {
        Some(a) => a,
        None => load_attempt(&db, id).await?,
    };
    let appended = match sealed {
        Some(sealed) => {
            if issued.is_some() {
                a.certificate_id = issued;
            }
            sealed.landed()
        }
        None => {
            let ours = recorded(&a, a.score.unwrap_or(grade.score), a.passed.is_some_and(|p| p != 0));
            runs::append_events(&db, &attempt_run(&a), &a.learner_id, &ours, None, ctx.now_ms).await?
        }
    };
    let (last_seq, written) = match appended {
        Appended::New { last_seq, events, .. } => (last_seq, events),
        Appended::AlreadyThere { last_seq, .. } => (last_seq, Vec::new()),
    };
    let passed = a.passed.is_some_and(|p| p != 0);
    let score = a.score.unwrap_or(grade.score);
    let certificate_id = passed.then(|| certificate_of(&a.id));
    if let (Some(cert_id), None) = (&certificate_id, &a.certificate_id) {
        // The evidence covers exactly events 1..=last_seq (the graded event):
        // those read above, then the rest: ours as written when nothing
        // landed in between, else read back (an answer that landed before
        // answers closed, or our events written by an earlier try).
        let mut covered = events;
        let read_to = covered.last().map_or(0, |e| e.seq);
        if written.first().is_some_and(|e| e.seq == read_to + 1) {
            covered.extend(written);
        } else {
            covered.extend(events_between(&db, &a.run_id, read_to, last_seq).await?);
        }
        covered.truncate(covered.partition_point(|e| e.seq <= last_seq));
        let events_sha256 = evidence_sha256(&covered);
        let issuance = Issuance { a: &a, artifact: &artifact, cert_id, score, seq_to: last_seq, events_sha256 };
        issue(ctx, &db, &issuance, slot.map(|s| s.n)).await?;
    }
    // Issued (here or by a concurrent submit: the id is derived, so the same).
    if certificate_id.is_some() {
        a.certificate_id = certificate_id;
    }
    let mut body = submit_json(&a, Some(grade.correct), Some(grade.total), false);
    // Additive: the pass mark and what was right, for the learner's feedback.
    super::http::set_field(&mut body, "pass_threshold", json!(artifact.pass_threshold));
    super::http::set_field(
        &mut body,
        "questions",
        crate::json_value::serialized(&grading::feedback(&artifact.quiz, &answers, &grade)),
    );
    ok(body)
}

store::d1_row! {
    struct Slot {
        n: u64,
    }
}

/// One statement hands out the next status slot: D1 runs statements one at a
/// time, so concurrent submits never read the same "next" (an optimistic
/// read-then-insert lost most races in a class of 100). A retry of the same
/// certificate id gets its own slot back.
const SLOT_SQL: &str = "INSERT INTO status_slots (n, certificate_id) VALUES ((SELECT COALESCE(MAX(n), -1) + 1 FROM status_slots), ?1) ON CONFLICT (certificate_id) DO UPDATE SET certificate_id = excluded.certificate_id RETURNING n";

/// What a certificate certifies: a passed attempt, its score and the hash of
/// its events 1..=`seq_to` (the graded event).
struct Issuance<'a> {
    a: &'a AttemptRow,
    artifact: &'a crate::lesson::Artifact,
    cert_id: &'a str,
    score: f64,
    seq_to: u64,
    events_sha256: String,
}

impl Issuance<'_> {
    /// The credential signed at status slot `n`, as the statements that
    /// record it (certificate row, the attempt's `certificate_id`, audit).
    async fn statements(&self, ctx: &Ctx, db: &Db, n: u64) -> AppResult<Vec<worker::D1PreparedStatement>> {
        let (a, artifact, cert_id) = (self.a, self.artifact, self.cert_id);
        let signer = issuer_signer(ctx).await?;
        let now = rfc3339_ms(ctx.now_ms);
        let (list, index) = certificate::status_slot(n);
        let list = list.to_string();
        let input = CredentialInput {
            certificate_id: format!("urn:uuid:{cert_id}"),
            issuer_id: issuer_id(ctx),
            issuer_name: issuer_name(ctx),
            learner_id: a.learner_id.clone(),
            lesson_id: a.lesson_id.clone(),
            lesson_version: a.version,
            lesson_title: artifact.title.clone(),
            lesson_sha256: artifact.sha256.clone(),
            criteria: format!(
                "Passed the quiz of \"{}\" (version {}) with a score of at least {}.",
                artifact.title, a.version, artifact.pass_threshold
            ),
            score: self.score,
            attempt_run_id: a.run_id.clone(),
            seq_from: 1,
            seq_to: self.seq_to,
            events_sha256: self.events_sha256.clone(),
            valid_from: now.clone(),
            status_list_url: status_list_url(ctx, &list),
            status_index: index,
        };
        let signed = signer.sign(certificate::build_credential(&input), &now).await?;
        Ok(vec![
            store::stmt(
                db,
                "INSERT INTO certificates (id, org, learner_id, learner_org, lesson_id, version, attempt_id, status_list, status_index, credential, issued_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                &[t(cert_id), t(&a.org), t(&a.learner_id), t(&a.learner_org), t(&a.lesson_id), i(a.version), t(&a.id), t(&list), u(index), t(&signed.to_string()), i(ctx.now_ms)],
            )?,
            store::stmt(
                db,
                "UPDATE attempts SET certificate_id = ?2 WHERE id = ?1 AND certificate_id IS NULL",
                &[t(&a.id), t(cert_id)],
            )?,
            store::audit_stmt(db, &a.org, ctx.now_ms, &a.learner_id, "certificate.issued", cert_id, &json!({"attempt_id": a.id, "lesson_id": a.lesson_id, "version": a.version}))?,
        ])
    }
}

/// Issue on its own: take a status slot (unless one is taken already), sign, write.
async fn issue(ctx: &Ctx, db: &Db, issuance: &Issuance<'_>, taken_slot: Option<u64>) -> AppResult<()> {
    let cert_id = issuance.cert_id;
    let mut taken_slot = taken_slot;
    for _ in 0..3 {
        let n = match taken_slot.take() {
            Some(n) => n,
            None => {
                store::first::<Slot>(db, SLOT_SQL, &[t(cert_id)])
                    .await?
                    .ok_or_else(|| AppError::internal("no status slot returned"))?
                    .n
            }
        };
        match db.batch(issuance.statements(ctx, db, n).await?).await {
            Ok(_) => return Ok(()),
            Err(e) if store::is_constraint(&e, "UNIQUE") => {
                // A concurrent submit of this attempt issued it: done.
                if load_attempt(db, &issuance.a.id).await?.certificate_id.is_some() {
                    return Ok(());
                }
                // The slot is taken by a certificate the slot table does not
                // know (D1 restored from an archive older than the table):
                // teach it every issued certificate's slot, then take the next.
                store::run(db, "DELETE FROM status_slots WHERE certificate_id = ?1", &[t(cert_id)]).await?;
                store::run(
                    db,
                    "INSERT OR IGNORE INTO status_slots (n, certificate_id) SELECT (CAST(status_list AS INTEGER) - 1) * 131072 + status_index, id FROM certificates",
                    &[],
                )
                .await?;
                continue;
            }
            Err(e) => return Err(e),
        }
    }
    Err(AppError::conflict("busy", "could not allocate a status index; retry"))
}

store::d1_row! {
    struct CertRow {
        id: String,
        org: String,
        learner_id: String,
        learner_org: String,
        lesson_id: String,
        version: u32,
        credential: String,
        issued_at: i64,
        revoked_at: Option<i64>,
    }
}

const CERT_COLUMNS: &str =
    "id, org, learner_id, COALESCE(learner_org, org) AS learner_org, lesson_id, version, credential, issued_at, revoked_at";

/// The learner themself (same user id in the same org), or a teacher /
/// governor of the certificate's (the lesson's) org.
fn may_read(claims: &Claims, c: &CertRow) -> AppResult<()> {
    if c.learner_id == claims.sub && c.learner_org == claims.org {
        return Ok(());
    }
    policy::authorize(
        claims,
        Action::CertificateReadAny,
        Scope { same_org: c.org == claims.org, owner: false },
        "certificate",
    )
}

async fn read(ctx: &mut Ctx, id: &str) -> AppResult<Response> {
    let claims = ctx.claims()?;
    let db = ctx.db()?;
    let c: CertRow = store::first(&db, &format!("SELECT {CERT_COLUMNS} FROM certificates WHERE id = ?1"), &[t(id)])
        .await?
        .ok_or_else(|| AppError::not_found("certificate"))?;
    may_read(&claims, &c)?;
    let credential: Value = serde_json::from_str(&c.credential).map_err(|e| AppError::internal(e.to_string()))?;
    ok(credential)
}

async fn list(ctx: &mut Ctx) -> AppResult<Response> {
    let claims = ctx.claims()?;
    let db = ctx.db()?;
    let rows: Vec<CertRow> = match (ctx.query("learner_id"), ctx.query("lesson_id")) {
        (Some(learner), _) => {
            let learner = path_id(learner, "learner")?.to_owned();
            if learner != claims.sub {
                policy::authorize(&claims, Action::CertificateReadAny, Scope::ORG, "certificate")?;
            }
            store::all(
                &db,
                &format!(
                    "SELECT {CERT_COLUMNS} FROM certificates WHERE learner_id = ?1 ORDER BY issued_at DESC LIMIT 500"
                ),
                &[t(&learner)],
            )
            .await?
        }
        (None, Some(lesson)) => {
            let lesson = path_id(lesson, "lesson")?.to_owned();
            store::all(
                &db,
                &format!(
                    "SELECT {CERT_COLUMNS} FROM certificates WHERE lesson_id = ?1 ORDER BY issued_at DESC LIMIT 500"
                ),
                &[t(&lesson)],
            )
            .await?
        }
        (None, None) => return Err(AppError::bad_request("invalid_query", "give learner_id or lesson_id")),
    };
    let mut visible: Vec<Value> = Vec::new();
    for c in rows.iter().filter(|c| may_read(&claims, c).is_ok()) {
        visible.push(json!({"certificate_id": c.id, "learner_id": c.learner_id, "lesson_id": c.lesson_id, "version": c.version,
               "issued_at": rfc3339_ms(c.issued_at), "revoked": c.revoked_at.is_some(), "url": format!("/v1/certificates/{}", c.id)}));
    }
    ok(json!({"certificates": visible}))
}

async fn revoke(ctx: &mut Ctx, id: &str) -> AppResult<Response> {
    let claims = ctx.claims()?;
    let db = ctx.db()?;
    let c: CertRow = store::first(&db, &format!("SELECT {CERT_COLUMNS} FROM certificates WHERE id = ?1"), &[t(id)])
        .await?
        .ok_or_else(|| AppError::not_found("certificate"))?;
    policy::authorize(
        &claims,
        Action::CertificateRevoke,
        Scope { same_org: c.org == claims.org, owner: false },
        "certificate",
    )?;
    let body = ctx.json().await.unwrap_or(Value::Null);
    let reason = body.get("reason").and_then(Value::as_str).unwrap_or("").chars().take(2000).collect::<String>();
    if c.revoked_at.is_none() {
        db.batch(vec![
            store::stmt(
                &db,
                "UPDATE certificates SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                &[t(id), i(ctx.now_ms)],
            )?,
            store::audit_stmt(
                &db,
                &c.org,
                ctx.now_ms,
                &claims.sub,
                "certificate.revoked",
                id,
                &json!({"reason": reason}),
            )?,
        ])
        .await?;
        edge_cache::bump(ctx, Family::Revocations).await;
    }
    ok(json!({"certificate_id": id, "status": "revoked"}))
}

async fn verify(ctx: &mut Ctx) -> AppResult<Response> {
    let body = ctx.json().await?;
    let credential = body.get("credential").filter(|c| c.is_object()).cloned().unwrap_or(body);
    // The key is chosen by the proof's verificationMethod among all published keys.
    let profile = issuer_profile(ctx).await?;
    let revoked =
        match certificate::status_entry(&credential).and_then(|(url, index)| Some((local_list(ctx, &url)?, index))) {
            Some((list, index)) => match revoked_indexes(ctx, &list).await {
                Ok(revoked) => Some(revoked.contains(&index)),
                Err(e) if e.status() == 404 => None,
                Err(e) => return Err(e),
            },
            _ => None,
        };
    let resolve = |vm: &str| certificate::resolve_from_profile(&profile, vm);
    let result = crate::webcrypto::verify(&credential, resolve, revoked, &rfc3339_ms(ctx.now_ms)).await;
    ok(crate::json_value::serialized(&result))
}

/// The revoked indexes of a status list: at the edge when warm (no D1), keyed
/// by the revocations stamp, which every revocation replaces. 404 for a list
/// that does not exist yet.
async fn revoked_indexes(ctx: &Ctx, list: &str) -> AppResult<Vec<u64>> {
    let key = format!("revoked:{list}");
    let mut entry = edge_cache::read_through(ctx, Some(Family::Revocations), &key, async {
        Ok(Entry::json(&json!(revoked_in_d1(&*ctx.db()?, list).await?), NO_STORE))
    })
    .await?;
    entry
        .value()
        .await?
        .as_array()
        .and_then(|indexes| indexes.iter().map(Value::as_u64).collect::<Option<Vec<u64>>>())
        .ok_or_else(|| AppError::internal("cached status list: not an array of indexes"))
}

/// The revoked indexes of a list as D1 holds them (404: no such list yet).
async fn revoked_in_d1(db: &Db, list: &str) -> AppResult<Vec<u64>> {
    // List 1 always exists (empty at first); a later one once it holds a certificate.
    if list != "1" {
        let used: Option<()> =
            store::first(db, "SELECT id FROM certificates WHERE status_list = ?1 LIMIT 1", &[t(list)]).await?;
        if used.is_none() {
            return Err(AppError::not_found("status list"));
        }
    }
    store::d1_row! {
        struct R {
            status_index: u64,
        }
    }
    let rows: Vec<R> = store::all(
        db,
        "SELECT status_index FROM certificates WHERE status_list = ?1 AND revoked_at IS NOT NULL",
        &[t(list)],
    )
    .await?;
    Ok(rows.into_iter().map(|r| r.status_index).collect())
}

/// The list id of one of our status list URLs (`…/v1/status-lists/{n}`).
fn local_list(ctx: &Ctx, url: &str) -> Option<String> {
    let list = url.strip_prefix(&status_list_url(ctx, ""))?;
    list_number(list).map(|n| n.to_string())
}

/// Status lists are numbered from 1 (a new one starts when one is full).
fn list_number(list: &str) -> Option<u64> {
    list.parse::<u64>().ok().filter(|n| *n >= 1 && list.len() <= 12 && !list.starts_with('0'))
}

pub async fn status_list(ctx: &mut Ctx, list: &str) -> AppResult<Response> {
    allow(&ctx.method(), &[Method::Get])?;
    if list_number(list).is_none() {
        return Err(AppError::not_found("status list"));
    }
    // Signed once per revocation stamp and location, not per request.
    let key = format!("status-list:{}:{list}", ctx.base_url());
    let entry = edge_cache::read_through(ctx, Some(Family::Revocations), &key, async {
        let revoked = revoked_in_d1(&*ctx.db()?, list).await?;
        let signer = issuer_signer(ctx).await?;
        let now = rfc3339_ms(ctx.now_ms);
        let credential =
            certificate::status_list_credential(&status_list_url(ctx, list), &issuer_id(ctx), &revoked, &now);
        Ok(Entry::json(&signer.sign(credential, &now).await?, NO_STORE))
    })
    .await?;
    entry.respond(ctx)
}
