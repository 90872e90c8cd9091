//! Live sessions over HTTP: create (pinned to an exact lesson version), join
//! by code, status, and the WebSocket / SSE doors into the session's
//! Durable Object. Authentication happens here; the object trusts the
//! identity headers because only this worker can reach it.

use super::http::{allow, created, ok, path_id, Ctx};
use super::store::{self, i, t, CLASSROOM};
use super::{lessons, runs, system};
use crate::classroom::{self, QuizRef, SessionConfig};
use crate::error::{AppError, AppResult};
use crate::identity::Claims;
use crate::json;
use crate::policy::{self, Action, Scope};
use worker::{Headers, Method, Response};

pub const HDR_USER: &str = "x-dropple-user";
pub const HDR_ROLE: &str = "x-dropple-role";
pub const HDR_ORG: &str = "x-dropple-org";
pub const HDR_OBSERVER_LIMIT: &str = "x-dropple-observer-limit";

store::d1_row! {
    #[derive(Clone)]
    pub struct SessionRow {
        pub id: String,
        pub org: String,
        pub teacher_id: String,
    }
}

pub async fn route(ctx: &mut Ctx, rest: &[&str]) -> AppResult<Response> {
    let m = ctx.method();
    match rest {
        [] => {
            allow(&m, &[Method::Post])?;
            create(ctx).await
        }
        [id] => {
            allow(&m, &[Method::Get])?;
            let id = path_id(id, "session")?.to_owned();
            status(ctx, &id).await
        }
        [id, "ws"] => {
            allow(&m, &[Method::Get])?;
            let id = path_id(id, "session")?.to_owned();
            connect(ctx, &id, "ws").await
        }
        [id, "sse"] => {
            allow(&m, &[Method::Get])?;
            let id = path_id(id, "session")?.to_owned();
            connect(ctx, &id, "sse").await
        }
        _ => Err(AppError::not_found("route")),
    }
}

pub async fn join(ctx: &mut Ctx, code: &str) -> AppResult<Response> {
    allow(&ctx.method(), &[Method::Get])?;
    let claims = ctx.claims()?;
    let code = classroom::normalize_join_code(code).ok_or_else(|| AppError::not_found("join code"))?;
    let db = ctx.db()?;
    store::d1_row! {
        struct Row {
            id: String,
            org: String,
            lesson_id: String,
            version: u32,
        }
    }
    let row: Option<Row> = store::first(
        &db,
        "SELECT id, org, lesson_id, version FROM sessions WHERE join_code = ?1 AND status != 'ended'",
        &[t(&code)],
    )
    .await?;
    let row = row.ok_or_else(|| AppError::not_found("join code"))?;
    // Another org's code answers exactly like an unknown one.
    let scope = Scope { same_org: row.org == claims.org, owner: false };
    policy::authorize(&claims, Action::SessionObserve, scope, "join code")?;
    ok(json!({"session_id": row.id, "lesson_id": row.lesson_id, "version": row.version}))
}

pub async fn load_session(ctx: &Ctx, id: &str) -> AppResult<SessionRow> {
    if let Some(kept) = SESSIONS_READ.with(|k| k.get(id)) {
        return Ok(kept);
    }
    let db = ctx.db()?;
    let row: SessionRow = store::first(&db, "SELECT id, org, teacher_id FROM sessions WHERE id = ?1", &[t(id)])
        .await?
        .ok_or_else(|| AppError::not_found("session"))?;
    SESSIONS_READ.with(|k| k.keep(id.to_owned(), row.clone()));
    Ok(row)
}

thread_local! {
    /// Session rows this isolate has read. What they hold (org, teacher,
    /// run) never changes once written, and a class of a hundred joining
    /// at once read the same row a hundred times.
    static SESSIONS_READ: store::Kept<SessionRow> = const { store::Kept::new(1024) };
}

fn random_bytes() -> [u8; 16] {
    let mut b = [0u8; 16];
    let _ = getrandom::fill(&mut b);
    b
}

