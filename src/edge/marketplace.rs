//! The marketplace over HTTP. Rules live in `crate::marketplace`; this
//! adapter loads records from D1, caches public reads in KV under
//! generation-stamped keys, and bumps the generation in the same D1 batch as
//! every write, so the next read never sees a stale page.

use super::edge_cache::{self, Entry, Family, NO_STORE};
use super::http::{allow, created, ok, path_id, Ctx};
use super::lessons;
use super::store::Db;
use super::store::{self, i, t, u};
use crate::error::{AppError, AppResult};
use crate::identity::Claims;
use crate::json;
use crate::marketplace::{
    self as market, Actor, DecisionRequest, ListingFacts, ListingStatus, ListingSummary, Query, TrustInput, Visibility,
};
use crate::policy::{self, Action, Scope};
use crate::run::rfc3339_ms;
use serde_json::Value;
use worker::{Method, Response};

#[derive(Clone)]
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
    /// Kept on the listing by the review write; read by searches only.
    rating_count: u64,
    rating_sum: u64,
    rank: i64,
    /// The latest decision and who took it (the queue only).
    last_decision: Option<String>,
    last_actor: Option<String>,
}

/// By hand rather than by `d1_row!`: the search and queue columns are only in
/// some queries (0 or `None` when absent).
impl store::FromRow for ListingRow {
    fn from_row(row: &store::Row) -> Self {
        Self {
            id: row.get("id"),
            org: row.get("org"),
            lesson_id: row.get("lesson_id"),
            version: row.get("version"),
            author_id: row.get("author_id"),
            title: row.get("title"),
            summary: row.get("summary"),
            tags: row.get("tags"),
            price_cents: row.get("price_cents"),
            visibility: row.get("visibility"),
            status: row.get("status"),
            created_at: row.get("created_at"),
            rating_count: row.get_or_default("rating_count"),
            rating_sum: row.get_or_default("rating_sum"),
            rank: row.get_or_default("rank"),
            last_decision: row.get("last_decision"),
            last_actor: row.get("last_actor"),
        }
    }
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

/// One cached marketplace answer: from the edge when warm (no D1), else
/// built; `x-cache` and the cache counter say which.
async fn cached<F>(ctx: &Ctx, key: &str, build: F) -> AppResult<(Entry, &'static str)>
where
    F: std::future::Future<Output = AppResult<Entry>>,
{
    let entry = edge_cache::read_through(ctx, Some(Family::Market), key, build).await?;
    let state = ctx.meter.cache.get().unwrap_or("bypass");
    store::count("dropple_market_cache_total", &format!("{{result=\"{state}\"}}"), 1.0);
    Ok((entry, state))
}

fn respond(ctx: &Ctx, entry: &Entry, state: &str) -> AppResult<Response> {
    let mut r = entry.respond(ctx)?;
    r.headers_mut().set("x-cache", state)?;
    Ok(r)
}

async fn list(ctx: &mut Ctx) -> AppResult<Response> {
    let claims = optional_claims(ctx)?;
    let viewer = claims.as_ref().map(|c| c.org.clone());
    let query =
        Query::parse(ctx.query("q"), ctx.query("tag"), ctx.query("sort"), ctx.query("cursor"), ctx.query("limit"))?;
    let key = market::list_cache_key(&market::viewer_scope(viewer.as_deref()), &query);
    let (entry, state) = cached(ctx, &key, async {
        let page = search(&*ctx.db()?, &query, viewer.as_deref()).await?;
        Ok(Entry::json(
            &json!({"listings": crate::json_value::serialized(&page.items), "next_cursor": page.next_cursor}),
            NO_STORE,
        ))
    })
    .await?;
    respond(ctx, &entry, state)
}

/// One page of search results, in SQL: keyset paging on an index for either
/// order, tags through their table, text through the FTS5 trigram index,
/// starting from whichever reads least (`crate::marketplace::search_drive`):
/// rows read are bounded by the page, never by the whole marketplace. Orders
/// and cursors are those of `crate::marketplace`.
async fn search(db: &Db, query: &Query, viewer_org: Option<&str>) -> AppResult<market::Page> {
    let text = query.text_search();
    let (key_col, sort) = match query.sort {
        market::Sort::Rating => ("rank", market::Sort::Rating),
        market::Sort::New => ("created_at", market::Sort::New),
    };
    // How many listings each filter matches, counted up to FEW + 1 (one
    // statement, only for a query with a text or tag filter).
    const FEW: u64 = 500;
    let (mut text_n, mut tag_n) = (None, None);
    if text.fts_match.is_some() || query.tag.is_some() {
        store::d1_row! {
            struct Counts {
                text_n: Option<u64>,
                tag_n: Option<u64>,
            }
        }
        let mut args = Vec::new();
        let mut text_count = "NULL".to_owned();
        if let Some(m) = &text.fts_match {
            args.push(t(m));
            text_count =
                "(SELECT COUNT(*) FROM (SELECT 1 FROM listings_fts WHERE listings_fts MATCH ?1 LIMIT 501))".into();
        }
        let mut tag_count = "NULL".to_owned();
        if let Some(tag) = &query.tag {
            args.push(t(tag));
            tag_count =
                format!("(SELECT COUNT(*) FROM (SELECT 1 FROM listing_tags WHERE tag = ?{} LIMIT 501))", args.len());
        }
        let sql = format!("SELECT {text_count} AS text_n, {tag_count} AS tag_n");
        let c: Option<Counts> = store::first(db, &sql, &args).await?;
        if let Some(c) = c {
            (text_n, tag_n) = (c.text_n, c.tag_n);
        }
    }
    let drive = market::search_drive(text_n, tag_n, FEW);
    if drive == market::SearchDrive::Empty {
        return Ok(market::Page { items: Vec::new(), next_cursor: None });
    }
    let mut args: Vec<store::Arg> = vec![t(viewer_org.unwrap_or(""))];
    let from = match drive {
        market::SearchDrive::Text => {
            args.push(t(text.fts_match.as_deref().unwrap_or("")));
            "(SELECT rowid AS r FROM listings_fts WHERE listings_fts MATCH ?2) m CROSS JOIN listings l ON l.rowid = m.r"
        }
        market::SearchDrive::Tag => {
            args.push(t(query.tag.as_deref().unwrap_or("")));
            "(SELECT listing_id AS r FROM listing_tags WHERE tag = ?2) m CROSS JOIN listings l ON l.id = m.r"
        }
        _ => "listings l",
    };
    let mut sql = format!(
        "SELECT {LISTING_COLUMNS}, rating_count, rating_sum, rank FROM {from} \
         WHERE l.status = 'published' AND (l.visibility = 'public' OR l.org = ?1)"
    );
    if let (Some(tag), false) = (&query.tag, drive == market::SearchDrive::Tag) {
        args.push(t(tag));
        sql.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM listing_tags WHERE tag = ?{} AND listing_id = l.id)",
            args.len()
        ));
    }
    if let (Some(m), false) = (&text.fts_match, drive == market::SearchDrive::Text) {
        args.push(t(m));
        sql.push_str(&format!(
            // A list built once, then probed per row: a correlated MATCH per row is far slower.
            " AND l.rowid IN (SELECT rowid FROM listings_fts WHERE listings_fts MATCH ?{})",
            args.len()
        ));
    }
    for term in &text.short_terms {
        args.push(t(term));
        sql.push_str(&format!(
            " AND instr(lower(l.title || char(10) || l.summary || char(10) || l.tags), ?{}) > 0",
            args.len()
        ));
    }
    if let Some(c) = &query.cursor {
        args.push(i(c.primary));
        let p = args.len();
        args.push(t(&c.listing_id));
        sql.push_str(&format!(" AND (l.{key_col} < ?{p} OR (l.{key_col} = ?{p} AND l.id > ?{}))", p + 1));
    }
    let limit = query.limit.clamp(1, market::MAX_LIMIT) as usize;
    sql.push_str(&format!(" ORDER BY l.{key_col} DESC, l.id ASC LIMIT {}", limit + 1));
    let rows: Vec<ListingRow> = store::all(db, &sql, &args).await?;
    let more = rows.len() > limit;
    // The cursor holds the row's own sort key, so the next page's SQL
    // continues exactly where this one stopped.
    let next_cursor = rows.get(limit.saturating_sub(1)).filter(|_| more).map(|r| {
        let primary = if sort == market::Sort::Rating { r.rank } else { r.created_at };
        market::Cursor { sort, primary, listing_id: r.id.clone() }.encode()
    });
    let mut items: Vec<ListingSummary> = Vec::with_capacity(limit.min(rows.len()));
    for r in rows.iter().take(limit) {
        items.push(ListingSummary {
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
            rating_bayesian: bayesian(r.rating_count, r.rating_sum),
            rating_avg: market::mean_rating(r.rating_count, r.rating_sum),
            rating_count: r.rating_count,
            price_cents: r.price_cents,
        });
    }
    Ok(market::Page { items, next_cursor })
}

