//! Lessons over HTTP: immutable artifacts in R2 (content-addressed, written
//! create-only), an index of lessons and versions in D1, frames, export,
//! import, and media assets with ranged downloads.

use super::edge_cache::{self, etag_matches, Entry, Family, IMMUTABLE, NO_STORE};
use super::http::{allow, created, ok, path_id, Ctx};
use super::runs;
use super::store::Db;
use super::store::{self, i, t, u, ARTIFACTS};
use crate::canonical::sha256_hex;
use crate::error::{AppError, AppResult};
use crate::identity::Claims;
use crate::json;
use crate::lesson::{self, Artifact, Draft, Source};
use crate::policy::{self, Action, Scope};
use serde_json::Value;
use std::rc::Rc;
use worker::{Bucket, Method, Range, Response};

const IMMUTABLE_PRIVATE: &str = "private, max-age=31536000, immutable";

/// Media types authors may upload. SVG and HTML are left out on purpose:
/// served from our origin they could run script.
const MEDIA_TYPES: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "video/mp4",
    "video/webm",
    "audio/mpeg",
    "audio/ogg",
    "application/pdf",
];

store::d1_row! {
    #[derive(Clone)]
    pub struct LessonRow {
        pub id: String,
        pub org: String,
        pub author_id: String,
        pub created_at: i64,
    }
}

store::d1_row! {
    #[derive(Clone, serde::Serialize)]
    pub struct VersionRow {
        pub lesson_id: String,
        pub version: u32,
        pub sha256: String,
        pub r2_key: String,
        pub title: String,
        pub summary: String,
        pub tags: String,
        pub step_count: u64,
        pub quiz_count: u64,
        pub created_at: i64,
    }
}

pub async fn route(ctx: &mut Ctx, rest: &[&str]) -> AppResult<Response> {
    let m = ctx.method();
    match rest {
        [] => {
            allow(&m, &[Method::Get, Method::Post])?;
            if m == Method::Post {
                create(ctx).await
            } else {
                list(ctx).await
            }
        }
        ["import"] => {
            allow(&m, &[Method::Post])?;
            import(ctx).await
        }
        [id] => {
            allow(&m, &[Method::Get])?;
            let id = path_id(id, "lesson")?.to_owned();
            metadata(ctx, &id).await
        }
        [id, "versions"] => {
            allow(&m, &[Method::Post])?;
            let id = path_id(id, "lesson")?.to_owned();
            new_version(ctx, &id).await
        }
        [id, "versions", v] => {
            allow(&m, &[Method::Get])?;
            let id = path_id(id, "lesson")?.to_owned();
            let v = parse_version(v)?;
            read_version(ctx, &id, v).await
        }
        [id, "versions", v, "explanations"] => {
            allow(&m, &[Method::Get])?;
            let id = path_id(id, "lesson")?.to_owned();
            let v = parse_version(v)?;
            super::ai_jobs::explanations(ctx, &id, v).await
        }
        [id, "versions", v, "frames", k] => {
            allow(&m, &[Method::Get])?;
            let id = path_id(id, "lesson")?.to_owned();
            let v = parse_version(v)?;
            let k: usize = k.parse().ok().filter(|k| *k <= lesson::MAX_TIMELINE_ITEMS).ok_or_else(|| {
                AppError::rule(404, "frame_out_of_range", "cursor must be a frame number from 0 to the timeline length")
            })?;
            frame(ctx, &id, v, k).await
        }
        _ => Err(AppError::not_found("route")),
    }
}

pub async fn assets_route(ctx: &mut Ctx, rest: &[&str]) -> AppResult<Response> {
    let m = ctx.method();
    match rest {
        [] => {
            allow(&m, &[Method::Post])?;
            upload_asset(ctx).await
        }
        [sha] => {
            allow(&m, &[Method::Get, Method::Head])?;
            let sha = sha.to_ascii_lowercase();
            if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(AppError::not_found("asset"));
            }
            download_asset(ctx, &sha).await
        }
        _ => Err(AppError::not_found("route")),
    }
}

fn parse_version(v: &str) -> AppResult<u32> {
    v.parse::<u32>().ok().filter(|v| *v >= 1).ok_or_else(|| AppError::not_found("lesson version"))
}

/// The artifacts bucket, for one R2 operation (counted for `Server-Timing`).
fn bucket(ctx: &Ctx) -> AppResult<Bucket> {
    ctx.meter.r2_op();
    Ok(ctx.env.bucket(ARTIFACTS)?)
}