async fn create(ctx: &mut Ctx) -> AppResult<Response> {
    let claims = ctx.claims()?;
    policy::authorize(&claims, Action::SessionCreate, Scope::ORG, "session")?;
    let body = ctx.json().await?;
    let (lesson_id, version) = crate::lesson::parse_version_ref(&body)?;
    let db = ctx.db()?;
    let lesson = lessons::load_lesson(&db, &lesson_id).await?.ok_or_else(|| AppError::not_found("lesson"))?;
    if lesson.org != claims.org {
        return Err(AppError::not_found("lesson"));
    }
    let row =
        lessons::load_version(&db, &lesson_id, version).await?.ok_or_else(|| AppError::not_found("lesson version"))?;
    let artifact = lessons::fetch_artifact(ctx, &row).await?;

    let (_, limits) = system::org_limits(ctx, &db, &claims.org).await?;
    store::d1_row! {
        struct N {
            n: u64,
        }
    }
    let live: Option<N> =
        store::first(&db, "SELECT COUNT(*) AS n FROM sessions WHERE org = ?1 AND status != 'ended'", &[t(&claims.org)])
            .await?;
    if let Err(e) = policy::check_limit("live_sessions", limits.live_sessions, live.map(|n| n.n).unwrap_or(0), 1) {
        store::audit(&db, &claims.org, ctx.now_ms, &claims.sub, "plan_limit.refused", "live_sessions", &json!({}))
            .await;
        return Err(e);
    }

    let run_id = runs::insert_run(&db, &claims.org, "session", &claims.sub, ctx.now_ms).await?;
    let session_id = runs::new_id();
    let mut join_code = String::new();
    for attempt in 0..6 {
        let code = classroom::join_code(&random_bytes());
        let inserted = store::run(
            &db,
            "INSERT INTO sessions (id, org, teacher_id, lesson_id, version, sha256, run_id, join_code, status, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'waiting', ?9)",
            &[t(&session_id), t(&claims.org), t(&claims.sub), t(&lesson_id), i(version), t(&row.sha256), t(&run_id), t(&code), i(ctx.now_ms)],
        )
        .await;
        match inserted {
            Ok(()) => {
                join_code = code;
                break;
            }
            Err(e) if store::is_constraint(&e, "UNIQUE") && attempt < 5 => continue,
            Err(e) => return Err(e),
        }
    }
    let config = SessionConfig {
        session_id: session_id.clone(),
        run_id: run_id.clone(),
        lesson_id: lesson_id.clone(),
        version,
        sha256: row.sha256.clone(),
        teacher_id: claims.sub.clone(),
        org: claims.org.clone(),
        step_count: artifact.timeline.len() as u32,
        quiz: artifact.quiz.iter().map(|q| QuizRef { id: q.id.clone(), choices: q.choices.len() as u32 }).collect(),
    };
    // The answer key rides beside the config, never in it: the config is
    // part of the state every observer receives.
    // Inserts, not `collect`: collecting into a map links a sort.
    let mut answer_key = classroom::AnswerKey::new();
    for q in &artifact.quiz {
        if let Some(answer) = crate::grading::answer_index(q).and_then(|a| u32::try_from(a).ok()) {
            answer_key.insert(q.id.clone(), answer);
        }
    }
    let init = classroom::SessionInit { config, answer_key };
    let body = serde_json::to_string(&init).map_err(|e| AppError::internal(e.to_string()))?;
    let resp = to_object(ctx, &session_id, "/init", Method::Post, Some(body), None).await?;
    if resp.status_code() != 200 {
        return Err(AppError::internal(format!("classroom init answered {}", resp.status_code())));
    }
    created(json!({
        "session_id": session_id, "join_code": join_code, "run_id": run_id,
        "lesson_id": lesson_id, "version": version, "sha256": row.sha256,
    }))
}

/// Call the session's Durable Object with the caller's identity attached.
async fn to_object(
    ctx: &Ctx,
    session_id: &str,
    path: &str,
    method: Method,
    body: Option<String>,
    who: Option<(&Claims, &str, u64)>,
) -> AppResult<Response> {
    let stub = ctx.env.durable_object(CLASSROOM)?.id_from_name(session_id)?.get_stub()?;
    let headers = Headers::new();
    if let Some((claims, role, observer_limit)) = who {
        headers.set(HDR_USER, &claims.sub)?;
        headers.set(HDR_ORG, &claims.org)?;
        headers.set(HDR_ROLE, role)?;
        headers.set(HDR_OBSERVER_LIMIT, &observer_limit.to_string())?;
    }
    if let Some(upgrade) = ctx.header("upgrade") {
        headers.set("upgrade", &upgrade)?;
    }
    if let Some(last) = ctx.header("last-event-id") {
        headers.set("last-event-id", &last)?;
    }
    // Only a validated number travels on (never the raw, decoded text).
    let query = ctx.query_u64("after").ok().flatten().map(|a| format!("?after={a}")).unwrap_or_default();
    let req = super::http::outgoing(&format!("https://classroom{path}{query}"), method, Some(&headers), body)?;
    Ok(stub.fetch_with_request(req).await?)
}

/// The session if the caller may observe it; another org's answers 404.
async fn observable_session(ctx: &Ctx, claims: &Claims, id: &str) -> AppResult<SessionRow> {
    let session = load_session(ctx, id).await?;
    let scope = Scope { same_org: session.org == claims.org, owner: session.teacher_id == claims.sub };
    policy::authorize(claims, Action::SessionObserve, scope, "session")?;
    Ok(session)
}

async fn status(ctx: &mut Ctx, id: &str) -> AppResult<Response> {
    let claims = ctx.claims()?;
    let session = observable_session(ctx, &claims, id).await?;
    let resp = to_object(ctx, &session.id, "/status", Method::Get, None, None).await?;
    Ok(resp)
}

