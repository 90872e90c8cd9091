//! Health, development tokens, orgs (usage), the audit log and metrics.

use super::http::{allow, created, ok, path_id, Ctx};
use super::store::Db;
use super::store::{self, i, t};
use crate::decode::{self, Obj};
use crate::error::{AppError, AppResult};
use crate::identity::{self, Claims, Role};
use crate::json;
use crate::policy::{self, Action, Plan, Scope};
use serde_json::Value;
use worker::{Method, Response};

pub async fn route(ctx: &mut Ctx, rest: &[&str]) -> AppResult<Response> {
    let m = ctx.method();
    match rest {
        ["health"] => {
            allow(&m, &[Method::Get])?;
            ok(json!({"ok": true, "version": env!("CARGO_PKG_VERSION")}))
        }
        ["dev", "tokens"] if ctx.is_development() => {
            allow(&m, &[Method::Post])?;
            dev_token(ctx).await
        }
        ["dev", "faults"] if ctx.is_development() => {
            allow(&m, &[Method::Put])?;
            set_fault(ctx).await
        }
        ["dev", "orgs", org, "plan"] if ctx.is_development() => {
            allow(&m, &[Method::Put])?;
            let org = path_id(org, "org")?.to_owned();
            set_plan(ctx, &org).await
        }
        ["orgs", org, "usage"] => {
            allow(&m, &[Method::Get])?;
            let org = path_id(org, "org")?.to_owned();
            usage(ctx, &org).await
        }
        ["users", id] => {
            allow(&m, &[Method::Get])?;
            let id = path_id(id, "user")?.to_owned();
            read_user(ctx, &id).await
        }
        ["users", id, "personal-data"] => {
            allow(&m, &[Method::Delete])?;
            let id = path_id(id, "user")?.to_owned();
            erase(ctx, &id).await
        }
        ["audit"] => {
            allow(&m, &[Method::Get])?;
            audit(ctx).await
        }
        ["metrics"] => {
            allow(&m, &[Method::Get])?;
            metrics(ctx).await
        }
        _ => Err(AppError::not_found("route")),
    }
}

async fn dev_token(ctx: &mut Ctx) -> AppResult<Response> {
    struct Body {
        sub: String,
        org: String,
        roles: Vec<Role>,
        ttl_secs: Option<i64>,
        display_name: Option<String>,
    }
    let value = ctx.json().await?;
    let decoded = Obj::of(&value).and_then(|o| {
        o.only(&["sub", "org", "roles", "ttl_secs", "display_name"]);
        let body = Body {
            sub: o.req("sub", decode::text),
            org: o.req("org", decode::text),
            roles: o.req("roles", |v| decode::list(v, Role::from_value)),
            ttl_secs: o.opt("ttl_secs", decode::int),
            display_name: o.opt("display_name", decode::text),
        };
        o.done(body)
    });
    let body = decoded.map_err(|e| AppError::bad_request("invalid_field", e))?;
    if !identity::is_valid_id(&body.sub) || !identity::is_valid_id(&body.org) {
        return Err(AppError::bad_request(
            "invalid_field",
            "sub and org: ids of [A-Za-z0-9._-], at most 64 characters",
        ));
    }
    let ttl = body.ttl_secs.unwrap_or(12 * 3600).clamp(1, 30 * 24 * 3600);
    let claims = Claims { sub: body.sub, org: body.org, roles: body.roles, exp: ctx.now_ms / 1000 + ttl };
    let db = ctx.db()?;
    ensure_org(&db, &claims.org, ctx.now_ms).await?;
    if let Some(name) = body.display_name.filter(|n| !n.is_empty() && n.chars().count() <= 100) {
        store::run(&db, "INSERT INTO people (id, org, display_name) VALUES (?1, ?2, ?3) ON CONFLICT (id) DO UPDATE SET display_name = excluded.display_name WHERE erased_at IS NULL", &[t(&claims.sub), t(&claims.org), t(&name)]).await?;
    } else {
        // Record the membership, so another org cannot claim this user (erasure).
        store::run(
            &db,
            "INSERT INTO people (id, org) VALUES (?1, ?2) ON CONFLICT (id) DO NOTHING",
            &[t(&claims.sub), t(&claims.org)],
        )
        .await?;
    }
    let token = identity::issue(&claims, ctx.auth_secret()?.as_bytes())?;
    created(json!({"token": token, "claims": crate::json_value::serialized(&claims)}))
}