pub async fn load_lesson(db: &Db, id: &str) -> AppResult<Option<LessonRow>> {
    if let Some(kept) = LESSONS_READ.with(|k| k.get(id)) {
        return Ok(Some(kept));
    }
    let row: Option<LessonRow> =
        store::first(db, "SELECT id, org, author_id, created_at FROM lessons WHERE id = ?1", &[t(id)]).await?;
    if let Some(row) = &row {
        LESSONS_READ.with(|k| k.keep(id.to_owned(), row.clone()));
    }
    Ok(row)
}

pub async fn load_version(db: &Db, id: &str, version: u32) -> AppResult<Option<VersionRow>> {
    let key = format!("{id}/{version}");
    if let Some(kept) = VERSIONS_READ.with(|k| k.get(&key)) {
        return Ok(Some(kept));
    }
    let row: Option<VersionRow> = store::first(
        db,
        "SELECT lesson_id, version, sha256, r2_key, title, summary, tags, step_count, quiz_count, created_at FROM lesson_versions WHERE lesson_id = ?1 AND version = ?2",
        &[t(id), i(version)],
    )
    .await?;
    if let Some(row) = &row {
        VERSIONS_READ.with(|k| k.keep(key, row.clone()));
    }
    Ok(row)
}

/// Whether this exact version is published publicly in the marketplace.
pub async fn is_public(db: &Db, id: &str, version: u32) -> AppResult<bool> {
    store::d1_row! {
        struct N {
            n: u64,
        }
    }
    let row: Option<N> = store::first(
        db,
        "SELECT COUNT(*) AS n FROM listings WHERE lesson_id = ?1 AND version = ?2 AND status = 'published' AND visibility = 'public'",
        &[t(id), i(version)],
    )
    .await?;
    Ok(row.is_some_and(|r| r.n > 0))
}

pub async fn fetch_artifact(ctx: &Ctx, row: &VersionRow) -> AppResult<Rc<Artifact>> {
    artifact(ctx, &row.sha256, &row.r2_key).await
}

/// The artifact with this sha256 (stored at `r2_key`), counted as an R2
/// operation for `Server-Timing` only when it is really read from R2.
pub async fn artifact(ctx: &Ctx, sha256: &str, r2_key: &str) -> AppResult<Rc<Artifact>> {
    if let Some(hit) = cached_artifact(sha256) {
        return Ok(hit);
    }
    ctx.meter.r2_op();
    read_artifact(&ctx.env, sha256, r2_key).await
}

/// Where a version's artifact lives: it is content-addressed.
pub fn artifact_key(sha256: &str) -> String {
    format!("artifacts/{sha256}.json")
}

pub async fn fetch_artifact_env(env: &worker::Env, row: &VersionRow) -> AppResult<Rc<Artifact>> {
    match cached_artifact(&row.sha256) {
        Some(hit) => Ok(hit),
        None => read_artifact(env, &row.sha256, &row.r2_key).await,
    }
}

thread_local! {
    /// Artifacts this isolate has read, by sha256. An artifact is
    /// content-addressed and never changes, so the copy is the artifact:
    /// every answer and submit of an attempt needs its quiz, and reading
    /// and parsing it from R2 each time was most of their work. (32: each
    /// is at most a request body, 1 MB; most are a few KB.)
    static ARTIFACTS_READ: store::Kept<Rc<Artifact>> = const { store::Kept::new(32) };
    /// Lesson and version rows: neither table is ever updated (a new version
    /// is a new row), so a row read once is the row.
    static LESSONS_READ: store::Kept<LessonRow> = const { store::Kept::new(1024) };
    static VERSIONS_READ: store::Kept<VersionRow> = const { store::Kept::new(1024) };
}

fn cached_artifact(sha256: &str) -> Option<Rc<Artifact>> {
    ARTIFACTS_READ.with(|a| a.get(sha256))
}

async fn read_artifact(env: &worker::Env, sha256: &str, r2_key: &str) -> AppResult<Rc<Artifact>> {
    let obj = env
        .bucket(ARTIFACTS)?
        .get(r2_key)
        .execute()
        .await?
        .ok_or_else(|| AppError::internal(format!("artifact {r2_key} missing from R2")))?;
    let text = obj.body().ok_or_else(|| AppError::internal("artifact without body"))?.text().await?;
    let artifact = crate::decode::from_text(&text, Artifact::from_value)
        .map_err(|e| AppError::internal(format!("stored artifact unreadable: {e}")))?;
    let artifact = Rc::new(artifact);
    // Kept only under the hash it says it has: a different object at the
    // key is served as stored but never cached for the hash asked for.
    if artifact.sha256 == sha256 {
        ARTIFACTS_READ.with(|a| a.keep(sha256.to_owned(), artifact.clone()));
    }
    Ok(artifact)
}

