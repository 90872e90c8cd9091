//! AI jobs: requested over HTTP (202 at once, never waiting for a model),
//! run by the queue consumer in this same worker, retried with backoff,
//! dead-lettered after the last attempt, results cached per lesson version
//! and input. Rules and the builtin provider live in `crate::ai`.

use super::binding::{self, Binding};
use super::http::{self, allow, ok, path_id, Ctx};
use super::lessons::{self, LessonRow};
use super::runs::{self, RunRow};
use super::store::Db;
use super::store::{self, i, t, AI_JOBS};
use super::system;
use crate::ai::{self, JobKind, JobRequest};
use crate::decode;
use crate::error::{AppError, AppResult};
use crate::identity::Claims;
use crate::json;
use crate::lesson::Artifact;
use crate::policy::{self, Action, Scope};
use crate::run::{rfc3339_ms, NewEvent};
use serde_json::Value;
use wasm_bindgen::JsValue;
use worker::{Env, Method, Response};

/// Deliveries before a job is failed and dead-lettered (wrangler.toml's
/// `max_retries` + 1 must match).
pub const MAX_ATTEMPTS: u32 = 5;
pub const DLQ: &str = "dropple-ai-jobs-dlq";

/// Queue jobs for the consumer: a message is the JSON `{"job_id"}`, sent in
/// batches of at most 100 (a queue batch's limit).
async fn send_jobs(env: &Env, ids: &[&str]) -> AppResult<()> {
    let queue = Binding::of(env, AI_JOBS)?;
    for chunk in ids.chunks(100) {
        let batch = worker::js_sys::Array::new();
        for id in chunk {
            let body = binding::object(&[("job_id", JsValue::from_str(id))]);
            batch.push(&binding::object(&[("body", body), ("contentType", JsValue::from_str("json"))]));
        }
        queue.call("sendBatch", &[batch.into()]).await.map_err(AppError::internal)?;
    }
    Ok(())
}

/// The job a queue message names (`""` when it names none).
pub fn job_id(body: &JsValue) -> String {
    binding::text_field(body, "job_id").unwrap_or_default()
}

store::d1_row! {
    struct JobRow {
        id: String,
        org: String,
        kind: String,
        lesson_id: String,
        version: u32,
        input: String,
        status: String,
        attempts: u32,
        result: Option<String>,
        error: Option<String>,
        cached: u32,
        provider: String,
        run_id: Option<String>,
        session_id: Option<String>,
        fail_first: u32,
        created_at: i64,
        updated_at: i64,
        /// The job run's last event (seq, hash): read only by the consumer
        /// ([`load_job_for_consumer`]); `None` from every other query.
        head_seq: Option<u64>,
        head_hash: Option<String>,
    }
}

const JOB_COLUMNS: &str =
    "id, org, kind, lesson_id, version, input, status, attempts, result, error, cached, provider, run_id, session_id, fail_first, created_at, updated_at";

pub async fn route(ctx: &mut Ctx, rest: &[&str]) -> AppResult<Response> {
    let m = ctx.method();
    match rest {
        ["jobs"] => {
            allow(&m, &[Method::Post])?;
            request(ctx).await
        }
        ["jobs", id] => {
            allow(&m, &[Method::Get])?;
            let id = path_id(id, "job")?.to_owned();
            read(ctx, &id).await
        }
        _ => Err(AppError::not_found("route")),
    }
}

fn provider_name(env: &Env) -> String {
    env.var("AI_PROVIDER").map(|v| v.to_string()).unwrap_or_else(|_| "builtin".into())
}

fn model_name(env: &Env, provider: &str) -> String {
    match provider {
        "openai" => env.var("OPENAI_MODEL").map(|v| v.to_string()).unwrap_or_else(|_| "gpt-4o-mini".into()),
        "workers-ai" => env
            .var("WORKERS_AI_MODEL")
            .map(|v| v.to_string())
            .unwrap_or_else(|_| "@cf/meta/llama-3.1-8b-instruct".into()),
        _ => "builtin-1".into(),
    }
}

/// Who asks for a job and what follows from it.
pub struct Requester<'a> {
    pub org: &'a str,
    pub user: &'a str,
    /// Counted against the org's rate and monthly budget (publish-time jobs are
    /// batched by `on_publish`, which checks the monthly budget itself).
    pub counted: bool,
    /// A live explanation: the result goes back to this session.
    pub session_id: Option<&'a str>,
    pub fail_first: u32,
}