/// Development-only fault switches. `d1_writes: "fail"` makes the classroom
/// outbox's D1 writes fail until set back to `"ok"`; `d1_delay_ms` (0..5000)
/// is added to every D1 call, a far primary simulated. Fields left out keep
/// their value; the answer is the switches as they now stand.
async fn set_fault(ctx: &mut Ctx) -> AppResult<Response> {
    let body = ctx.json().await?;
    let writes = match body.get("d1_writes") {
        None => None,
        Some(v) => match v.as_str() {
            Some(v @ ("fail" | "ok")) => Some(v.to_owned()),
            _ => return Err(AppError::bad_request("invalid_field", "d1_writes: must be \"fail\" or \"ok\"")),
        },
    };
    let delay =
        match body.get("d1_delay_ms") {
            None => None,
            Some(v) => Some(v.as_u64().filter(|ms| *ms <= 5000).ok_or_else(|| {
                AppError::bad_request("invalid_field", "d1_delay_ms: must be an integer from 0 to 5000")
            })? as u32),
        };
    if let Some(unknown) = body.as_object().and_then(|o| o.keys().find(|k| *k != "d1_writes" && *k != "d1_delay_ms")) {
        return Err(AppError::bad_request(
            "invalid_field",
            format!("{unknown}: not a fault switch (d1_writes, d1_delay_ms)"),
        ));
    }
    let db = ctx.db()?;
    if let Some(value) = &writes {
        store::run(&db, "INSERT INTO dev_faults (name, value) VALUES ('d1_writes', ?1) ON CONFLICT (name) DO UPDATE SET value = excluded.value", &[t(value)]).await?;
    }
    if let Some(ms) = delay {
        store::set_d1_delay_ms(ms);
    }
    store::d1_row! {
        struct V {
            value: String,
        }
    }
    let current: Option<V> = store::first(&db, "SELECT value FROM dev_faults WHERE name = 'd1_writes'", &[]).await?;
    ok(
        json!({"d1_writes": current.map(|v| v.value).unwrap_or_else(|| "ok".into()), "d1_delay_ms": store::d1_delay_ms()}),
    )
}

/// Development-only: move an org to another plan (`{"plan": "pro"}`).
async fn set_plan(ctx: &mut Ctx, org: &str) -> AppResult<Response> {
    let body = ctx.json().await?;
    let plan = body
        .get("plan")
        .and_then(Value::as_str)
        .and_then(Plan::parse)
        .ok_or_else(|| AppError::bad_request("invalid_field", "plan: must be free, pro or enterprise"))?;
    let db = ctx.db()?;
    ensure_org(&db, org, ctx.now_ms).await?;
    store::run(&db, "UPDATE orgs SET plan = ?1 WHERE id = ?2", &[t(plan.as_str()), t(org)]).await?;
    PLANS_READ.with(|p| p.keep(org.to_owned(), (plan, ctx.now_ms)));
    ok(json!({"org": org, "plan": plan.as_str()}))
}

/// Orgs are created on first sight (development) on the free plan.
pub async fn ensure_org(db: &Db, org: &str, now_ms: i64) -> AppResult<()> {
    store::run(db, "INSERT OR IGNORE INTO orgs (id, plan, created_at) VALUES (?1, 'free', ?2)", &[t(org), i(now_ms)])
        .await
}

pub async fn org_plan(db: &Db, org: &str, now_ms: i64) -> AppResult<Plan> {
    store::d1_row! {
        struct Row {
            plan: String,
        }
    }
    let fresh = PLANS_READ.with(|p| p.get(org)).filter(|(_, at)| (0..PLAN_FRESH_MS).contains(&(now_ms - at)));
    if let Some((plan, _)) = fresh {
        return Ok(plan);
    }
    let plan = match store::first::<Row>(db, "SELECT plan FROM orgs WHERE id = ?1", &[t(org)]).await? {
        Some(r) => Plan::parse(&r.plan).unwrap_or(Plan::Free),
        None => {
            ensure_org(db, org, now_ms).await?;
            Plan::Free
        }
    };
    PLANS_READ.with(|p| p.keep(org.to_owned(), (plan, now_ms)));
    Ok(plan)
}

thread_local! {
    /// Org plans as last read, and when. A plan changes rarely, and a change
    /// made through this isolate is seen at once: a join or an attempt reads
    /// it at most every `PLAN_FRESH_MS`, not on every request.
    static PLANS_READ: store::Kept<(Plan, i64)> = const { store::Kept::new(4096) };
}