async fn connect(ctx: &mut Ctx, id: &str, door: &str) -> AppResult<Response> {
    let claims = ctx.claims()?;
    let session = observable_session(ctx, &claims, id).await?;
    if door == "sse" {
        // A bad `after` is a 400, not a stream that silently starts elsewhere.
        ctx.query_u64("after")?;
    }
    if door == "ws" && !ctx.header("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
        return Err(AppError::rule(426, "upgrade_required", "this endpoint speaks WebSocket: send Upgrade: websocket"));
    }
    // The session's teacher drives; anyone else allowed in observes.
    let scope = Scope { same_org: session.org == claims.org, owner: session.teacher_id == claims.sub };
    let teacher = policy::decide(&claims.roles, Action::SessionTeach, scope) == policy::Decision::Allow;
    let role = if teacher && door == "ws" { "teacher" } else { "observer" };
    let db = ctx.db()?;
    let (_, limits) = system::org_limits(ctx, &db, &session.org).await?;
    let path = format!("/{door}");
    // The object records the attendance of anyone but the teacher (its
    // outbox carries it to D1 with the session's events).
    to_object(ctx, &session.id, &path, Method::Get, None, Some((&claims, role, limits.observers_per_session))).await
}

/// Did `user` attend the session this run records?
pub async fn attended(db: &store::Db, run_id: &str, user: &str) -> AppResult<bool> {
    store::d1_row! {
        struct One {
            #[allow(dead_code)]
            one: i64,
        }
    }
    let row: Option<One> =
        store::first(db, "SELECT 1 AS one FROM attendance WHERE run_id = ?1 AND user_id = ?2", &[t(run_id), t(user)])
            .await?;
    Ok(row.is_some())
}

/// `GET /v1/me/sessions`: the caller's past and open sessions (taught or
/// attended) and the runs they wrote themselves (recordings, attempts),
/// newest first, for /replay to pick from.
pub async fn mine(ctx: &mut Ctx) -> AppResult<Response> {
    allow(&ctx.method(), &[Method::Get])?;
    let claims = ctx.claims()?;
    let db = ctx.db()?;
    store::d1_row! {
        struct MySession {
            session_id: String,
            run_id: String,
            lesson_id: String,
            version: u32,
            title: String,
            join_code: String,
            status: String,
            role: String,
            created_at: i64,
        }
    }
    store::d1_row! {
        struct MyRun {
            run_id: String,
            kind: String,
            created_at: i64,
            lesson_id: Option<String>,
            version: Option<u32>,
            title: Option<String>,
        }
    }
    let sessions: Vec<MySession> = store::all(
        &db,
        "SELECT s.id AS session_id, s.run_id, s.lesson_id, s.version, COALESCE(v.title, '') AS title, s.join_code, s.status, \
         CASE WHEN s.teacher_id = ?2 THEN 'teacher' ELSE 'attendee' END AS role, s.created_at \
         FROM sessions s LEFT JOIN lesson_versions v ON v.lesson_id = s.lesson_id AND v.version = s.version \
         WHERE s.org = ?1 AND (s.teacher_id = ?2 OR s.run_id IN (SELECT run_id FROM attendance WHERE org = ?1 AND user_id = ?2)) \
         ORDER BY s.created_at DESC LIMIT 50",
        &[t(&claims.org), t(&claims.sub)],
    )
    .await?;
    let runs: Vec<MyRun> = store::all(
        &db,
        "SELECT r.id AS run_id, r.kind, r.created_at, a.lesson_id, a.version, v.title \
         FROM runs r LEFT JOIN attempts a ON a.run_id = r.id AND a.learner_id = r.creator \
         LEFT JOIN lesson_versions v ON v.lesson_id = a.lesson_id AND v.version = a.version \
         WHERE r.org = ?1 AND r.creator = ?2 AND r.kind != 'session' ORDER BY r.created_at DESC LIMIT 50",
        &[t(&claims.org), t(&claims.sub)],
    )
    .await?;
    let mut session_list = Vec::with_capacity(sessions.len());
    for s in &sessions {
        session_list.push(json!({
            "session_id": s.session_id, "run_id": s.run_id, "lesson_id": s.lesson_id, "version": s.version,
            "title": s.title, "join_code": s.join_code, "status": s.status, "role": s.role,
            "created_at": crate::run::rfc3339_ms(s.created_at),
        }));
    }
    let mut run_list = Vec::with_capacity(runs.len());
    for r in &runs {
        run_list.push(json!({
            "run_id": r.run_id, "kind": r.kind, "lesson_id": r.lesson_id, "version": r.version, "title": r.title,
            "created_at": crate::run::rfc3339_ms(r.created_at),
        }));
    }
    ok(json!({"sessions": session_list, "runs": run_list}))
}