/// Check rate and hard limits, record the job and its run, queue it.
pub async fn enqueue(env: &Env, db: &Db, who: &Requester<'_>, req: &JobRequest, now_ms: i64) -> AppResult<String> {
    let (org, requester) = (who.org, who.user);
    if who.counted {
        let (_, limits) = system::org_limits_env(env, db, org, now_ms).await?;
        if let Err(e) = system::rate_limit(db, &format!("ai:{org}"), limits.ai_jobs_per_minute, 60_000, now_ms).await {
            store::audit(db, org, now_ms, requester, "rate_limit.refused", "ai_jobs_per_minute", &json!({})).await;
            return Err(e);
        }
        store::d1_row! {
            struct N {
                n: u64,
            }
        }
        let used: Option<N> = store::first(
            db,
            "SELECT COUNT(*) AS n FROM ai_jobs WHERE org = ?1 AND created_at >= ?2",
            &[t(org), i(system::month_start_ms(now_ms))],
        )
        .await?;
        if let Err(e) =
            policy::check_limit("ai_jobs_per_month", limits.ai_jobs_per_month, used.map(|u| u.n).unwrap_or(0), 1)
        {
            store::audit(db, org, now_ms, requester, "plan_limit.refused", "ai_jobs_per_month", &json!({})).await;
            return Err(e);
        }
    }
    let id = runs::new_id();
    let run_id = runs::insert_run(db, org, "ai_job", requester, now_ms).await?;
    let provider = provider_name(env);
    let input = serde_json::to_string(&req.input).map_err(|e| AppError::internal(e.to_string()))?;
    store::run(
        db,
        "INSERT INTO ai_jobs (id, org, requester, kind, lesson_id, version, input, status, provider, run_id, session_id, fail_first, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'queued', ?8, ?9, ?10, ?11, ?12, ?12)",
        &[t(&id), t(org), t(requester), t(req.kind.as_str()), t(&req.lesson_id), i(req.version), t(&input), t(&provider), t(&run_id), who.session_id.map(t).unwrap_or(store::Arg::Null), i(who.fail_first), i(now_ms)],
    )
    .await?;
    lifecycle(db, org, &run_id, "ai_job.queued", json!({"job_id": id, "kind": req.kind.as_str()}), now_ms).await;
    send_jobs(env, &[&id]).await?;
    Ok(id)
}

/// Lifecycle events go to the job's own run (and so to replay and xAPI).
async fn lifecycle(db: &Db, org: &str, run_id: &str, kind: &str, payload: Value, now_ms: i64) {
    let run = job_run(org, run_id);
    let ev = NewEvent { id: runs::new_id(), kind: kind.into(), payload };
    if let Err(e) = runs::append_events(db, &run, "system", &[ev], None, now_ms).await {
        super::log::error(&json!({"msg": "ai job lifecycle event lost", "run_id": run_id, "error": e.to_string()}));
    }
    log_lifecycle(kind, run_id);
}

fn log_lifecycle(kind: &str, run_id: &str) {
    super::log::info(&json!({"msg": "ai job", "event": kind, "run_id": run_id}));
}

async fn readable_lesson(db: &Db, claims: &Claims, lesson_id: &str, version: u32) -> AppResult<LessonRow> {
    let lesson = lessons::load_lesson(db, lesson_id).await?.ok_or_else(|| AppError::not_found("lesson"))?;
    lessons::load_version(db, lesson_id, version).await?.ok_or_else(|| AppError::not_found("lesson version"))?;
    if lesson.org != claims.org && !lessons::is_public(db, lesson_id, version).await? {
        return Err(AppError::not_found("lesson"));
    }
    Ok(lesson)
}