/// How long a plan read by another isolate's change may be seen late.
const PLAN_FRESH_MS: i64 = 10_000;

/// The org's plan and its limits, with `PLAN_OVERRIDES` applied.
pub async fn org_limits(ctx: &Ctx, db: &Db, org: &str) -> AppResult<(Plan, policy::Limits)> {
    org_limits_env(&ctx.env, db, org, ctx.now_ms).await
}

pub async fn org_limits_env(env: &worker::Env, db: &Db, org: &str, now_ms: i64) -> AppResult<(Plan, policy::Limits)> {
    let plan = org_plan(db, org, now_ms).await?;
    let overrides = env.var("PLAN_OVERRIDES").ok().and_then(|v| serde_json::from_str::<Value>(&v.to_string()).ok());
    Ok((plan, plan.limits().with_overrides(plan, overrides.as_ref())))
}

/// Count one request against a fixed per-org window; 429 past the limit.
pub async fn rate_limit(db: &Db, key: &str, limit: u64, window_ms: i64, now_ms: i64) -> AppResult<()> {
    store::d1_row! {
        struct Row {
            count: u64,
        }
    }
    let start = policy::rate_window_start(now_ms, window_ms);
    let row: Option<Row> = store::first(
        db,
        "INSERT INTO rate_windows (key, window_start, count) VALUES (?1, ?2, 1) \
         ON CONFLICT (key) DO UPDATE SET count = CASE WHEN window_start = excluded.window_start THEN count + 1 ELSE 1 END, window_start = excluded.window_start \
         RETURNING count",
        &[t(key), i(start)],
    )
    .await?;
    policy::rate_verdict(row.map(|r| r.count).unwrap_or(1), limit, now_ms, window_ms)
}

async fn usage(ctx: &mut Ctx, org: &str) -> AppResult<Response> {
    let claims = ctx.claims()?;
    policy::authorize(&claims, Action::UsageRead, Scope { same_org: claims.org == org, owner: false }, "org")?;
    let db = ctx.db()?;
    let (plan, limits) = org_limits(ctx, &db, org).await?;
    let used = usage_counts(&db, org, ctx.now_ms).await?;
    ok(json!({"org": org, "plan": plan.as_str(), "limits": crate::json_value::serialized(&limits), "usage": used}))
}

/// Current use, read from the records themselves (tables created by later
/// migrations are counted when present).
async fn usage_counts(db: &Db, org: &str, _now_ms: i64) -> AppResult<Value> {
    store::d1_row! {
        struct N {
            n: u64,
        }
    }
    let runs: Option<N> = store::first(db, "SELECT COUNT(*) AS n FROM runs WHERE org = ?1", &[t(org)]).await?;
    let events: Option<N> = store::first(db, "SELECT COUNT(*) AS n FROM events WHERE org = ?1", &[t(org)]).await?;
    let live: Option<N> =
        store::first(db, "SELECT COUNT(*) AS n FROM sessions WHERE org = ?1 AND status != 'ended'", &[t(org)]).await?;
    let media: Option<N> =
        store::first(db, "SELECT COALESCE(SUM(size), 0) AS n FROM asset_owners WHERE org = ?1", &[t(org)]).await?;
    let ai_month: Option<N> = store::first(
        db,
        "SELECT COUNT(*) AS n FROM ai_jobs WHERE org = ?1 AND created_at >= ?2",
        &[t(org), i(month_start_ms(_now_ms))],
    )
    .await?;
    Ok(json!({
        "runs": runs.map(|r| r.n).unwrap_or(0),
        "events": events.map(|r| r.n).unwrap_or(0),
        "live_sessions": live.map(|r| r.n).unwrap_or(0),
        "media_bytes": media.map(|r| r.n).unwrap_or(0),
        "ai_jobs_this_month": ai_month.map(|r| r.n).unwrap_or(0),
    }))
}

store::d1_row! {
    struct PersonRow {
        org: String,
        display_name: Option<String>,
        email: Option<String>,
        erased_at: Option<i64>,
    }
}

/// A stable pseudonym: what every read shows once personal data is erased.
fn pseudonym(user_id: &str) -> String {
    format!("learner-{}", &crate::canonical::sha256_hex(user_id.as_bytes())[..8])
}

