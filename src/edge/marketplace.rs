//! The marketplace over HTTP. Rules live in `crate::marketplace`; this
//! adapter loads records from D1, caches public reads in KV under
//! generation-stamped keys, and bumps the generation in the same D1 batch as
//! every write, so the next read never sees a stale page.

use super::http::{allow, created, ok, path_id, Ctx};
use super::lessons;
use super::store::{self, i, t, u, MARKET_CACHE};
use crate::error::{AppError, AppResult};
use crate::identity::Claims;
use crate::marketplace::{
    self as market, Actor, DecisionRequest, ListingFacts, ListingStatus, ListingSummary, Query, TrustInput, Visibility,
};
use crate::policy::{self, Action, Scope};
use crate::run::rfc3339_ms;
use serde::Deserialize;
use serde_json::{json, Value};
use worker::{D1Database, Method, Response};

/// KV's minimum TTL; generation stamps, not expiry, keep reads fresh.
const CACHE_TTL_SECS: u64 = 300;

#[derive(Deserialize, Clone)]
struct ListingRow {
    id: String,
    org: String,
    lesson_id: String,
    version: u32,
    author_id: String,
    title: String,
    summary: String,
    tags: String,
    price_cents: Option<u64>,
    visibility: String,
    status: String,
    created_at: i64,
}

const LISTING_COLUMNS: &str =
    "id, org, lesson_id, version, author_id, title, summary, tags, price_cents, visibility, status, created_at";

impl ListingRow {
    fn status(&self) -> ListingStatus {
        ListingStatus::parse(&self.status).unwrap_or(ListingStatus::Suspended)
    }
    fn visibility(&self) -> Visibility {
        if self.visibility == "org" {
            Visibility::Org
        } else {
            Visibility::Public
        }
    }
    fn facts(&self) -> ListingFacts {
        ListingFacts { author_id: self.author_id.clone(), org: self.org.clone(), visibility: self.visibility() }
    }
    fn tags(&self) -> Vec<String> {
        serde_json::from_str(&self.tags).unwrap_or_default()
    }
}

pub async fn route(ctx: &mut Ctx, rest: &[&str]) -> AppResult<Response> {
    let m = ctx.method();
    match rest {
        ["listings"] => {
            allow(&m, &[Method::Get, Method::Post])?;
            if m == Method::Post {
                submit(ctx).await
            } else {
                list(ctx).await
            }
        }
        ["listings", id] => {
            allow(&m, &[Method::Get])?;
            let id = path_id(id, "listing")?.to_owned();
            detail(ctx, &id).await
        }
        ["listings", id, "decisions"] => {
            allow(&m, &[Method::Post])?;
            let id = path_id(id, "listing")?.to_owned();
            decide(ctx, &id).await
        }
        ["listings", id, "reviews"] => {
            allow(&m, &[Method::Post, Method::Get])?;
            let id = path_id(id, "listing")?.to_owned();
            if m == Method::Post {
                review(ctx, &id).await
            } else {
                reviews(ctx, &id).await
            }
        }
        ["queue"] => {
            allow(&m, &[Method::Get])?;
            queue(ctx).await
        }
        _ => Err(AppError::not_found("route")),
    }
}

/// Public reads accept an optional token: with one, org-private listings show too.
fn optional_claims(ctx: &mut Ctx) -> AppResult<Option<Claims>> {
    if ctx.header("authorization").is_some() {
        ctx.claims().map(Some)
    } else {
        Ok(None)
    }
}

async fn generation(db: &D1Database) -> AppResult<u64> {
    #[derive(Deserialize)]
    struct G {
        generation: u64,
    }
    let g: Option<G> = store::first(db, "SELECT generation FROM market_generation WHERE id = 1", &[]).await?;
    Ok(g.map(|g| g.generation).unwrap_or(0))
}

fn bump_generation(db: &D1Database) -> AppResult<worker::D1PreparedStatement> {
    store::stmt(db, "UPDATE market_generation SET generation = generation + 1 WHERE id = 1", &[])
}