/// Who is reading a version, and whether the version is publicly readable
/// (published publicly in the marketplace). No token is fine for those.
async fn reader(ctx: &mut Ctx, db: &Db, lesson: &LessonRow, version: u32) -> AppResult<(Option<Claims>, bool)> {
    let has_token = ctx.header("authorization").is_some() || ctx.query("token").is_some();
    let claims = if has_token { Some(ctx.claims()?) } else { None };
    let in_org = claims.as_ref().is_some_and(|c| c.org == lesson.org);
    let public = is_public(db, &lesson.id, version).await?;
    if !in_org && !public {
        return Err(match claims {
            None => AppError::unauthorized("missing bearer token"),
            Some(_) => AppError::not_found("lesson"),
        });
    }
    Ok((claims, public))
}

fn sees_answer_key(claims: Option<&Claims>, lesson: &LessonRow) -> bool {
    claims.is_some_and(|c| {
        let scope = Scope { same_org: c.org == lesson.org, owner: c.sub == lesson.author_id };
        policy::decide(&c.roles, Action::LessonReadAnswerKey, scope) == policy::Decision::Allow
    })
}

fn immutable_json(ctx: &Ctx, body: &Value, etag: &str, private: bool) -> AppResult<Response> {
    let quoted = format!("\"{etag}\"");
    let mut r = if etag_matches(ctx, etag) { Response::empty()?.with_status(304) } else { Response::from_json(body)? };
    let h = r.headers_mut();
    h.set("etag", &quoted)?;
    h.set("cache-control", if private { IMMUTABLE_PRIVATE } else { IMMUTABLE })?;
    h.set("vary", "Authorization")?;
    Ok(r)
}

async fn list(ctx: &mut Ctx) -> AppResult<Response> {
    let claims = ctx.claims()?;
    policy::authorize(&claims, Action::LessonRead, Scope::ORG, "lesson")?;
    store::d1_row! {
        #[derive(serde::Serialize)]
        struct Row {
            lesson_id: String,
            title: String,
            author_id: String,
            latest_version: u32,
            sha256: String,
            step_count: u64,
            created_at: i64,
        }
    }
    let db = ctx.db()?;
    let rows: Vec<Row> = store::all(
        &db,
        "SELECT l.id AS lesson_id, v.title AS title, l.author_id AS author_id, v.version AS latest_version, v.sha256 AS sha256, v.step_count AS step_count, l.created_at AS created_at \
         FROM lessons l JOIN lesson_versions v ON v.lesson_id = l.id \
         WHERE l.org = ?1 AND v.version = (SELECT MAX(version) FROM lesson_versions WHERE lesson_id = l.id) \
         ORDER BY l.created_at DESC LIMIT 200",
        &[t(&claims.org)],
    )
    .await?;
    ok(json!({"lessons": crate::json_value::serialized(&rows)}))
}

/// Store a new version: artifact to R2 (create-only), index rows to D1 in one batch.
async fn store_version(
    ctx: &Ctx,
    claims: &Claims,
    lesson_id: &str,
    version: u32,
    draft: Draft,
    source: Option<Source>,
    new_lesson: bool,
) -> AppResult<Response> {
    let db = ctx.db()?;
    let assets = lesson::asset_refs(&draft.timeline);
    check_assets(&db, &claims.org, &assets).await?;
    let created_at = crate::run::rfc3339_ms(ctx.now_ms);
    let artifact = Artifact::new(draft, lesson_id, version, &claims.sub, &claims.org, &created_at, source);
    let bytes = serde_json::to_vec(&artifact).map_err(|e| AppError::internal(e.to_string()))?;
    let key = artifact_key(&artifact.sha256);
    // Create-only: an existing key is never overwritten (and, being
    // content-addressed, would hold these very bytes).
    super::binding::r2_put(&bucket(ctx)?, &key, &bytes, "application/json", true).await.map_err(AppError::internal)?;
    let mut stmts = Vec::new();
    if new_lesson {
        stmts.push(store::stmt(
            &db,
            "INSERT INTO lessons (id, org, author_id, title, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            &[t(lesson_id), t(&claims.org), t(&claims.sub), t(&artifact.title), i(ctx.now_ms)],
        )?);
    }
    let tags = serde_json::to_string(&artifact.tags).unwrap_or_else(|_| "[]".into());
    stmts.push(store::stmt(
        &db,
        "INSERT INTO lesson_versions (lesson_id, version, sha256, r2_key, title, summary, tags, step_count, quiz_count, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        &[
            t(lesson_id),
            i(version),
            t(&artifact.sha256),
            t(&key),
            t(&artifact.title),
            t(&artifact.summary),
            t(&tags),
            u(artifact.timeline.len() as u64),
            u(artifact.quiz.len() as u64),
            i(ctx.now_ms),
        ],
    )?);
    // Which versions show which media (public media are readable without a token).
    for chunk in assets.chunks(30) {
        let rows: Vec<String> = (0..chunk.len()).map(|n| format!("(?{}, ?1, ?2)", n + 3)).collect();
        let sql =
            format!("INSERT OR IGNORE INTO lesson_assets (sha256, lesson_id, version) VALUES {}", rows.join(", "));
        let mut args = vec![t(lesson_id), i(version)];
        args.extend(chunk.iter().map(|(_, sha)| t(sha)));
        stmts.push(store::stmt(&db, &sql, &args)?);
    }
    if let Err(e) = db.batch(stmts).await {
        return Err(if store::is_constraint(&e, "UNIQUE") || store::is_constraint(&e, "PRIMARY KEY") {
            AppError::conflict("version_conflict", format!("version {version} was created concurrently; retry"))
        } else {
            e
        });
    }
    let explanations = super::ai_jobs::on_publish(ctx, claims, &artifact).await;
    created(json!({
        "lesson_id": lesson_id, "version": version, "sha256": artifact.sha256,
        "steps": artifact.timeline.len(), "created_at": created_at, "explanations": explanations,
    }))
}