async fn request(ctx: &mut Ctx) -> AppResult<Response> {
    let claims = ctx.claims()?;
    policy::authorize(&claims, Action::AiJobCreate, Scope::ORG, "ai job")?;
    let mut body = ctx.json().await?;
    // Development-only fault injection for the retry and dead-letter paths.
    let fail_first = match body.as_object_mut().and_then(|o| o.remove("_fail_first")) {
        Some(v) if ctx.is_development() => v.as_u64().unwrap_or(0).min(100) as u32,
        Some(_) => return Err(AppError::bad_request("invalid_field", "_fail_first: only in development")),
        None => 0,
    };
    let req = ai::validate_request(&body)?;
    let db = ctx.db()?;
    readable_lesson(&db, &claims, &req.lesson_id, req.version).await?;
    // Refused now (nothing queued) rather than failed after every retry.
    if let ai::JobInput::ReviewAssist { listing_id } = &req.input {
        listing_facts(&db, listing_id, &claims.org).await?;
    }
    let who = Requester { org: &claims.org, user: &claims.sub, counted: true, session_id: None, fail_first };
    let id = enqueue(&ctx.env, &db, &who, &req, ctx.now_ms).await?;
    let mut r = super::http::json(202, &json!({"job_id": id, "status": "queued", "url": format!("/v1/ai/jobs/{id}")}))?;
    r.headers_mut().set("location", &format!("/v1/ai/jobs/{id}"))?;
    Ok(r)
}

async fn load_job(db: &Db, id: &str) -> AppResult<Option<JobRow>> {
    store::first(db, &format!("SELECT {JOB_COLUMNS} FROM ai_jobs WHERE id = ?1"), &[t(id)]).await
}

/// The job with its run's head, in the one read the consumer makes before
/// working: its lifecycle events are then sealed without reading it again.
async fn load_job_for_consumer(db: &Db, id: &str) -> AppResult<Option<JobRow>> {
    let head = "FROM events WHERE run_id = ai_jobs.run_id ORDER BY seq DESC LIMIT 1";
    store::first(
        db,
        &format!("SELECT {JOB_COLUMNS}, (SELECT seq {head}) AS head_seq, (SELECT hash {head}) AS head_hash FROM ai_jobs WHERE id = ?1"),
        &[t(id)],
    )
    .await
}