/// Serve from KV when the key (stamped with the current generation) is there;
/// otherwise build, answer, and fill the cache after the response.
async fn cached(
    ctx: &Ctx,
    key: String,
    build: impl std::future::Future<Output = AppResult<Value>>,
) -> AppResult<Response> {
    let kv = ctx.env.kv(MARKET_CACHE).map_err(|e| AppError::internal(e.to_string()))?;
    let hit = kv.get(&key).text().await.ok().flatten();
    let (text, state) = match hit {
        Some(text) => (text, "hit"),
        None => {
            let text = build.await?.to_string();
            if let Ok(put) = kv.put(&key, text.clone()) {
                ctx.wctx.wait_until(async move {
                    let _ = put.expiration_ttl(CACHE_TTL_SECS).execute().await;
                });
            }
            (text, "miss")
        }
    };
    if let Ok(db) = store::db(&ctx.env) {
        ctx.wctx.wait_until(async move {
            store::count(&db, "dropple_market_cache_total", &format!("{{result=\"{state}\"}}"), 1.0).await
        });
    }
    let mut r = Response::ok(text)?;
    let h = r.headers_mut();
    h.set("content-type", "application/json")?;
    h.set("cache-control", "no-store")?;
    h.set("x-cache", state)?;
    Ok(r)
}

#[derive(Deserialize)]
struct RatingAgg {
    listing_id: String,
    n: u64,
    s: u64,
}

async fn list(ctx: &mut Ctx) -> AppResult<Response> {
    let claims = optional_claims(ctx)?;
    let viewer = claims.as_ref().map(|c| c.org.clone());
    let query =
        Query::parse(ctx.query("q"), ctx.query("tag"), ctx.query("sort"), ctx.query("cursor"), ctx.query("limit"))?;
    let db = store::db(&ctx.env)?;
    let key = market::list_cache_key(generation(&db).await?, &market::viewer_scope(viewer.as_deref()), &query);
    cached(ctx, key, async {
        let rows: Vec<ListingRow> = store::all(
            &db,
            &format!("SELECT {LISTING_COLUMNS} FROM listings WHERE status = 'published' AND (visibility = 'public' OR org = ?1)"),
            &[t(viewer.as_deref().unwrap_or(""))],
        )
        .await?;
        let ratings: Vec<RatingAgg> =
            store::all(&db, "SELECT listing_id, COUNT(*) AS n, SUM(rating) AS s FROM reviews GROUP BY listing_id", &[]).await?;
        let items: Vec<ListingSummary> = rows
            .iter()
            .map(|r| {
                let agg = ratings.iter().find(|a| a.listing_id == r.id);
                let (n, s) = agg.map(|a| (a.n, a.s)).unwrap_or((0, 0));
                ListingSummary {
                    listing_id: r.id.clone(),
                    lesson_id: r.lesson_id.clone(),
                    version: r.version,
                    title: r.title.clone(),
                    summary: r.summary.clone(),
                    tags: r.tags(),
                    status: r.status(),
                    visibility: r.visibility(),
                    org: r.org.clone(),
                    created_at_ms: r.created_at,
                    rating_bayesian: bayesian(n, s),
                    rating_count: n,
                    price_cents: r.price_cents,
                }
            })
            .collect();
        let page = market::search(&items, &query, viewer.as_deref());
        Ok(json!({"listings": page.items, "next_cursor": page.next_cursor}))
    })
    .await
}

/// The trust signals' Bayesian average, from a count and a sum (list pages
/// aggregate in SQL rather than loading every rating).
fn bayesian(n: u64, sum: u64) -> f64 {
    (market::PRIOR_WEIGHT * market::PRIOR_MEAN + sum as f64) / (market::PRIOR_WEIGHT + n as f64)
}

async fn load_listing(db: &D1Database, id: &str) -> AppResult<ListingRow> {
    store::first(db, &format!("SELECT {LISTING_COLUMNS} FROM listings WHERE id = ?1"), &[t(id)])
        .await?
        .ok_or_else(|| AppError::not_found("listing"))
}