/// Every referenced asset must have been uploaded in the lesson's org: 422
/// naming the first field that references one that was not.
async fn check_assets(db: &Db, org: &str, refs: &[(String, String)]) -> AppResult<()> {
    store::d1_row! {
        struct Row {
            sha256: String,
        }
    }
    let mut known = Vec::new();
    for chunk in refs.chunks(90) {
        let placeholders: Vec<String> = (0..chunk.len()).map(|n| format!("?{}", n + 2)).collect();
        let sql = format!("SELECT sha256 FROM asset_owners WHERE org = ?1 AND sha256 IN ({})", placeholders.join(","));
        let mut args = vec![t(org)];
        args.extend(chunk.iter().map(|(_, sha)| t(sha)));
        let rows: Vec<Row> = store::all(db, &sql, &args).await?;
        known.extend(rows.into_iter().map(|r| r.sha256));
    }
    match refs.iter().find(|(_, sha)| !known.contains(sha)) {
        None => Ok(()),
        Some((field, sha)) => Err(AppError::unprocessable(
            "unknown_asset",
            format!("{field}: no asset {sha} was uploaded in this org (POST /v1/assets first)"),
        )),
    }
}

async fn create(ctx: &mut Ctx) -> AppResult<Response> {
    let claims = ctx.claims()?;
    policy::authorize(&claims, Action::LessonCreate, Scope::ORG, "lesson")?;
    let body = ctx.json().await?;
    let draft = lesson::validate_draft(&body)?;
    store_version(ctx, &claims, &runs::new_id(), 1, draft, None, true).await
}

async fn import(ctx: &mut Ctx) -> AppResult<Response> {
    let claims = ctx.claims()?;
    policy::authorize(&claims, Action::LessonCreate, Scope::ORG, "lesson")?;
    let body = ctx.json().await?;
    let draft = lesson::validate_draft(&body)?;
    lesson::check_import_hash(&body, &draft)?;
    store_version(ctx, &claims, &runs::new_id(), 1, draft, None, true).await
}

async fn new_version(ctx: &mut Ctx, id: &str) -> AppResult<Response> {
    let claims = ctx.claims()?;
    let db = ctx.db()?;
    let lesson = load_lesson(&db, id).await?.ok_or_else(|| AppError::not_found("lesson"))?;
    let scope = Scope { same_org: lesson.org == claims.org, owner: lesson.author_id == claims.sub };
    policy::authorize(&claims, Action::LessonVersion, scope, "lesson")?;
    let body = ctx.json().await?;
    let draft = lesson::validate_draft(&body)?;
    store::d1_row! {
        struct Max {
            v: Option<u32>,
        }
    }
    let max: Option<Max> =
        store::first(&db, "SELECT MAX(version) AS v FROM lesson_versions WHERE lesson_id = ?1", &[t(id)]).await?;
    let next = max.and_then(|m| m.v).unwrap_or(0) + 1;
    store_version(ctx, &claims, id, next, draft, None, false).await
}