/// A job's status change (`update`, bound with `args`) and the lifecycle
/// event that records it, in one D1 batch when the run's head is known: this
/// isolate's, or read with the job. The event is sealed after that head and
/// the batch lands whole only if it still is the head. Without a head, or
/// when the batch fails (a redelivery of the job raced this one and moved
/// the head, or D1 refused it), the change alone and then the event through
/// the append path, as two round trips: the outcome is the same.
async fn mark(
    db: &Db,
    job: &JobRow,
    update: &str,
    args: &[store::Arg<'_>],
    kind: &str,
    payload: Value,
    now_ms: i64,
) -> AppResult<()> {
    let run_id = job.run_id.as_deref().unwrap_or_default();
    // The head this isolate wrote last, else the one read with the job. A
    // row without one (read by another query, or holding events from before
    // the chain) leaves the event to the append path, which reads it.
    let head = runs::known_head(run_id).or_else(|| job.head_seq.zip(job.head_hash.clone()));
    if let (Some((head_seq, prev)), false) = (head, run_id.is_empty()) {
        let run = job_run(&job.org, run_id);
        let event = NewEvent { id: runs::new_id(), kind: kind.into(), payload: payload.clone() };
        let sealed = runs::seal(db, &run, "system", &[&event], head_seq, &prev, now_ms)?;
        if sealed.write_after(db, vec![store::stmt(db, update, args)?]).await.is_ok() {
            log_lifecycle(kind, run_id);
            return Ok(());
        }
    }
    store::run(db, update, args).await?;
    lifecycle(db, &job.org, run_id, kind, payload, now_ms).await;
    Ok(())
}

fn job_run(org: &str, run_id: &str) -> RunRow {
    RunRow { id: run_id.into(), org: org.into(), kind: "ai_job".into(), creator: "system".into(), created_at: 0 }
}

fn job_json(j: &JobRow) -> Value {
    json!({
        "job_id": j.id, "kind": j.kind, "lesson_id": j.lesson_id, "version": j.version, "status": j.status,
        "attempts": j.attempts, "provider": j.provider, "cached": j.cached != 0, "run_id": j.run_id,
        "input": serde_json::from_str::<Value>(&j.input).unwrap_or(Value::Null),
        "result": j.result.as_deref().and_then(|r| serde_json::from_str::<Value>(r).ok()),
        "error": j.error, "created_at": rfc3339_ms(j.created_at), "updated_at": rfc3339_ms(j.updated_at),
    })
}

async fn read(ctx: &mut Ctx, id: &str) -> AppResult<Response> {
    let claims = ctx.claims()?;
    let db = ctx.db()?;
    let job = load_job(&db, id).await?.ok_or_else(|| AppError::not_found("job"))?;
    if job.org != claims.org {
        return Err(AppError::not_found("job"));
    }
    store::d1_row! {
        struct N {
            n: u64,
        }
    }
    let letters: Option<N> =
        store::first(&db, "SELECT COUNT(*) AS n FROM ai_dead_letters WHERE job_id = ?1", &[t(id)]).await?;
    if !matches!(job.status.as_str(), "succeeded" | "failed") {
        // Read-repair: a queue message lost (e.g. a local runtime restart)
        // leaves a job waiting forever; a stale one is sent again.
        requeue_stale(&ctx.env, &db, Some(id), ctx.now_ms).await?;
    }
    let mut v = job_json(&job);
    super::http::set_field(&mut v, "dead_lettered", json!(letters.is_some_and(|l| l.n > 0)));
    ok(v)
}

/// On publish: explanations for every step (up to 200), queued as system
/// jobs, cached with the version. They count against the org's monthly AI
/// budget (not its per-minute rate): steps past the budget are skipped and
/// the skip is audited, never failing the publish. All jobs, their runs and
/// their `ai_job.queued` events are written in one D1 batch, then sent with
/// `send_batch`; a send that fails leaves them queued for `requeue_stale`.
/// Returns a summary for the publish response.
pub async fn on_publish(ctx: &Ctx, claims: &Claims, artifact: &Artifact) -> Value {
    if ctx.var("AI_ON_PUBLISH").as_deref() == Some("off") {
        return json!({"queued": 0, "skipped": 0, "reason": "disabled"});
    }
    match queue_explanations(ctx, claims, artifact).await {
        Ok(summary) => summary,
        Err(e) => {
            super::log::error(&json!({"msg": "publish-time explanations not queued", "error": e.to_string()}));
            json!({"queued": 0, "skipped": artifact.timeline.len().min(200), "reason": "internal_error"})
        }
    }
}

async fn queue_explanations(ctx: &Ctx, claims: &Claims, artifact: &Artifact) -> AppResult<Value> {
    let db = ctx.db()?;
    let org = claims.org.as_str();
    let wanted = artifact.timeline.len().min(200) as u64;
    let (_, limits) = system::org_limits(ctx, &db, org).await?;
    store::d1_row! {
        struct N {
            n: u64,
        }
    }
    let used: Option<N> = store::first(
        &db,
        "SELECT COUNT(*) AS n FROM ai_jobs WHERE org = ?1 AND created_at >= ?2",
        &[t(org), i(system::month_start_ms(ctx.now_ms))],
    )
    .await?;
    let queued = policy::budget_room(limits.ai_jobs_per_month, used.map(|u| u.n).unwrap_or(0), wanted);
    let skipped = wanted - queued;
    let reason = (skipped > 0).then_some("ai_jobs_per_month");
    if let Some(reason) = reason {
        let detail = json!({"lesson_id": artifact.lesson_id, "version": artifact.version, "requested": wanted, "queued": queued, "skipped": skipped});
        store::audit(&db, org, ctx.now_ms, &claims.sub, "ai_explanations.skipped", reason, &detail).await;
    }
    if queued == 0 {
        return Ok(json!({"queued": 0, "skipped": skipped, "reason": reason}));
    }
    let provider = provider_name(&ctx.env);
    let mut jobs: Vec<Value> = Vec::with_capacity(queued as usize);
    for step in 1..=queued {
        let input = ai::JobInput::Explain { step: step as u32 };
        let (id, run_id, event_id) = (runs::new_id(), runs::new_id(), runs::new_id());
        // The job run's first event, sealed here like every other (seq 1 of a new run).
        let queued = crate::run::Event {
            id: event_id.clone(),
            run_id: run_id.clone(),
            seq: 1,
            kind: "ai_job.queued".into(),
            payload: json!({"job_id": id, "kind": "explain"}),
            timestamp: ctx.now_ms,
            author_id: "system".into(),
            hash: String::new(),
        };
        let hash = crate::chain::event_hash(crate::chain::GENESIS, &queued);
        jobs.push(json!({"id": id, "run_id": run_id, "event_id": event_id, "hash": hash,
               "input": serde_json::to_string(&input).unwrap_or_default()}));
    }
    let list = Value::Array(jobs.clone()).to_string();
    let now = ctx.now_ms;
    // One parameter carries every job (json_each): three statements whatever the count.
    db.batch(vec![
        store::stmt(
            &db,
            "INSERT INTO runs (id, org, kind, creator, created_at) SELECT json_extract(value, '$.run_id'), ?2, 'ai_job', 'system', ?3 FROM json_each(?1)",
            &[t(&list), t(org), i(now)],
        )?,
        store::stmt(
            &db,
            "INSERT INTO ai_jobs (id, org, requester, kind, lesson_id, version, input, status, provider, run_id, session_id, fail_first, created_at, updated_at) \
             SELECT json_extract(value, '$.id'), ?2, 'system', 'explain', ?3, ?4, json_extract(value, '$.input'), 'queued', ?5, json_extract(value, '$.run_id'), NULL, 0, ?6, ?6 FROM json_each(?1)",
            &[t(&list), t(org), t(&artifact.lesson_id), i(artifact.version), t(&provider), i(now)],
        )?,
        store::stmt(
            &db,
            "INSERT INTO events (run_id, seq, id, type, payload, timestamp, author_id, org, hash) \
             SELECT json_extract(value, '$.run_id'), 1, json_extract(value, '$.event_id'), 'ai_job.queued', json_object('job_id', json_extract(value, '$.id'), 'kind', 'explain'), ?2, 'system', ?3, json_extract(value, '$.hash') FROM json_each(?1)",
            &[t(&list), i(now), t(org)],
        )?,
    ])
    .await?;
    let ids: Vec<&str> = jobs.iter().filter_map(|j| j["id"].as_str()).collect();
    if let Err(e) = send_jobs(&ctx.env, &ids).await {
        super::log::error(
            &json!({"msg": "publish-time explanations not sent; requeue_stale resends them", "error": e.to_string()}),
        );
    }
    Ok(json!({"queued": queued, "skipped": skipped, "reason": reason}))
}

/// `GET /v1/lessons/{id}/versions/{v}/explanations`: the publish-time
/// explanations that are ready, by step.
pub async fn explanations(ctx: &mut Ctx, lesson_id: &str, version: u32) -> AppResult<Response> {
    let claims = ctx.claims()?;
    let db = ctx.db()?;
    let lesson = readable_lesson(&db, &claims, lesson_id, version).await?;
    store::d1_row! {
        struct R {
            id: String,
            run_id: Option<String>,
            input: String,
            status: String,
            result: Option<String>,
        }
    }
    let rows: Vec<R> = store::all(
        &db,
        "SELECT id, run_id, input, status, result FROM ai_jobs WHERE lesson_id = ?1 AND version = ?2 AND kind = 'explain' AND requester = 'system' AND org = ?3 ORDER BY created_at",
        &[t(lesson_id), i(version), t(&lesson.org)],
    )
    .await?;
    let mut steps: Vec<Value> = Vec::with_capacity(rows.len());
    for r in &rows {
        let input = serde_json::from_str::<Value>(&r.input).unwrap_or(Value::Null);
        steps.push(json!({"step": input.get("step"), "status": r.status, "job_id": r.id, "run_id": r.run_id,
               "explanation": r.result.as_deref().and_then(|x| serde_json::from_str::<Value>(x).ok())}));
    }
    ok(json!({"lesson_id": lesson_id, "version": version, "explanations": steps}))
}

/// Jobs still queued or running long after their last change lost their
/// queue message: claim them (bump `updated_at`) and send them again. The
/// consumer ignores finished jobs, so a late duplicate message is harmless.
pub async fn requeue_stale(env: &Env, db: &Db, only: Option<&str>, now_ms: i64) -> AppResult<usize> {
    let stale_ms = env.var("AI_STALE_SECS").ok().and_then(|v| v.to_string().parse::<i64>().ok()).unwrap_or(60) * 1000;
    store::d1_row! {
        struct Id {
            id: String,
        }
    }
    let ids: Vec<Id> = store::all(
        db,
        "UPDATE ai_jobs SET updated_at = ?1 WHERE id IN (SELECT id FROM ai_jobs WHERE status IN ('queued', 'running') AND updated_at < ?2 AND (?3 IS NULL OR id = ?3) LIMIT 100) RETURNING id",
        &[i(now_ms), i(now_ms - stale_ms), only.map(t).unwrap_or(store::Arg::Null)],
    )
    .await?;
    send_jobs(env, &ids.iter().map(|job| job.id.as_str()).collect::<Vec<_>>()).await?;
    if !ids.is_empty() {
        super::log::info(&json!({"msg": "ai jobs re-sent", "count": ids.len()}));
    }
    Ok(ids.len())
}

// ------------------------------------------------------------------ consumer

pub enum Outcome {
    Done,
    RetryAfter(u32),
}

/// Process one delivery. Never an `Err` for the caller: the queue handler
/// must ack or retry every message itself.
pub async fn process(env: &Env, job_id: &str, now_ms: i64) -> Outcome {
    match process_inner(env, job_id, now_ms).await {
        Ok(outcome) => outcome,
        Err(e) => {
            super::log::error(&json!({"msg": "ai job processing fault", "job_id": job_id, "error": e.to_string()}));
            Outcome::RetryAfter(ai::retry_delay_secs(1))
        }
    }
}

async fn process_inner(env: &Env, job_id: &str, now_ms: i64) -> AppResult<Outcome> {
    let db = store::db(env)?;
    let Some(job) = load_job_for_consumer(&db, job_id).await? else { return Ok(Outcome::Done) };
    // Already finished (a redelivery): never run twice to completion.
    if job.status == "succeeded" || job.status == "failed" {
        return Ok(Outcome::Done);
    }
    let attempt = job.attempts + 1;
    mark(
        &db,
        &job,
        "UPDATE ai_jobs SET status = 'running', attempts = ?2, updated_at = ?3 WHERE id = ?1",
        &[t(job_id), i(attempt), i(now_ms)],
        "ai_job.running",
        json!({"attempt": attempt}),
        now_ms,
    )
    .await?;

    let result = run_job(env, &db, &job, attempt).await;
    match result {
        Ok((value, cached)) => {
            // Delivered before the job is marked done: a retry may deliver again,
            // and the session drops the duplicate by job id.
            if let (Some(session_id), Ok(ai::JobInput::Explain { step })) =
                (&job.session_id, decode::from_text(&job.input, ai::JobInput::from_value))
            {
                deliver_to_session(env, session_id, step, job_id, &value).await?;
            }
            mark(
                &db,
                &job,
                "UPDATE ai_jobs SET status = 'succeeded', result = ?2, cached = ?3, error = NULL, updated_at = ?4 WHERE id = ?1",
                &[t(job_id), t(&value.to_string()), i(cached as i64), i(now_ms)],
                "ai_job.succeeded",
                json!({"attempt": attempt, "cached": cached}),
                now_ms,
            )
            .await?;
            Ok(Outcome::Done)
        }
        Err(e) => {
            let message = e.public_message();
            let retryable = !(400..=499).contains(&e.status()) || e.status() == 429;
            if retryable && attempt < MAX_ATTEMPTS {
                mark(
                    &db,
                    &job,
                    "UPDATE ai_jobs SET status = 'queued', error = ?2, updated_at = ?3 WHERE id = ?1",
                    &[t(job_id), t(&message), i(now_ms)],
                    "ai_job.retrying",
                    json!({"attempt": attempt, "error": message}),
                    now_ms,
                )
                .await?;
                let scale = env.var("AI_RETRY_SCALE").ok().and_then(|v| v.to_string().parse::<u32>().ok()).unwrap_or(1);
                Ok(Outcome::RetryAfter(ai::retry_delay_secs(attempt).saturating_mul(scale)))
            } else {
                fail(&db, &job, &message, now_ms).await?;
                // Dead-lettered here, on the job's own count, not by the queue's count of
                // this message's deliveries: a job's message can be re-sent (requeue_stale)
                // while a retry is pending, and then the delivery that makes the last
                // attempt is not that message's last, and would be acked as "finished".
                if retryable {
                    dead_letter(env, job_id, &json!({"job_id": job_id}).to_string(), now_ms).await;
                }
                Ok(Outcome::Done)
            }
        }
    }
}

/// A live explanation goes back to its session as an event. A failure here
/// retries the job (the result is cached, so the provider is not asked again).
async fn deliver_to_session(env: &Env, session_id: &str, step: u32, job_id: &str, result: &Value) -> AppResult<()> {
    let text = result.get("text").and_then(Value::as_str).unwrap_or_default();
    let body = json!({"step": step, "job_id": job_id, "text": text}).to_string();
    let stub = env.durable_object(store::CLASSROOM)?.id_from_name(session_id)?.get_stub()?;
    let req = http::outgoing("https://classroom/explanation", Method::Post, None, Some(body))?;
    let resp = stub.fetch_with_request(req).await?;
    if resp.status_code() != 200 {
        return Err(AppError::internal(format!("session answered {}", resp.status_code())));
    }
    Ok(())
}

async fn fail(db: &Db, job: &JobRow, message: &str, now_ms: i64) -> AppResult<()> {
    mark(
        db,
        job,
        "UPDATE ai_jobs SET status = 'failed', error = ?2, updated_at = ?3 WHERE id = ?1 AND status != 'succeeded'",
        &[t(&job.id), t(message), i(now_ms)],
        "ai_job.failed",
        json!({"error": message}),
        now_ms,
    )
    .await
}

/// The dead-letter consumer: record the letter; the job is failed for good.
pub async fn dead_letter(env: &Env, job_id: &str, body: &str, now_ms: i64) {
    let Ok(db) = store::db(env) else { return };
    let _ = store::run(
        &db,
        "INSERT INTO ai_dead_letters (job_id, body, at) VALUES (?1, ?2, ?3)",
        &[t(job_id), t(body), i(now_ms)],
    )
    .await;
    if let Ok(Some(job)) = load_job_for_consumer(&db, job_id).await {
        if job.status != "succeeded" && job.status != "failed" {
            let _ = fail(&db, &job, "dead-lettered after the last attempt", now_ms).await;
        }
    }
}

async fn run_job(env: &Env, db: &Db, job: &JobRow, attempt: u32) -> AppResult<(Value, bool)> {
    let row = lessons::load_version(db, &job.lesson_id, job.version)
        .await?
        .ok_or_else(|| AppError::unprocessable("lesson_gone", "the lesson version no longer exists"))?;
    let input = decode::from_text(&job.input, ai::JobInput::from_value).map_err(AppError::internal)?;
    let kind = JobKind::parse(&job.kind).ok_or_else(|| AppError::internal("unknown job kind"))?;
    let model = model_name(env, &job.provider);
    let key = ai::cache_key(kind, &row.sha256, &input, &job.provider, &model);
    store::d1_row! {
        struct Cached {
            result: String,
        }
    }
    if let Some(c) =
        store::first::<Cached>(db, "SELECT result FROM ai_results WHERE cache_key = ?1", &[t(&key)]).await?
    {
        if let Ok(v) = serde_json::from_str(&c.result) {
            store::run(db, "UPDATE ai_jobs SET cache_key = ?2 WHERE id = ?1", &[t(&job.id), t(&key)]).await?;
            return Ok((v, true));
        }
    }
    if attempt <= job.fail_first {
        return Err(AppError::internal(format!(
            "injected fault: attempt {attempt} of the first {} fails",
            job.fail_first
        )));
    }
    let artifact = lessons::fetch_artifact_env(env, &row).await?;
    let listing = match &input {
        ai::JobInput::ReviewAssist { listing_id } => Some(listing_facts(db, listing_id, &job.org).await?),
        _ => None,
    };
    let value = match job.provider.as_str() {
        "openai" => openai(env, kind, &input, &artifact, &model).await?,
        "workers-ai" => workers_ai(env, kind, &input, &artifact, &model).await?,
        _ => ai::run_builtin(kind, &input, &artifact, listing.as_ref())?,
    };
    db.batch(vec![
        store::stmt(
            db,
            "INSERT OR IGNORE INTO ai_results (cache_key, result, created_at) VALUES (?1, ?2, ?3)",
            &[t(&key), t(&value.to_string()), i(super::now_ms())],
        )?,
        store::stmt(db, "UPDATE ai_jobs SET cache_key = ?2 WHERE id = ?1", &[t(&job.id), t(&key)])?,
    ])
    .await?;
    Ok((value, false))
}

/// Only the job's own org's listings: another org's answer the same as none.
async fn listing_facts(db: &Db, listing_id: &str, org: &str) -> AppResult<ai::ListingFacts> {
    store::d1_row! {
        struct L {
            title: String,
            summary: String,
        }
    }
    let l: L =
        store::first(db, "SELECT title, summary FROM listings WHERE id = ?1 AND org = ?2", &[t(listing_id), t(org)])
            .await?
            .ok_or_else(|| AppError::unprocessable("unknown_listing", "review_assist: listing_id does not exist"))?;
    Ok(ai::ListingFacts { title: l.title, summary: l.summary })
}

/// Any OpenAI-compatible chat-completions endpoint, with a timeout.
async fn openai(env: &Env, kind: JobKind, input: &ai::JobInput, artifact: &Artifact, model: &str) -> AppResult<Value> {
    use worker::{AbortController, Fetch, Headers};
    let base = env
        .var("OPENAI_BASE_URL")
        .map(|v| v.to_string())
        .map_err(|_| AppError::internal("OPENAI_BASE_URL is not set"))?;
    let key = env.secret("OPENAI_API_KEY").map(|v| v.to_string()).unwrap_or_default();
    let body = ai::openai_request(kind, input, artifact, model);
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    if !key.is_empty() {
        headers.set("authorization", &format!("Bearer {key}"))?;
    }
    let url = format!("{}/chat/completions", base.trim_end_matches('/'));
    let req = http::outgoing(&url, Method::Post, Some(&headers), Some(body.to_string()))?;
    let controller = AbortController::default();
    let signal = controller.signal();
    let timeout_ms = env.var("OPENAI_TIMEOUT_MS").ok().and_then(|v| v.to_string().parse().ok()).unwrap_or(20_000u64);
    let fetch = Fetch::Request(req);
    let call = fetch.send_with_signal(&signal);
    let timer = worker::Delay::from(std::time::Duration::from_millis(timeout_ms));
    futures_util::pin_mut!(call);
    futures_util::pin_mut!(timer);
    let resp = match futures_util::future::select(call, timer).await {
        futures_util::future::Either::Left((r, _)) => r?,
        futures_util::future::Either::Right(_) => {
            controller.abort();
            // A 5xx rule: retried like any provider fault, and the job says why.
            return Err(AppError::rule(
                504,
                "provider_timeout",
                format!("the AI provider did not answer within {timeout_ms} ms"),
            ));
        }
    };
    if resp.status_code() >= 400 {
        return Err(AppError::internal(format!("the AI provider answered {}", resp.status_code())));
    }
    let unreadable = |e: String| AppError::internal(format!("provider response unreadable: {e}"));
    let bytes = super::binding::response_bytes(&resp.into()).await.map_err(unreadable)?;
    let text = String::from_utf8(bytes).map_err(|e| unreadable(e.to_string()))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| unreadable(e.to_string()))?;
    ai::parse_openai_response(&v, kind)
}