/// Published public listings are for everyone; anything else only for the listing's org.
fn can_see(row: &ListingRow, claims: Option<&Claims>) -> bool {
    let same_org = claims.is_some_and(|c| c.org == row.org);
    same_org || row.status() == ListingStatus::Published && row.visibility() == Visibility::Public
}

async fn trust(db: &D1Database, row: &ListingRow) -> AppResult<market::TrustSignals> {
    #[derive(Deserialize)]
    struct R {
        rating: u8,
    }
    #[derive(Deserialize)]
    struct Counts {
        attempts: u64,
        completed: u64,
        passed: u64,
        verified: u64,
    }
    let ratings: Vec<R> = store::all(db, "SELECT rating FROM reviews WHERE listing_id = ?1", &[t(&row.id)]).await?;
    let counts: Option<Counts> = store::first(
        db,
        "SELECT (SELECT COUNT(*) FROM attempts WHERE lesson_id = ?1 AND version = ?2) AS attempts, \
         (SELECT COUNT(*) FROM attempts WHERE lesson_id = ?1 AND version = ?2 AND submitted = 1) AS completed, \
         (SELECT COUNT(*) FROM attempts WHERE lesson_id = ?1 AND version = ?2 AND passed = 1) AS passed, \
         (SELECT COUNT(*) FROM listing_decisions d JOIN listings l ON l.id = d.listing_id WHERE l.author_id = ?3 AND d.decision = 'approve' AND d.actor != ?3) AS verified",
        &[t(&row.lesson_id), i(row.version), t(&row.author_id)],
    )
    .await?;
    let c = counts.unwrap_or(Counts { attempts: 0, completed: 0, passed: 0, verified: 0 });
    Ok(market::trust_signals(&TrustInput {
        ratings: ratings.into_iter().map(|r| r.rating).collect(),
        attempts: c.attempts,
        completed_attempts: c.completed,
        certificate_attempts_passed: c.passed,
        // Verified: an independent reviewer has approved one of the author's listings.
        author_verified: c.verified > 0,
    }))
}

fn listing_json(row: &ListingRow) -> Value {
    json!({
        "listing_id": row.id, "lesson_id": row.lesson_id, "version": row.version, "org": row.org,
        "author_id": row.author_id, "title": row.title, "summary": row.summary, "tags": row.tags(),
        "price_cents": row.price_cents, "visibility": row.visibility, "status": row.status,
        "created_at": rfc3339_ms(row.created_at),
    })
}

async fn detail(ctx: &mut Ctx, id: &str) -> AppResult<Response> {
    let claims = optional_claims(ctx)?;
    let db = store::db(&ctx.env)?;
    let row = load_listing(&db, id).await?;
    if !can_see(&row, claims.as_ref()) {
        return Err(AppError::not_found("listing"));
    }
    let viewer = claims.as_ref().map(|c| c.org.clone());
    let key = market::detail_cache_key(generation(&db).await?, id, &market::viewer_scope(viewer.as_deref()));
    let actions: Vec<&str> = claims
        .as_ref()
        .map(|c| {
            let actor = Actor { user_id: c.sub.clone(), roles: c.roles.clone(), org: c.org.clone() };
            market::available_decisions(row.status(), &actor, &row.facts()).into_iter().map(|d| d.as_str()).collect()
        })
        .unwrap_or_default();
    let resp = cached(ctx, key, async {
        let signals = trust(&db, &row).await?;
        let mut v = listing_json(&row);
        if let (Some(o), Ok(Value::Object(s))) = (v.as_object_mut(), serde_json::to_value(&signals)) {
            o.extend(s);
        }
        Ok(v)
    })
    .await?;
    // Per-viewer buttons ride in a header so the cached body stays shared.
    let mut resp = resp;
    resp.headers_mut().set("x-available-decisions", &actions.join(","))?;
    Ok(resp)
}