/// `POST /v1/runs/{run_id}/export`: a recorded run becomes a new lesson.
pub async fn export(ctx: &mut Ctx, run_id: &str) -> AppResult<Response> {
    let claims = ctx.claims()?;
    policy::authorize(&claims, Action::LessonCreate, Scope::ORG, "lesson")?;
    let db = ctx.db()?;
    let run = runs::authorized_run(&db, &claims, run_id, Action::RunRead).await?;
    let body = ctx.json().await?;
    let last = runs::last_seq(&db, &run.id).await?;
    if last == 0 {
        return Err(AppError::unprocessable("empty_run", "the run has no events to export"));
    }
    let mut events = Vec::new();
    let mut after = 0;
    while after < last {
        let page = runs::events_page(&db, &run.id, after, last, 1000).await?;
        let Some(tail) = page.last() else { break };
        after = tail.seq;
        events.extend(page);
    }
    let mut merged = body.clone();
    if let Some(obj) = merged.as_object_mut() {
        obj.insert("timeline".into(), crate::json_value::serialized(&lesson::timeline_from_events(&events)));
    }
    let draft = lesson::validate_draft(&merged)?;
    let source = Source { run_id: run.id.clone(), from_seq: 1, to_seq: last };
    store_version(ctx, &claims, &runs::new_id(), 1, draft, Some(source), true).await
}

/// No token at all: the request may only see what is public, and the edge
/// may answer it for everyone alike.
fn anonymous(ctx: &Ctx) -> bool {
    ctx.header("authorization").is_none() && ctx.query("token").is_none()
}

/// A public read answered at the edge when warm. Which versions are public
/// changes with marketplace decisions, so keys carry the marketplace stamp.
async fn public_read<F>(ctx: &Ctx, key: &str, build: F) -> AppResult<Response>
where
    F: std::future::Future<Output = AppResult<Entry>>,
{
    let entry = edge_cache::read_through(ctx, Some(Family::Market), key, build).await?;
    let mut r = entry.respond(ctx)?;
    r.headers_mut().set("vary", "Authorization")?;
    Ok(r)
}

/// 401 unless this version is published publicly.
async fn require_public(db: &Db, id: &str, version: u32) -> AppResult<()> {
    if is_public(db, id, version).await? {
        Ok(())
    } else {
        Err(AppError::unauthorized("missing bearer token"))
    }
}

async fn metadata(ctx: &mut Ctx, id: &str) -> AppResult<Response> {
    if anonymous(ctx) {
        let key = format!("lesson:{id}");
        return public_read(ctx, &key, async {
            let body = metadata_body(ctx, &*ctx.db()?, id, None).await?;
            Ok(Entry::json(&body, NO_STORE))
        })
        .await;
    }
    let claims = ctx.claims()?;
    let body = metadata_body(ctx, &*ctx.db()?, id, Some(&claims)).await?;
    ok(body)
}

async fn metadata_body(_ctx: &Ctx, db: &Db, id: &str, claims: Option<&Claims>) -> AppResult<Value> {
    let lesson = load_lesson(db, id).await?.ok_or_else(|| AppError::not_found("lesson"))?;
    let versions: Vec<VersionRow> = store::all(
        db,
        "SELECT lesson_id, version, sha256, r2_key, title, summary, tags, step_count, quiz_count, created_at FROM lesson_versions WHERE lesson_id = ?1 ORDER BY version",
        &[t(id)],
    )
    .await?;
    let in_org = claims.is_some_and(|c| c.org == lesson.org);
    let mut visible = Vec::new();
    for v in versions {
        if in_org || is_public(db, id, v.version).await? {
            visible.push(json!({
                "version": v.version, "sha256": v.sha256, "title": v.title, "summary": v.summary,
                "tags": serde_json::from_str::<Value>(&v.tags).unwrap_or(json!([])),
                "steps": v.step_count, "quiz_count": v.quiz_count, "created_at": crate::run::rfc3339_ms(v.created_at),
            }));
        }
    }
    if visible.is_empty() {
        return Err(if claims.is_some() {
            AppError::not_found("lesson")
        } else {
            AppError::unauthorized("missing bearer token")
        });
    }
    let latest = visible.last().cloned().unwrap_or(Value::Null);
    Ok(json!({
        "lesson_id": lesson.id, "org": lesson.org, "author_id": lesson.author_id,
        "title": latest["title"], "summary": latest["summary"], "latest_version": latest["version"],
        "created_at": crate::run::rfc3339_ms(lesson.created_at), "versions": visible,
    }))
}