async fn read_user(ctx: &mut Ctx, id: &str) -> AppResult<Response> {
    let claims = ctx.claims()?;
    let db = ctx.db()?;
    let person: Option<PersonRow> =
        store::first(&db, "SELECT org, display_name, email, erased_at FROM people WHERE id = ?1", &[t(id)]).await?;
    let same_org = person.as_ref().map_or(claims.org.clone(), |p| p.org.clone()) == claims.org;
    if !same_org {
        return Err(AppError::not_found("user"));
    }
    let (name, email, erased) = match person {
        Some(p) if p.erased_at.is_none() => (p.display_name, if claims.sub == id { p.email } else { None }, false),
        Some(_) => (None, None, true),
        None => (None, None, false),
    };
    ok(
        json!({"user_id": id, "pseudonym": pseudonym(id), "display_name": name.unwrap_or_else(|| pseudonym(id)), "email": email, "erased": erased}),
    )
}

/// Right to erasure: personal data goes, the event log (which only ever
/// carries the pseudonymous id) stays as it was.
async fn erase(ctx: &mut Ctx, id: &str) -> AppResult<Response> {
    let claims = ctx.claims()?;
    let db = ctx.db()?;
    let person: Option<PersonRow> =
        store::first(&db, "SELECT org, display_name, email, erased_at FROM people WHERE id = ?1", &[t(id)]).await?;
    // A person nobody has recorded belongs to no org yet: only they may erase
    // (and so claim) that id; a governor elsewhere must not.
    let org = match &person {
        Some(p) => p.org.clone(),
        None if claims.sub == id => claims.org.clone(),
        None => return Err(AppError::not_found("user")),
    };
    policy::authorize(
        &claims,
        Action::PersonalDataErase,
        Scope { same_org: org == claims.org, owner: claims.sub == id },
        "user",
    )?;
    db.batch(vec![
        store::stmt(
            &db,
            "INSERT INTO people (id, org, erased_at) VALUES (?1, ?2, ?3) ON CONFLICT (id) DO UPDATE SET display_name = NULL, email = NULL, erased_at = excluded.erased_at",
            &[t(id), t(&org), i(ctx.now_ms)],
        )?,
        store::audit_stmt(&db, &org, ctx.now_ms, &claims.sub, "personal_data.erased", id, &json!({}))?,
    ])
    .await?;
    ok(json!({"user_id": id, "erased": true, "pseudonym": pseudonym(id)}))
}

pub use crate::timefmt::month_start_ms;

async fn audit(ctx: &mut Ctx) -> AppResult<Response> {
    let claims = ctx.claims()?;
    let org = ctx.query("org_id").unwrap_or(&claims.org).to_owned();
    policy::authorize(&claims, Action::AuditRead, Scope { same_org: org == claims.org, owner: false }, "org")?;
    let after = ctx.query_u64("after")?.unwrap_or(0);
    let limit = ctx.query_u64("limit")?.unwrap_or(100).clamp(1, 500);
    store::d1_row! {
        #[derive(serde::Serialize)]
        struct Row {
            id: u64,
            at: i64,
            actor: String,
            action: String,
            target: String,
            detail: String,
        }
    }
    let db = ctx.db()?;
    let rows: Vec<Row> = store::all(
        &db,
        "SELECT id, at, actor, action, target, detail FROM audit WHERE org = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
        &[t(&org), store::u(after), store::u(limit)],
    )
    .await?;
    let next_after = (rows.len() as u64 == limit).then(|| rows.last().map(|r| r.id)).flatten();
    let mut entries: Vec<Value> = Vec::with_capacity(rows.len());
    for r in &rows {
        entries.push(json!({"id": r.id, "at": crate::run::rfc3339_ms(r.at), "actor": r.actor, "action": r.action, "target": r.target,
               "detail": serde_json::from_str::<Value>(&r.detail).unwrap_or(Value::Null)}));
    }
    ok(json!({"entries": entries, "next_after": next_after}))
}

async fn metrics(ctx: &mut Ctx) -> AppResult<Response> {
    let claims = ctx.claims()?;
    policy::authorize(&claims, Action::MetricsRead, Scope::ORG, "metrics")?;
    let db = ctx.db()?;
    let text = render_metrics(&db).await?;
    let mut r = Response::ok(text)?;
    r.headers_mut().set("content-type", "text/plain; version=0.0.4; charset=utf-8")?;
    Ok(r)
}

/// A sample value as the exposition format reads it: the shortest digits that
/// read back as the same double (ECMAScript's number form, which the canonical
/// JSON printer already links; `f64`'s `Display` would link a second printer).
fn sample(v: f64) -> String {
    crate::canonical::format_f64(v)
}