async fn submit(ctx: &mut Ctx) -> AppResult<Response> {
    let claims = ctx.claims()?;
    let body = ctx.json().await?;
    let sub = market::validate_submission(&body)?;
    let db = store::db(&ctx.env)?;
    let lesson = lessons::load_lesson(&db, &sub.lesson_id).await?.ok_or_else(|| AppError::not_found("lesson"))?;
    let scope = Scope { same_org: lesson.org == claims.org, owner: lesson.author_id == claims.sub };
    policy::authorize(&claims, Action::ListingSubmit, scope, "lesson")?;
    let version = lessons::load_version(&db, &sub.lesson_id, sub.version)
        .await?
        .ok_or_else(|| AppError::not_found("lesson version"))?;
    let id = super::runs::new_id();
    let visibility = match sub.visibility {
        Visibility::Public => "public",
        Visibility::Org => "org",
    };
    let insert = store::stmt(
        &db,
        "INSERT INTO listings (id, org, lesson_id, version, author_id, title, summary, tags, price_cents, visibility, status, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'submitted', ?11, ?11)",
        &[
            t(&id),
            t(&lesson.org),
            t(&sub.lesson_id),
            i(sub.version),
            t(&claims.sub),
            t(&version.title),
            t(&version.summary),
            t(&version.tags),
            sub.price_cents.map(u).unwrap_or(store::Arg::Null),
            t(visibility),
            i(ctx.now_ms),
        ],
    )?;
    match db.batch(vec![insert, bump_generation(&db)?]).await.map_err(AppError::from) {
        Ok(_) => {}
        Err(e) if store::is_constraint(&e, "UNIQUE") => {
            return Err(AppError::conflict("already_listed", "this lesson version already has a listing"))
        }
        Err(e) => return Err(e),
    }
    created(
        json!({"listing_id": id, "status": "submitted", "lesson_id": sub.lesson_id, "version": sub.version, "visibility": visibility}),
    )
}

async fn decide(ctx: &mut Ctx, id: &str) -> AppResult<Response> {
    let claims = ctx.claims()?;
    let body = ctx.json().await?;
    let request = DecisionRequest::parse(&body)?;
    let db = store::db(&ctx.env)?;
    let row = load_listing(&db, id).await?;
    let actor = Actor { user_id: claims.sub.clone(), roles: claims.roles.clone(), org: claims.org.clone() };
    let decided = market::handle_decision(id, row.status(), &request, &actor, &row.facts(), ctx.now_ms)?;
    let reason = decided.reason.clone().unwrap_or_default();
    let detail = serde_json::to_value(&decided).unwrap_or(Value::Null);
    let update = store::stmt(
        &db,
        "UPDATE listings SET status = ?1, updated_at = ?2 WHERE id = ?3 AND status = ?4",
        &[t(decided.to.as_str()), i(ctx.now_ms), t(id), t(decided.from.as_str())],
    )?;
    let results = db
        .batch(vec![
            update,
            store::stmt(
                &db,
                "INSERT INTO listing_decisions (listing_id, actor, decision, from_status, to_status, reason, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                &[t(id), t(&claims.sub), t(decided.decision.as_str()), t(decided.from.as_str()), t(decided.to.as_str()), t(&reason), i(ctx.now_ms)],
            )?,
            store::audit_stmt(&db, &row.org, ctx.now_ms, &claims.sub, &format!("listing.{}", decided.decision.as_str()), id, &detail)?,
            bump_generation(&db)?,
        ])
        .await?;
    // A concurrent decision changed the status first: nothing of ours counts.
    let changed = results.first().and_then(|r| r.meta().ok().flatten()).and_then(|m| m.changes).unwrap_or(1);
    if changed == 0 {
        return Err(AppError::conflict("illegal_transition", "the listing changed meanwhile; reload and decide again"));
    }
    ok(
        json!({"listing_id": id, "status": decided.to.as_str(), "from": decided.from.as_str(), "decision": decided.decision.as_str()}),
    )
}