async fn read_version(ctx: &mut Ctx, id: &str, version: u32) -> AppResult<Response> {
    if anonymous(ctx) {
        let key = format!("version:{id}:{version}");
        return public_read(ctx, &key, async {
            let db = ctx.db()?;
            let row = load_version(&db, id, version).await?.ok_or_else(|| AppError::not_found("lesson version"))?;
            require_public(&db, id, version).await?;
            let artifact = fetch_artifact(ctx, &row).await?;
            Ok(Entry::json(&artifact.without_answer_key(), IMMUTABLE).with_etag(&row.sha256))
        })
        .await;
    }
    let db = ctx.db()?;
    let lesson = load_lesson(&db, id).await?.ok_or_else(|| AppError::not_found("lesson"))?;
    let row = load_version(&db, id, version).await?.ok_or_else(|| AppError::not_found("lesson version"))?;
    let (claims, public) = reader(ctx, &db, &lesson, version).await?;
    let full = sees_answer_key(claims.as_ref(), &lesson);
    // Shared caches may keep only what anyone may read: a public version
    // without its answer key. Org-private versions stay private.
    let private = full || !public;
    if etag_matches(ctx, &row.sha256) {
        return immutable_json(ctx, &Value::Null, &row.sha256, private);
    }
    let artifact = fetch_artifact(ctx, &row).await?;
    let body = if full { crate::json_value::serialized(&*artifact) } else { artifact.without_answer_key() };
    immutable_json(ctx, &body, &row.sha256, private)
}

/// Frame `k` of a version, as served (the canvas state after `k` items).
async fn frame_body(ctx: &Ctx, row: &VersionRow, k: usize) -> AppResult<Value> {
    if k as u64 > row.step_count {
        return Err(AppError::rule(
            404,
            "frame_out_of_range",
            format!("frame {k} is past the end; this version has frames 0 to {}", row.step_count),
        ));
    }
    let artifact = fetch_artifact(ctx, row).await?;
    let canvas = artifact.frame(k).ok_or_else(|| AppError::rule(404, "frame_out_of_range", "frame past the end"))?;
    let item = k.checked_sub(1).and_then(|n| artifact.timeline.get(n));
    Ok(json!({
        "lesson_id": row.lesson_id, "version": row.version, "cursor": k, "steps": row.step_count,
        "item": crate::json_value::serialized(&item), "state": canvas.to_value(),
    }))
}

async fn frame(ctx: &mut Ctx, id: &str, version: u32, k: usize) -> AppResult<Response> {
    if anonymous(ctx) {
        let key = format!("frame:{id}:{version}:{k}");
        return public_read(ctx, &key, async {
            let db = ctx.db()?;
            let row = load_version(&db, id, version).await?.ok_or_else(|| AppError::not_found("lesson version"))?;
            require_public(&db, id, version).await?;
            let body = frame_body(ctx, &row, k).await?;
            Ok(Entry::json(&body, IMMUTABLE).with_etag(&format!("{}-{k}", row.sha256)))
        })
        .await;
    }
    let db = ctx.db()?;
    let lesson = load_lesson(&db, id).await?.ok_or_else(|| AppError::not_found("lesson"))?;
    let row = load_version(&db, id, version).await?.ok_or_else(|| AppError::not_found("lesson version"))?;
    let (_, public) = reader(ctx, &db, &lesson, version).await?;
    if k as u64 > row.step_count {
        return Err(AppError::rule(
            404,
            "frame_out_of_range",
            format!("frame {k} is past the end; this version has frames 0 to {}", row.step_count),
        ));
    }
    let etag = format!("{}-{k}", row.sha256);
    if etag_matches(ctx, &etag) {
        return immutable_json(ctx, &Value::Null, &etag, !public);
    }
    let body = frame_body(ctx, &row, k).await?;
    immutable_json(ctx, &body, &etag, !public)
}