async fn render_metrics(db: &Db) -> AppResult<String> {
    store::d1_row! {
        struct Row {
            name: String,
            labels: String,
            value: f64,
        }
    }
    store::d1_row! {
        struct Stats {
            runs: u64,
            events: u64,
            max_events: Option<u64>,
        }
    }
    let mut rows: Vec<Row> =
        store::all(db, "SELECT name, labels, value FROM metrics ORDER BY name, labels", &[]).await?;
    // Increments of this isolate not flushed yet (counters are kept in memory
    // on request paths and written in batches later).
    for (name, labels, by) in store::pending_counters() {
        match rows.iter_mut().find(|r| r.name == name && r.labels == labels) {
            Some(r) => r.value += by,
            None => rows.push(Row { name: name.to_owned(), labels, value: by }),
        }
    }
    crate::order::sort_by(&mut rows, |a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
    // Derived, not kept as a hot counter row: every appended event is a row.
    let stats: Option<Stats> = store::first(db, "SELECT COUNT(*) AS runs, (SELECT COUNT(*) FROM events) AS events, (SELECT MAX(c) FROM (SELECT COUNT(*) AS c FROM events GROUP BY run_id)) AS max_events FROM runs", &[]).await?;
    let appended = stats.as_ref().map(|s| s.events).unwrap_or(0);
    rows.retain(|r| r.name != "dropple_events_appended_total");
    rows.insert(0, Row { name: "dropple_events_appended_total".into(), labels: String::new(), value: appended as f64 });
    let mut out = String::new();
    let mut last_name = String::new();
    for r in rows {
        if r.name != last_name {
            let kind = if r.name.ends_with("_total") { "counter" } else { "gauge" };
            out.push_str(&format!("# TYPE {} {kind}\n", r.name));
            last_name = r.name.clone();
        }
        out.push_str(&format!("{}{} {}\n", r.name, r.labels, sample(r.value)));
    }
    store::d1_row! {
        struct Rates {
            live: u64,
            observers: u64,
            attempts: u64,
            submitted: u64,
            passed: u64,
        }
    }
    let rates: Option<Rates> = store::first(
        db,
        "SELECT (SELECT COUNT(*) FROM sessions WHERE status IN ('live', 'paused')) AS live, \
         (SELECT COALESCE(SUM(observers), 0) FROM sessions WHERE status != 'ended') AS observers, \
         (SELECT COUNT(*) FROM attempts) AS attempts, (SELECT COUNT(*) FROM attempts WHERE submitted = 1) AS submitted, \
         (SELECT COUNT(*) FROM attempts WHERE passed = 1) AS passed",
        &[],
    )
    .await?;
    store::d1_row! {
        struct JobCount {
            status: String,
            n: u64,
        }
    }
    let jobs: Vec<JobCount> = store::all(db, "SELECT status, COUNT(*) AS n FROM ai_jobs GROUP BY status", &[]).await?;
    let r = rates.unwrap_or(Rates { live: 0, observers: 0, attempts: 0, submitted: 0, passed: 0 });
    let ratio = |a: u64, b: u64| sample(if b == 0 { 0.0 } else { a as f64 / b as f64 });
    out.push_str(&format!("# TYPE dropple_live_sessions gauge\ndropple_live_sessions {}\n", r.live));
    out.push_str(&format!("# TYPE dropple_connected_observers gauge\ndropple_connected_observers {}\n", r.observers));
    out.push_str(&format!(
        "# TYPE dropple_lesson_completion_rate gauge\ndropple_lesson_completion_rate {}\n",
        ratio(r.submitted, r.attempts)
    ));
    out.push_str(&format!(
        "# TYPE dropple_certificate_pass_rate gauge\ndropple_certificate_pass_rate {}\n",
        ratio(r.passed, r.submitted)
    ));
    out.push_str("# TYPE dropple_ai_jobs gauge\n");
    for status in ["queued", "running", "succeeded", "failed"] {
        let n = jobs.iter().find(|j| j.status == status).map(|j| j.n).unwrap_or(0);
        out.push_str(&format!("dropple_ai_jobs{{status=\"{status}\"}} {n}\n"));
    }
    let stats = stats.unwrap_or(Stats { runs: 0, events: 0, max_events: None });
    out.push_str(&format!("# TYPE dropple_runs gauge\ndropple_runs {}\n", stats.runs));
    out.push_str(&format!(
        "# TYPE dropple_events_per_run_max gauge\ndropple_events_per_run_max {}\n",
        stats.max_events.unwrap_or(0)
    ));
    Ok(out)
}
