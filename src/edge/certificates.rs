//! Attempts and certificates over HTTP. An attempt is a run of `attempt.*`
//! events; grading is the pure `grading` module; a pass issues one Open
//! Badges 3.0 credential signed with Ed25519 (eddsa-jcs-2022), revocable
//! through a Bitstring Status List.

use super::http::{allow, created, ok, path_id, Ctx};
use super::lessons::{self, LessonRow};
use super::runs::{self, Appended, RunRow};
use super::store::{self, i, t, u};
use crate::canonical::canonical_sha256;
use crate::certificate::{self, CredentialInput, IssuerKey, STATUS_LIST_SIZE};
use crate::error::{AppError, AppResult};
use crate::grading;
use crate::identity::Claims;
use crate::policy::{self, Action, Scope};
use crate::run::{rfc3339_ms, NewEvent};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use worker::{D1Database, Method, Response};

/// One status list for now; a second starts when it is full.
const STATUS_LIST: &str = "1";

#[derive(Deserialize)]
struct AttemptRow {
    id: String,
    org: String,
    learner_id: String,
    lesson_id: String,
    version: u32,
    run_id: String,
    submitted: u32,
    score: Option<f64>,
    passed: Option<u32>,
    certificate_id: Option<String>,
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

fn signing_key(ctx: &Ctx) -> AppResult<IssuerKey> {
    let secret = ctx.var("CERT_SIGNING_KEY").ok_or_else(|| AppError::internal("CERT_SIGNING_KEY is not set"))?;
    let key_id = ctx.var("CERT_KEY_ID").unwrap_or_else(|| "key-1".into());
    IssuerKey::parse(&secret, &key_id).map_err(|e| AppError::internal(format!("CERT_SIGNING_KEY: {e}")))
}

pub async fn issuer(ctx: &mut Ctx) -> AppResult<Response> {
    allow(&ctx.method(), &[Method::Get])?;
    let key = signing_key(ctx)?;
    ok(certificate::issuer_profile(&issuer_id(ctx), &issuer_name(ctx), &[key.public()]))
}

async fn load_attempt(db: &D1Database, id: &str) -> AppResult<AttemptRow> {
    store::first(
        db,
        "SELECT id, org, learner_id, lesson_id, version, run_id, submitted, score, passed, certificate_id FROM attempts WHERE id = ?1",
        &[t(id)],
    )
    .await?
    .ok_or_else(|| AppError::not_found("attempt"))
}

/// The attempt's own learner only; anyone else in the org is refused, other orgs see nothing.
fn own_attempt(claims: &Claims, a: &AttemptRow) -> AppResult<()> {
    if a.org != claims.org && a.learner_id != claims.sub {
        return Err(AppError::not_found("attempt"));
    }
    if a.learner_id != claims.sub {
        return Err(AppError::forbidden("only the learner who started an attempt works on it"));
    }
    Ok(())
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

async fn append(db: &D1Database, a: &AttemptRow, kind: &str, payload: Value, now_ms: i64) -> AppResult<u64> {
    let ev = NewEvent { id: runs::new_id(), kind: kind.into(), payload };
    match runs::append_events(db, &attempt_run(a), &a.learner_id, &[ev], None, now_ms).await? {
        Appended::New { last_seq, .. } | Appended::AlreadyThere { last_seq, .. } => Ok(last_seq),
    }
}

async fn start(ctx: &mut Ctx) -> AppResult<Response> {
    let claims = ctx.claims()?;
    policy::authorize(&claims, Action::AttemptCreate, Scope::ORG, "attempt")?;
    let body = ctx.json().await?;
    let (lesson_id, version) = crate::lesson::parse_version_ref(&body)?;
    let db = store::db(&ctx.env)?;
    let lesson = lessons::load_lesson(&db, &lesson_id).await?.ok_or_else(|| AppError::not_found("lesson"))?;
    let row =
        lessons::load_version(&db, &lesson_id, version).await?.ok_or_else(|| AppError::not_found("lesson version"))?;
    if lesson.org != claims.org && !lessons::is_public(&db, &lesson_id, version).await? {
        return Err(AppError::not_found("lesson"));
    }
    let run_id = runs::insert_run(&db, &lesson.org, "attempt", &claims.sub, ctx.now_ms).await?;
    let id = runs::new_id();
    store::run(
        &db,
        "INSERT INTO attempts (id, org, learner_id, lesson_id, version, sha256, run_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        &[t(&id), t(&lesson.org), t(&claims.sub), t(&lesson_id), i(version), t(&row.sha256), t(&run_id), i(ctx.now_ms)],
    )
    .await?;
    let a = load_attempt(&db, &id).await?;
    append(
        &db,
        &a,
        "attempt.started",
        json!({"lesson_id": lesson_id, "version": version, "sha256": row.sha256}),
        ctx.now_ms,
    )
    .await?;
    created(json!({"attempt_id": id, "run_id": run_id, "lesson_id": lesson_id, "version": version}))
}

async fn artifact_of(ctx: &Ctx, db: &D1Database, a: &AttemptRow) -> AppResult<(LessonRow, crate::lesson::Artifact)> {
    let lesson =
        lessons::load_lesson(db, &a.lesson_id).await?.ok_or_else(|| AppError::internal("attempt's lesson missing"))?;
    let row = lessons::load_version(db, &a.lesson_id, a.version)
        .await?
        .ok_or_else(|| AppError::internal("attempt's version missing"))?;
    Ok((lesson, lessons::fetch_artifact(ctx, &row).await?))
}

async fn answer(ctx: &mut Ctx, id: &str) -> AppResult<Response> {
    let claims = ctx.claims()?;
    let db = store::db(&ctx.env)?;
    let a = load_attempt(&db, id).await?;
    own_attempt(&claims, &a)?;
    let body = ctx.json().await?;
    if a.submitted != 0 {
        return Err(AppError::conflict("attempt_submitted", "this attempt was already submitted; answers are closed"));
    }
    let question_id = body
        .get("question_id")
        .and_then(Value::as_str)
        .ok_or_else(|| AppError::bad_request("invalid_field", "question_id: required string"))?;
    let given = body.get("answer").ok_or_else(|| AppError::bad_request("invalid_field", "answer: required"))?;
    let (_, artifact) = artifact_of(ctx, &db, &a).await?;
    let item = artifact.quiz.iter().find(|q| q.id == question_id).ok_or_else(|| {
        AppError::unprocessable("unknown_question", format!("question_id: {question_id} is not in this lesson's quiz"))
    })?;
    let choice = grading::normalize_answer(item, given).ok_or_else(|| {
        AppError::unprocessable(
            "invalid_answer",
            format!("answer: must be a choice index 0..{} or a choice's text", item.choices.len()),
        )
    })?;
    let seq =
        append(&db, &a, "attempt.answered", json!({"question_id": question_id, "choice": choice}), ctx.now_ms).await?;
    created(json!({"attempt_id": id, "question_id": question_id, "choice": choice, "seq": seq}))
}

async fn read_attempt(ctx: &mut Ctx, id: &str) -> AppResult<Response> {
    let claims = ctx.claims()?;
    let db = store::db(&ctx.env)?;
    let a = load_attempt(&db, id).await?;
    own_attempt(&claims, &a)?;
    ok(json!({
        "attempt_id": a.id, "run_id": a.run_id, "lesson_id": a.lesson_id, "version": a.version,
        "submitted": a.submitted != 0, "score": a.score, "passed": a.passed.map(|p| p != 0), "certificate_id": a.certificate_id,
    }))
}

async fn submit(ctx: &mut Ctx, id: &str) -> AppResult<Response> {
    let claims = ctx.claims()?;
    let db = store::db(&ctx.env)?;
    let a = load_attempt(&db, id).await?;
    own_attempt(&claims, &a)?;
    if a.submitted != 0 {
        // Submitting again answers the first result and never issues again.
        return ok(
            json!({"attempt_id": a.id, "score": a.score, "passed": a.passed.is_some_and(|p| p != 0), "certificate_id": a.certificate_id, "resubmitted": true}),
        );
    }
    let (lesson, artifact) = artifact_of(ctx, &db, &a).await?;
    let events = runs::events_page(&db, &a.run_id, 0, i64::MAX as u64, 1000).await?;
    let mut answers = BTreeMap::new();
    for e in events.iter().filter(|e| e.kind == "attempt.answered") {
        if let (Some(q), Some(c)) = (e.payload["question_id"].as_str(), e.payload["choice"].as_u64()) {
            answers.insert(q.to_owned(), c as usize);
        }
    }
    let grade = grading::grade(&artifact.quiz, &answers, artifact.pass_threshold);
    append(&db, &a, "attempt.submitted", json!({"answers": answers.len()}), ctx.now_ms).await?;
    let certificate_id = if grade.passed { Some(runs::new_id()) } else { None };
    let last_seq = append(
        &db,
        &a,
        "attempt.graded",
        json!({"score": grade.score, "passed": grade.passed, "correct": grade.correct, "total": grade.total, "certificate_id": certificate_id}),
        ctx.now_ms,
    )
    .await?;
    // The attempt flips to submitted exactly once: a concurrent submit loses here.
    let flipped: Option<Value> = store::first(
        &db,
        "UPDATE attempts SET submitted = 1, score = ?2, passed = ?3, certificate_id = ?4 WHERE id = ?1 AND submitted = 0 RETURNING id",
        &[t(id), store::Arg::Real(grade.score), i(grade.passed as i64), certificate_id.as_deref().map(t).unwrap_or(store::Arg::Null)],
    )
    .await?;
    if flipped.is_none() {
        let a = load_attempt(&db, id).await?;
        return ok(
            json!({"attempt_id": a.id, "score": a.score, "passed": a.passed.is_some_and(|p| p != 0), "certificate_id": a.certificate_id, "resubmitted": true}),
        );
    }
    if let Some(cert_id) = &certificate_id {
        let all = runs::events_page(&db, &a.run_id, 0, last_seq, 1000).await?;
        let events_sha256 = canonical_sha256(&serde_json::to_value(&all).unwrap_or(Value::Null));
        issue(ctx, &db, &a, &lesson, &artifact, cert_id, grade.score, last_seq, &events_sha256).await?;
    }
    ok(
        json!({"attempt_id": id, "score": grade.score, "passed": grade.passed, "correct": grade.correct, "total": grade.total, "certificate_id": certificate_id}),
    )
}

#[allow(clippy::too_many_arguments)]
async fn issue(
    ctx: &Ctx,
    db: &D1Database,
    a: &AttemptRow,
    lesson: &LessonRow,
    artifact: &crate::lesson::Artifact,
    cert_id: &str,
    score: f64,
    seq_to: u64,
    events_sha256: &str,
) -> AppResult<()> {
    let key = signing_key(ctx)?;
    let now = rfc3339_ms(ctx.now_ms);
    for _ in 0..5 {
        #[derive(Deserialize)]
        struct Next {
            n: Option<u64>,
        }
        let next: Option<Next> = store::first(
            db,
            "SELECT MAX(status_index) + 1 AS n FROM certificates WHERE status_list = ?1",
            &[t(STATUS_LIST)],
        )
        .await?;
        let index = next.and_then(|n| n.n).unwrap_or(0);
        if index as usize >= STATUS_LIST_SIZE {
            return Err(AppError::internal("status list full"));
        }
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
            score,
            attempt_run_id: a.run_id.clone(),
            seq_from: 1,
            seq_to,
            events_sha256: events_sha256.to_owned(),
            valid_from: now.clone(),
            status_list_url: status_list_url(ctx, STATUS_LIST),
            status_index: index,
        };
        let signed = certificate::sign(certificate::build_credential(&input), &key, &now);
        let stmts = vec![
            store::stmt(
                db,
                "INSERT INTO certificates (id, org, learner_id, lesson_id, version, attempt_id, status_list, status_index, credential, issued_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                &[t(cert_id), t(&a.org), t(&a.learner_id), t(&a.lesson_id), i(a.version), t(&a.id), t(STATUS_LIST), u(index), t(&signed.to_string()), i(ctx.now_ms)],
            )?,
            store::audit_stmt(db, &lesson.org, ctx.now_ms, &a.learner_id, "certificate.issued", cert_id, &json!({"attempt_id": a.id, "lesson_id": a.lesson_id, "version": a.version}))?,
        ];
        match db.batch(stmts).await.map_err(AppError::from) {
            Ok(_) => return Ok(()),
            // Another issue took this index at the same moment: take the next.
            Err(e) if store::is_constraint(&e, "UNIQUE") => continue,
            Err(e) => return Err(e),
        }
    }
    Err(AppError::conflict("busy", "could not allocate a status index; retry"))
}

#[derive(Deserialize)]
struct CertRow {
    id: String,
    org: String,
    learner_id: String,
    lesson_id: String,
    version: u32,
    credential: String,
    issued_at: i64,
    revoked_at: Option<i64>,
}

const CERT_COLUMNS: &str = "id, org, learner_id, lesson_id, version, credential, issued_at, revoked_at";

/// The learner themself, or a teacher / governor of the certificate's org.
fn may_read(claims: &Claims, c: &CertRow) -> AppResult<()> {
    if c.learner_id == claims.sub {
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
    let db = store::db(&ctx.env)?;
    let c: CertRow = store::first(&db, &format!("SELECT {CERT_COLUMNS} FROM certificates WHERE id = ?1"), &[t(id)])
        .await?
        .ok_or_else(|| AppError::not_found("certificate"))?;
    may_read(&claims, &c)?;
    let credential: Value = serde_json::from_str(&c.credential).map_err(|e| AppError::internal(e.to_string()))?;
    ok(credential)
}

async fn list(ctx: &mut Ctx) -> AppResult<Response> {
    let claims = ctx.claims()?;
    let db = store::db(&ctx.env)?;
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
    let visible: Vec<Value> = rows
        .into_iter()
        .filter(|c| may_read(&claims, c).is_ok())
        .map(|c| {
            json!({"certificate_id": c.id, "learner_id": c.learner_id, "lesson_id": c.lesson_id, "version": c.version,
                   "issued_at": rfc3339_ms(c.issued_at), "revoked": c.revoked_at.is_some(), "url": format!("/v1/certificates/{}", c.id)})
        })
        .collect();
    ok(json!({"certificates": visible}))
}

async fn revoke(ctx: &mut Ctx, id: &str) -> AppResult<Response> {
    let claims = ctx.claims()?;
    let db = store::db(&ctx.env)?;
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
    }
    ok(json!({"certificate_id": id, "status": "revoked"}))
}

async fn verify(ctx: &mut Ctx) -> AppResult<Response> {
    let body = ctx.json().await?;
    let credential = body.get("credential").filter(|c| c.is_object()).cloned().unwrap_or(body);
    let key = signing_key(ctx)?;
    let profile = certificate::issuer_profile(&issuer_id(ctx), &issuer_name(ctx), &[key.public()]);
    let revoked = match certificate::status_entry(&credential) {
        Some((list_url, index)) if list_url == status_list_url(ctx, STATUS_LIST) => {
            #[derive(Deserialize)]
            struct R {
                revoked_at: Option<i64>,
            }
            let row: Option<R> = store::first(
                &store::db(&ctx.env)?,
                "SELECT revoked_at FROM certificates WHERE status_list = ?1 AND status_index = ?2",
                &[t(STATUS_LIST), u(index)],
            )
            .await?;
            row.map(|r| r.revoked_at.is_some())
        }
        _ => None,
    };
    let result = certificate::verify(
        &credential,
        |vm| certificate::resolve_from_profile(&profile, vm),
        revoked,
        &rfc3339_ms(ctx.now_ms),
    );
    ok(serde_json::to_value(result).unwrap_or(Value::Null))
}

pub async fn status_list(ctx: &mut Ctx, list: &str) -> AppResult<Response> {
    allow(&ctx.method(), &[Method::Get])?;
    if list != STATUS_LIST {
        return Err(AppError::not_found("status list"));
    }
    #[derive(Deserialize)]
    struct R {
        status_index: u64,
    }
    let db = store::db(&ctx.env)?;
    let rows: Vec<R> = store::all(
        &db,
        "SELECT status_index FROM certificates WHERE status_list = ?1 AND revoked_at IS NOT NULL",
        &[t(list)],
    )
    .await?;
    let revoked: Vec<u64> = rows.into_iter().map(|r| r.status_index).collect();
    let key = signing_key(ctx)?;
    let now = rfc3339_ms(ctx.now_ms);
    let credential = certificate::status_list_credential(&status_list_url(ctx, list), &issuer_id(ctx), &revoked, &now);
    ok(certificate::sign(credential, &key, &now))
}