async fn upload_asset(ctx: &mut Ctx) -> AppResult<Response> {
    let claims = ctx.claims()?;
    policy::authorize(&claims, Action::AssetUpload, Scope::ORG, "asset")?;
    let content_type = ctx.header("content-type").unwrap_or_default();
    let content_type = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if !MEDIA_TYPES.contains(&content_type.as_str()) {
        return Err(AppError::rule(
            415,
            "unsupported_media_type",
            format!("content-type must be one of {}", MEDIA_TYPES.join(", ")),
        ));
    }
    let limit = ctx.var_u64("MAX_ASSET_BYTES", 50 * 1024 * 1024) as usize;
    let bytes = ctx.body_bytes(limit).await?;
    if bytes.is_empty() {
        return Err(AppError::bad_request("empty_body", "the upload is empty"));
    }
    if !sniff_matches(&content_type, &bytes) {
        return Err(AppError::unprocessable("content_mismatch", format!("the bytes are not {content_type}")));
    }
    let db = ctx.db()?;
    let (_, limits) = super::system::org_limits(ctx, &db, &claims.org).await?;
    store::d1_row! {
        struct Used {
            used: Option<u64>,
        }
    }
    let sha = sha256_hex(&bytes);
    let size = bytes.len() as u64;
    let owned: Option<()> =
        store::first(&db, "SELECT sha256 FROM asset_owners WHERE sha256 = ?1 AND org = ?2", &[t(&sha), t(&claims.org)])
            .await?;
    if owned.is_some() {
        // The same bytes again: same sha, nothing written or counted twice.
        return ok(
            json!({"asset_id": sha, "sha256": sha, "url": format!("/v1/assets/{sha}"), "size": size, "content_type": content_type, "existing": true}),
        );
    }
    let used: Option<Used> =
        store::first(&db, "SELECT SUM(size) AS used FROM asset_owners WHERE org = ?1", &[t(&claims.org)]).await?;
    let used = used.and_then(|u| u.used).unwrap_or(0);
    if let Err(e) = policy::check_limit("media_bytes", limits.media_bytes, used, bytes.len() as u64) {
        store::audit(
            &db,
            &claims.org,
            ctx.now_ms,
            &claims.sub,
            "plan_limit.refused",
            "media_bytes",
            &json!({"requested": bytes.len()}),
        )
        .await;
        return Err(e);
    }
    // Create-only: bytes already stored under this sha are never overwritten.
    super::binding::r2_put(&bucket(ctx)?, &format!("assets/{sha}"), &bytes, &content_type, true)
        .await
        .map_err(AppError::internal)?;
    db.batch(vec![
        store::stmt(
            &db,
            "INSERT OR IGNORE INTO assets (sha256, org, uploader, content_type, size, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            &[t(&sha), t(&claims.org), t(&claims.sub), t(&content_type), u(size), i(ctx.now_ms)],
        )?,
        store::stmt(
            &db,
            "INSERT OR IGNORE INTO asset_owners (sha256, org, uploader, size, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            &[t(&sha), t(&claims.org), t(&claims.sub), u(size), i(ctx.now_ms)],
        )?,
    ])
    .await?;
    created(
        json!({"asset_id": sha, "sha256": sha, "url": format!("/v1/assets/{sha}"), "size": size, "content_type": content_type}),
    )
}