/// Workers AI in production. It cannot run offline (no binding locally), so
/// without the `AI` binding this is a clear failure, not a silent fallback.
async fn workers_ai(
    env: &Env,
    kind: JobKind,
    input: &ai::JobInput,
    artifact: &Artifact,
    model: &str,
) -> AppResult<Value> {
    let binding =
        Binding::of(env, "AI").map_err(|_| AppError::internal("AI_PROVIDER=workers-ai needs the AI binding"))?;
    let body = ai::openai_request(kind, input, artifact, model);
    let messages = body.get("messages").cloned().unwrap_or(Value::Null);
    // JSON text across the boundary, both ways: serde_json is linked anyway.
    let run_input = worker::js_sys::JSON::parse(&json!({"messages": messages}).to_string())
        .map_err(|e| AppError::internal(super::store::js_message(&e)))?;
    let output = binding.call("run", &[JsValue::from_str(model), run_input]).await.map_err(AppError::internal)?;
    let out: Value = worker::js_sys::JSON::stringify(&output)
        .ok()
        .and_then(|text| serde_json::from_str(&String::from(text)).ok())
        .unwrap_or(Value::Null);
    let content = out.get("response").cloned().unwrap_or(Value::Null);
    ai::parse_openai_response(&json!({"choices": [{"message": {"content": content}}]}), kind)
}