async fn review(ctx: &mut Ctx, id: &str) -> AppResult<Response> {
    let claims = ctx.claims()?;
    let body = ctx.json().await?;
    let r = market::validate_review(&body)?;
    let db = store::db(&ctx.env)?;
    let row = load_listing(&db, id).await?;
    if !can_see(&row, Some(&claims)) {
        return Err(AppError::not_found("listing"));
    }
    policy::authorize(&claims, Action::ReviewWrite, Scope::ORG, "listing")?;
    if row.status() != ListingStatus::Published {
        return Err(AppError::unprocessable("not_published", "only published listings take reviews"));
    }
    #[derive(Deserialize)]
    struct N {
        n: u64,
    }
    let done: Option<N> = store::first(
        &db,
        "SELECT COUNT(*) AS n FROM attempts WHERE learner_id = ?1 AND lesson_id = ?2 AND version = ?3 AND submitted = 1",
        &[t(&claims.sub), t(&row.lesson_id), i(row.version)],
    )
    .await?;
    let completed = done.is_some_and(|d| d.n > 0);
    let insert = store::stmt(
        &db,
        "INSERT INTO reviews (listing_id, learner_id, rating, text, completed, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        &[t(id), t(&claims.sub), i(r.rating), t(&r.text), i(completed as i64), i(ctx.now_ms)],
    )?;
    match db.batch(vec![insert, bump_generation(&db)?]).await.map_err(AppError::from) {
        Ok(_) => created(json!({"listing_id": id, "rating": r.rating, "completed": completed})),
        Err(e) if store::is_constraint(&e, "UNIQUE") || store::is_constraint(&e, "PRIMARY KEY") => {
            Err(AppError::conflict("already_reviewed", "you have already reviewed this listing"))
        }
        Err(e) => Err(e),
    }
}

async fn reviews(ctx: &mut Ctx, id: &str) -> AppResult<Response> {
    let claims = optional_claims(ctx)?;
    let db = store::db(&ctx.env)?;
    let row = load_listing(&db, id).await?;
    if !can_see(&row, claims.as_ref()) {
        return Err(AppError::not_found("listing"));
    }
    #[derive(Deserialize, serde::Serialize)]
    struct R {
        learner_id: String,
        rating: u8,
        text: String,
        completed: u8,
        created_at: i64,
    }
    let rows: Vec<R> = store::all(
        &db,
        "SELECT learner_id, rating, text, completed, created_at FROM reviews WHERE listing_id = ?1 ORDER BY created_at DESC LIMIT 100",
        &[t(id)],
    )
    .await?;
    let list: Vec<Value> = rows
        .into_iter()
        .map(|r| json!({"learner_id": r.learner_id, "rating": r.rating, "text": r.text, "completed": r.completed != 0, "created_at": rfc3339_ms(r.created_at)}))
        .collect();
    ok(json!({"reviews": list}))
}

/// Listings of the caller's org awaiting a decision, for reviewers and governors.
async fn queue(ctx: &mut Ctx) -> AppResult<Response> {
    let claims = ctx.claims()?;
    policy::authorize(&claims, Action::ListingReview, Scope::ORG, "queue")?;
    let db = store::db(&ctx.env)?;
    let rows: Vec<ListingRow> = store::all(
        &db,
        &format!("SELECT {LISTING_COLUMNS} FROM listings WHERE org = ?1 AND status IN ('submitted', 'in_review', 'approved', 'suspended') ORDER BY created_at LIMIT 200"),
        &[t(&claims.org)],
    )
    .await?;
    let actor = Actor { user_id: claims.sub.clone(), roles: claims.roles.clone(), org: claims.org.clone() };
    let items: Vec<Value> = rows
        .iter()
        .filter_map(|r| {
            let decisions: Vec<&str> =
                market::available_decisions(r.status(), &actor, &r.facts()).into_iter().map(|d| d.as_str()).collect();
            (!decisions.is_empty()).then(|| {
                let mut v = listing_json(r);
                v["available_decisions"] = json!(decisions);
                v
            })
        })
        .collect();
    ok(json!({"listings": items}))
}