/// The leading bytes must agree with the declared type.
fn sniff_matches(content_type: &str, b: &[u8]) -> bool {
    let starts = |p: &[u8]| b.starts_with(p);
    match content_type {
        "image/png" => starts(b"\x89PNG\r\n\x1a\n"),
        "image/jpeg" => starts(b"\xff\xd8\xff"),
        "image/gif" => starts(b"GIF87a") || starts(b"GIF89a"),
        "image/webp" => starts(b"RIFF") && b.get(8..12) == Some(b"WEBP"),
        "video/mp4" => b.get(4..8) == Some(b"ftyp"),
        "video/webm" => starts(b"\x1a\x45\xdf\xa3"),
        "audio/mpeg" => starts(b"ID3") || starts(b"\xff\xfb") || starts(b"\xff\xf3"),
        "audio/ogg" => starts(b"OggS"),
        "application/pdf" => starts(b"%PDF-"),
        _ => false,
    }
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` (one range; multi-range is refused).
fn parse_range(header: &str, size: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = header.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return Some(Err(()));
    }
    let (a, b) = spec.split_once('-')?;
    let range = match (a.trim(), b.trim()) {
        ("", n) => n.parse::<u64>().ok().filter(|n| *n > 0).map(|n| (size.saturating_sub(n), size.saturating_sub(1))),
        (a, "") => a.parse::<u64>().ok().map(|a| (a, size.saturating_sub(1))),
        (a, b) => a.parse::<u64>().ok().zip(b.parse::<u64>().ok()).map(|(a, b)| (a, b.min(size.saturating_sub(1)))),
    };
    Some(match range {
        Some((start, end)) if start <= end && start < size => Ok((start, end)),
        _ => Err(()),
    })
}

/// Whether the asset belongs to a lesson version published publicly.
async fn public_asset(db: &Db, sha: &str) -> AppResult<bool> {
    store::d1_row! {
        struct N {
            n: u64,
        }
    }
    let public: Option<N> = store::first(
        db,
        "SELECT COUNT(*) AS n FROM lesson_assets a JOIN listings l ON l.lesson_id = a.lesson_id AND l.version = a.version WHERE a.sha256 = ?1 AND l.status = 'published' AND l.visibility = 'public'",
        &[t(sha)],
    )
    .await?;
    Ok(public.is_some_and(|p| p.n > 0))
}

/// Media of a lesson version published publicly may be read by anyone (→
/// `Ok(true)`); any other asset only with a token of an org that uploaded it
/// (`?token=` works too, for `<img src>`). Another org gets 404.
async fn asset_access(ctx: &mut Ctx, db: &Db, sha: &str) -> AppResult<bool> {
    store::d1_row! {
        struct N {
            n: u64,
        }
    }
    if public_asset(db, sha).await? {
        return Ok(true);
    }
    let has_token = ctx.header("authorization").is_some() || ctx.query("token").is_some();
    if !has_token {
        return Err(AppError::unauthorized("missing bearer token"));
    }
    let claims = ctx.claims()?;
    let owned: Option<N> = store::first(
        db,
        "SELECT COUNT(*) AS n FROM asset_owners WHERE sha256 = ?1 AND org = ?2",
        &[t(sha), t(&claims.org)],
    )
    .await?;
    if owned.is_some_and(|o| o.n > 0) {
        Ok(false)
    } else {
        Err(AppError::not_found("asset"))
    }
}

async fn download_asset(ctx: &mut Ctx, sha: &str) -> AppResult<Response> {
    // Public media, whole: the edge keeps it (ranges and private media go on).
    if anonymous(ctx) && ctx.header("range").is_none() && ctx.method() == Method::Get {
        let key = format!("asset:{sha}");
        let mut r = public_read(ctx, &key, async {
            let db = ctx.db()?;
            store::d1_row! {
                struct Row {
                    content_type: String,
                }
            }
            let row: Option<Row> =
                store::first(&db, "SELECT content_type FROM assets WHERE sha256 = ?1", &[t(sha)]).await?;
            let row = row.ok_or_else(|| AppError::not_found("asset"))?;
            if !public_asset(&db, sha).await? {
                return Err(AppError::unauthorized("missing bearer token"));
            }
            let obj = bucket(ctx)?
                .get(format!("assets/{sha}"))
                .execute()
                .await?
                .ok_or_else(|| AppError::not_found("asset"))?;
            let body = match obj.body() {
                Some(b) => b.bytes().await?,
                None => Vec::new(),
            };
            Ok(Entry {
                body: edge_cache::Body::Bytes(body),
                content_type: row.content_type,
                etag: Some(sha.to_owned()),
                client_cache_control: IMMUTABLE,
            })
        })
        .await?;
        let h = r.headers_mut();
        h.set("accept-ranges", "bytes")?;
        h.set("x-content-type-options", "nosniff")?;
        return Ok(r);
    }
    let db = ctx.db()?;
    store::d1_row! {
        struct Row {
            content_type: String,
            size: u64,
        }
    }
    let row: Option<Row> =
        store::first(&db, "SELECT content_type, size FROM assets WHERE sha256 = ?1", &[t(sha)]).await?;
    let row = row.ok_or_else(|| AppError::not_found("asset"))?;
    let public = asset_access(ctx, &db, sha).await?;
    let etag = format!("\"{sha}\"");
    let range = match ctx.header("range") {
        Some(h) => match parse_range(&h, row.size) {
            Some(Ok(r)) => Some(r),
            Some(Err(())) => {
                let mut r = super::http::error_response(&AppError::rule(
                    416,
                    "range_not_satisfiable",
                    format!("the asset has {} bytes", row.size),
                ))?;
                r.headers_mut().set("content-range", &format!("bytes */{}", row.size))?;
                return Ok(r);
            }
            None => None,
        },
        None => None,
    };
    let cache = if public { IMMUTABLE } else { IMMUTABLE_PRIVATE };
    if etag_matches(ctx, sha) {
        let mut r = Response::empty()?.with_status(304);
        r.headers_mut().set("etag", &etag)?;
        r.headers_mut().set("cache-control", cache)?;
        return Ok(r);
    }
    let bucket = bucket(ctx)?;
    let mut get = bucket.get(format!("assets/{sha}"));
    if let Some((start, end)) = range {
        get = get.range(Range::OffsetWithLength { offset: start, length: end - start + 1 });
    }
    let obj = get.execute().await?.ok_or_else(|| AppError::not_found("asset"))?;
    let bytes = match obj.body() {
        Some(b) if ctx.method() != Method::Head => b.bytes().await?,
        _ => Vec::new(),
    };
    let mut r = Response::from_bytes(bytes)?;
    if let Some((start, end)) = range {
        r = r.with_status(206);
        r.headers_mut().set("content-range", &format!("bytes {start}-{end}/{}", row.size))?;
    }
    let h = r.headers_mut();
    h.set("content-type", &row.content_type)?;
    h.set("accept-ranges", "bytes")?;
    h.set("etag", &etag)?;
    h.set("cache-control", cache)?;
    h.set("vary", "Authorization")?;
    h.set("x-content-type-options", "nosniff")?;
    Ok(r)
}