/// The trust signals' Bayesian average, from a count and a sum (list pages
/// aggregate in SQL rather than loading every rating).
fn bayesian(n: u64, sum: u64) -> f64 {
    (market::PRIOR_WEIGHT * market::PRIOR_MEAN + sum as f64) / (market::PRIOR_WEIGHT + n as f64)
}

async fn load_listing(db: &Db, id: &str) -> AppResult<ListingRow> {
    store::first(db, &format!("SELECT {LISTING_COLUMNS} FROM listings WHERE id = ?1"), &[t(id)])
        .await?
        .ok_or_else(|| AppError::not_found("listing"))
}

/// Published public listings are for everyone; anything else only for the listing's org.
fn can_see(row: &ListingRow, claims: Option<&Claims>) -> bool {
    let same_org = claims.is_some_and(|c| c.org == row.org);
    same_org || row.status() == ListingStatus::Published && row.visibility() == Visibility::Public
}

async fn trust(db: &Db, row: &ListingRow) -> AppResult<market::TrustSignals> {
    store::d1_row! {
        struct R {
            rating: u8,
            completed: u8,
        }
    }
    store::d1_row! {
        struct Counts {
            attempts: u64,
            completed: u64,
            passed: u64,
            verified: u64,
        }
    }
    let ratings: Vec<R> =
        store::all(db, "SELECT rating, completed FROM reviews WHERE listing_id = ?1", &[t(&row.id)]).await?;
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
    let (mut all_ratings, mut completed_ratings) = (Vec::with_capacity(ratings.len()), Vec::new());
    for r in &ratings {
        all_ratings.push(r.rating);
        if r.completed != 0 {
            completed_ratings.push(r.rating);
        }
    }
    Ok(market::trust_signals(&TrustInput {
        completed_ratings,
        ratings: all_ratings,
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
    let viewer = claims.as_ref().map(|c| c.org.clone());
    let key = market::detail_cache_key(id, &market::viewer_scope(viewer.as_deref()));
    let (mut entry, state) = cached(ctx, &key, async {
        let db = ctx.db()?;
        let row = load_listing(&db, id).await?;
        if !can_see(&row, claims.as_ref()) {
            return Err(AppError::not_found("listing"));
        }
        let signals = trust(&db, &row).await?;
        let mut v = listing_json(&row);
        if let (Some(o), Ok(Value::Object(s))) = (v.as_object_mut(), serde_json::to_value(&signals)) {
            o.extend(s);
        }
        Ok(Entry::json(&v, NO_STORE))
    })
    .await?;
    // Per-viewer buttons ride in a header so the cached body stays shared;
    // they follow from the body's own status, author and org.
    let actions: Vec<&str> = match &claims {
        Some(c) => {
            let body = entry.value().await?;
            let field = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            let status = ListingStatus::parse(&field("status")).unwrap_or(ListingStatus::Suspended);
            let visibility = if field("visibility") == "org" { Visibility::Org } else { Visibility::Public };
            let facts = ListingFacts { author_id: field("author_id"), org: field("org"), visibility };
            let actor = Actor { user_id: c.sub.clone(), roles: c.roles.clone(), org: c.org.clone() };
            decision_names(market::available_decisions(status, &actor, &facts))
        }
        None => Vec::new(),
    };
    let mut resp = respond(ctx, &entry, state)?;
    resp.headers_mut().set("x-available-decisions", &actions.join(","))?;
    Ok(resp)
}

/// What `decisions` are called in a response.
fn decision_names(decisions: Vec<market::Decision>) -> Vec<&'static str> {
    let mut names = Vec::with_capacity(decisions.len());
    for d in decisions {
        names.push(d.as_str());
    }
    names
}

async fn submit(ctx: &mut Ctx) -> AppResult<Response> {
    let claims = ctx.claims()?;
    let body = ctx.json().await?;
    let sub = market::validate_submission(&body)?;
    let db = ctx.db()?;
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
    match db.batch(vec![insert]).await {
        Ok(_) => edge_cache::bump(ctx, Family::Market).await,
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
    let db = ctx.db()?;
    let row = load_listing(&db, id).await?;
    let actor = Actor { user_id: claims.sub.clone(), roles: claims.roles.clone(), org: claims.org.clone() };
    let decided = market::handle_decision(id, row.status(), &request, &actor, &row.facts(), ctx.now_ms)?;
    let reason = decided.reason.clone().unwrap_or_default();
    let detail = crate::json_value::serialized(&decided);
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
        ])
        .await?;
    edge_cache::bump(ctx, Family::Market).await;
    // A concurrent decision changed the status first: nothing of ours counts.
    let changed = results.first().and_then(|r| r.changes).unwrap_or(1);
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
    let db = ctx.db()?;
    let row = load_listing(&db, id).await?;
    if !can_see(&row, Some(&claims)) {
        return Err(AppError::not_found("listing"));
    }
    policy::authorize(&claims, Action::ReviewWrite, Scope::ORG, "listing")?;
    if row.status() != ListingStatus::Published {
        return Err(AppError::unprocessable("not_published", "only published listings take reviews"));
    }
    store::d1_row! {
        struct N {
            n: u64,
        }
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
    // The listing's count, sum and rank key change in the same batch.
    let tally = store::stmt(
        &db,
        "UPDATE listings SET rating_count = rating_count + 1, rating_sum = rating_sum + ?2, \
         rank = CAST(ROUND(((17.5 + rating_sum + ?2) / (5.0 + rating_count + 1)) * 1000000.0) AS INTEGER) WHERE id = ?1",
        &[t(id), i(r.rating)],
    )?;
    match db.batch(vec![insert, tally]).await {
        Ok(_) => {
            edge_cache::bump(ctx, Family::Market).await;
            created(json!({"listing_id": id, "rating": r.rating, "completed": completed}))
        }
        Err(e) if store::is_constraint(&e, "UNIQUE") || store::is_constraint(&e, "PRIMARY KEY") => {
            Err(AppError::conflict("already_reviewed", "you have already reviewed this listing"))
        }
        Err(e) => Err(e),
    }
}

async fn reviews(ctx: &mut Ctx, id: &str) -> AppResult<Response> {
    let claims = optional_claims(ctx)?;
    let db = ctx.db()?;
    let row = load_listing(&db, id).await?;
    if !can_see(&row, claims.as_ref()) {
        return Err(AppError::not_found("listing"));
    }
    store::d1_row! {
        #[derive(serde::Serialize)]
        struct R {
            learner_id: String,
            rating: u8,
            text: String,
            completed: u8,
            created_at: i64,
        }
    }
    let rows: Vec<R> = store::all(
        &db,
        "SELECT learner_id, rating, text, completed, created_at FROM reviews WHERE listing_id = ?1 ORDER BY completed DESC, created_at DESC LIMIT 100",
        &[t(id)],
    )
    .await?;
    let mut list: Vec<Value> = Vec::with_capacity(rows.len());
    for r in &rows {
        list.push(json!({"learner_id": r.learner_id, "rating": r.rating, "text": r.text, "completed": r.completed != 0, "created_at": rfc3339_ms(r.created_at)}));
    }
    ok(json!({"reviews": list}))
}

/// Listings of the caller's org awaiting a decision, for reviewers and governors.
async fn queue(ctx: &mut Ctx) -> AppResult<Response> {
    let claims = ctx.claims()?;
    policy::authorize(&claims, Action::ListingReview, Scope::ORG, "queue")?;
    let db = ctx.db()?;
    let rows: Vec<ListingRow> = store::all(
        &db,
        &format!("SELECT {LISTING_COLUMNS}, \
            (SELECT decision FROM listing_decisions d WHERE d.listing_id = listings.id ORDER BY d.id DESC LIMIT 1) AS last_decision, \
            (SELECT actor FROM listing_decisions d WHERE d.listing_id = listings.id ORDER BY d.id DESC LIMIT 1) AS last_actor \
            FROM listings WHERE org = ?1 AND status IN ('submitted', 'in_review', 'approved', 'suspended') ORDER BY created_at LIMIT 200"),
        &[t(&claims.org)],
    )
    .await?;
    let actor = Actor { user_id: claims.sub.clone(), roles: claims.roles.clone(), org: claims.org.clone() };
    let mut items: Vec<Value> = Vec::new();
    for r in &rows {
        let decisions = decision_names(market::available_decisions(r.status(), &actor, &r.facts()));
        if decisions.is_empty() {
            continue;
        }
        let mut v = listing_json(r);
        super::http::set_field(&mut v, "available_decisions", json!(decisions));
        if let (Some(decision), Some(actor)) = (&r.last_decision, &r.last_actor) {
            super::http::set_field(&mut v, "last_decision", json!({"decision": decision, "actor": actor}));
        }
        items.push(v);
    }
    ok(json!({"listings": items}))
}
