//! Disaster recovery at the edge: the archive pass (D1 → R2), restore
//! (R2 → an empty D1) and repair (a run whose chain breaks, from R2).
//! Formats and rules live in `crate::archive` and `crate::chain`.
//!
//! Operator-only: `/v1/ops/*` answers in development, or elsewhere to a
//! request whose `x-operator-secret` equals the `OPERATOR_SECRET` secret;
//! anyone else gets 404 (the routes do not exist for them).

use super::http::{allow, ok, Ctx};
use super::runs;
use super::store::Db;
use super::store::{self, t, u, Arg, ARTIFACTS};
use crate::archive::{self, RunManifest, TableSnapshot, TablesManifest};
use crate::chain::{self, Walk};
use crate::error::{AppError, AppResult};
use crate::json;
use crate::run::Event;
use serde_json::{Map, Value};
use worker::{Bucket, Env, Method, Response};

/// Runs an archive pass looks at, at most (the next pass continues).
const RUNS_PER_PASS: u64 = 500;
/// Table snapshots are taken at most this often by the scheduled pass (ms);
/// `POST /v1/ops/archive` takes one every time. `ARCHIVE_TABLES_EVERY_MS` overrides.
const TABLES_EVERY_MS: u64 = 10 * 60 * 1000;

pub async fn route(ctx: &mut Ctx, rest: &[&str]) -> AppResult<Response> {
    operator(ctx)?;
    let m = ctx.method();
    match rest {
        ["archive"] => {
            allow(&m, &[Method::Get, Method::Post])?;
            let db = ctx.db()?;
            if m == Method::Get {
                let manifests = ctx.query("manifests") != Some("false");
                return ok(status(&ctx.env, &db, manifests).await?);
            }
            let report = archive_pass(&ctx.env, &db, ctx.now_ms, true).await?;
            ok(report)
        }
        ["restore"] => {
            allow(&m, &[Method::Post])?;
            let body = ctx.json().await?;
            let db = ctx.db()?;
            match body.get("phase").and_then(Value::as_str) {
                Some("tables") => ok(restore_tables(&ctx.env, &db).await?),
                Some("runs") => {
                    let after = body.get("after").and_then(Value::as_str).unwrap_or("").to_owned();
                    let limit = body.get("limit").and_then(Value::as_u64).unwrap_or(50).clamp(1, 500);
                    ok(restore_runs(&ctx.env, &db, &after, limit).await?)
                }
                _ => Err(AppError::bad_request("invalid_field", "phase: must be tables or runs")),
            }
        }
        ["repair"] => {
            allow(&m, &[Method::Post])?;
            let body = ctx.json().await?;
            let run_id = body
                .get("run_id")
                .and_then(Value::as_str)
                .filter(|id| crate::identity::is_valid_id(id))
                .ok_or_else(|| AppError::bad_request("invalid_field", "run_id: must be a run id"))?
                .to_owned();
            let db = ctx.db()?;
            runs::load_run(&db, &run_id).await?.ok_or_else(|| AppError::not_found("run"))?;
            ok(repair(&ctx.env, &db, &run_id, ctx.now_ms).await?)
        }
        _ => Err(AppError::not_found("route")),
    }
}

/// Development, or the operator secret (compared in constant time).
fn operator(ctx: &Ctx) -> AppResult<()> {
    if ctx.is_development() {
        return Ok(());
    }
    let secret = ctx.env.secret("OPERATOR_SECRET").map(|s| s.to_string()).ok().filter(|s| s.len() >= 16);
    let given = ctx.header("x-operator-secret");
    match (secret, given) {
        (Some(s), Some(g))
            if s.len() == g.len() && s.bytes().zip(g.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0 =>
        {
            Ok(())
        }
        _ => Err(AppError::not_found("route")),
    }
}

fn bucket(env: &Env) -> AppResult<Bucket> {
    Ok(env.bucket(ARTIFACTS)?)
}

async fn get_text(b: &Bucket, key: &str) -> AppResult<Option<String>> {
    match b.get(key).execute().await? {
        None => Ok(None),
        Some(obj) => {
            Ok(Some(obj.body().ok_or_else(|| AppError::internal("archive object without body"))?.text().await?))
        }
    }
}

/// Create-only put: `true` when this call sealed it, `false` when the key
/// (content-addressed, so these very bytes) was already there.
async fn seal(b: &Bucket, key: &str, bytes: Vec<u8>) -> AppResult<bool> {
    super::binding::r2_put(b, key, &bytes, "application/x-ndjson", true).await.map_err(AppError::internal)
}

async fn put_json(b: &Bucket, key: &str, value: &Value) -> AppResult<()> {
    let bytes = value.to_string().into_bytes();
    super::binding::r2_put(b, key, &bytes, "application/json", false).await.map_err(AppError::internal)?;
    Ok(())
}

async fn run_manifest(b: &Bucket, run_id: &str) -> AppResult<Option<RunManifest>> {
    match get_text(b, &archive::run_manifest_key(run_id)).await? {
        None => Ok(None),
        Some(text) => serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| RunManifest::from_value(&v))
            .map(Some)
            .ok_or_else(|| AppError::internal(format!("run manifest {run_id} unreadable"))),
    }
}

#[derive(Default)]
struct Tally {
    runs: u64,
    sealed: u64,
    existing: u64,
    events: u64,
    broken: Vec<Value>,
    /// `ARCHIVE_DEV_DELAY_MS`, honoured in development only.
    dev_delay_ms: u64,
}

/// One pass: fill legacy chains, seal every run's new events, and (when due
/// or `force_tables`) snapshot the other tables. Idempotent and safe to
/// repeat or overlap: segments are create-only and content-addressed, a
/// manifest is written only after its segments and is always one contiguous
/// chain, and `archive_runs` only caches what the manifests say.
pub async fn archive_pass(env: &Env, db: &Db, now_ms: i64, force_tables: bool) -> AppResult<Value> {
    let b = bucket(env)?;
    // Legacy rows (before the chain) first: a run is archived only chained.
    store::d1_row! {
        struct RunId {
            run_id: String,
        }
    }
    let legacy: Vec<RunId> = store::all(db, "SELECT run_id FROM chain_backfill LIMIT 50", &[]).await?;
    for r in &legacy {
        runs::fill_chain(db, &r.run_id).await?;
        store::run(db, "DELETE FROM chain_backfill WHERE run_id = ?1", &[t(&r.run_id)]).await?;
    }
    store::d1_row! {
        struct Due {
            run_id: String,
            org: String,
        }
    }
    let due: Vec<Due> = store::all(
        db,
        "SELECT r.id AS run_id, r.org AS org FROM runs r LEFT JOIN archive_runs a ON a.run_id = r.id WHERE COALESCE((SELECT MAX(seq) FROM events e WHERE e.run_id = r.id), 0) > COALESCE(a.last_seq, 0) ORDER BY r.id LIMIT ?1",
        &[u(RUNS_PER_PASS)],
    )
    .await?;
    let development = env.var("ENVIRONMENT").map(|v| v.to_string()).ok().as_deref() == Some("development");
    let dev_delay_ms = env
        .var("ARCHIVE_DEV_DELAY_MS")
        .ok()
        .and_then(|v| v.to_string().parse::<u64>().ok())
        .filter(|_| development)
        .unwrap_or(0)
        .min(5000);
    let mut tally = Tally { dev_delay_ms, ..Tally::default() };
    for run in &due {
        archive_run(db, &b, &run.run_id, &run.org, now_ms, &mut tally).await?;
    }
    let tables = if force_tables || tables_due(env, &b, now_ms).await? {
        Some(archive_tables(db, &b, now_ms).await?)
    } else {
        None
    };
    Ok(json!({
        "backfilled_runs": legacy.len(),
        "runs": tally.runs,
        "segments_sealed": tally.sealed,
        "segments_existing": tally.existing,
        "events": tally.events,
        "broken": tally.broken,
        "tables": tables,
        "more": due.len() as u64 == RUNS_PER_PASS,
    }))
}

async fn archive_run(db: &Db, b: &Bucket, run_id: &str, org: &str, now_ms: i64, tally: &mut Tally) -> AppResult<()> {
    let mut manifest = run_manifest(b, run_id).await?.unwrap_or_else(|| RunManifest::new(run_id));
    tally.runs += 1;
    // The sweep: a run that changed is verified whole (bounded pages) before
    // anything more of it is sealed, so a row edited after it was archived is
    // found and audited on the run's next change, and a break is never archived.
    if let Err((seq, why)) = runs::verify_chain(db, run_id).await? {
        tally.broken.push(json!({"run_id": run_id, "first_bad_seq": seq, "reason": why.as_str()}));
        store::audit(db, org, now_ms, "system", "chain.broken", run_id, &json!({"seq": seq, "reason": why.as_str()}))
            .await;
        return Ok(());
    }
    loop {
        let page =
            runs::events_page(db, run_id, manifest.last_seq, i64::MAX as u64, archive::SEGMENT_EVENTS as u64).await?;
        if page.is_empty() {
            break;
        }
        let (bytes, seg) = match archive::seal_segment(&manifest.walk(), &page) {
            Ok(s) => s,
            Err((seq, why)) => {
                // Never archive a broken chain; the sweep reports it (verify and
                // repair name the seq).
                tally.broken.push(json!({"run_id": run_id, "first_bad_seq": seq, "reason": why.as_str()}));
                store::audit(
                    db,
                    org,
                    now_ms,
                    "system",
                    "chain.broken",
                    run_id,
                    &json!({"seq": seq, "reason": why.as_str()}),
                )
                .await;
                break;
            }
        };
        tally.events += page.len() as u64;
        if seal(b, &archive::segment_key(run_id, &seg.address), bytes).await? {
            tally.sealed += 1;
        } else {
            tally.existing += 1;
        }
        if tally.dev_delay_ms > 0 {
            // Development only: a slow R2, so a test can kill a pass midway.
            worker::Delay::from(std::time::Duration::from_millis(tally.dev_delay_ms)).await;
        }
        manifest.push(seg).map_err(AppError::internal)?;
        put_json(b, &archive::run_manifest_key(run_id), &manifest.to_value()).await?;
        if page.len() < archive::SEGMENT_EVENTS {
            break;
        }
    }
    store::run(
        db,
        "INSERT INTO archive_runs (run_id, last_seq, head_hash, at) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (run_id) DO UPDATE SET last_seq = excluded.last_seq, head_hash = excluded.head_hash, at = excluded.at",
        &[t(run_id), u(manifest.last_seq), t(&manifest.head_hash), store::i(now_ms)],
    )
    .await
}

async fn tables_due(env: &Env, b: &Bucket, now_ms: i64) -> AppResult<bool> {
    let every = env
        .var("ARCHIVE_TABLES_EVERY_MS")
        .ok()
        .and_then(|v| v.to_string().parse::<u64>().ok())
        .unwrap_or(TABLES_EVERY_MS);
    let last = match get_text(b, archive::TABLES_MANIFEST_KEY).await? {
        None => return Ok(true),
        Some(text) => {
            serde_json::from_str::<Value>(&text).ok().and_then(|v| v.get("at").and_then(Value::as_i64)).unwrap_or(0)
        }
    };
    Ok(now_ms.saturating_sub(last) >= every as i64)
}

async fn archive_tables(db: &Db, b: &Bucket, now_ms: i64) -> AppResult<Value> {
    let mut manifest = TablesManifest { format: archive::FORMAT, at: now_ms, tables: Vec::new() };
    let (mut sealed, mut existing, mut rows_total) = (0u64, 0u64, 0u64);
    for (table, order) in archive::TABLES {
        let mut snap = TableSnapshot { rows: 0, segments: Vec::new() };
        let mut offset = 0u64;
        loop {
            let sql = format!("SELECT * FROM {table} ORDER BY {order} LIMIT ?1 OFFSET ?2");
            let rows: Vec<Map<String, Value>> =
                store::all_bulk(db, &sql, &[u(archive::TABLE_PAGE as u64), u(offset)]).await?;
            if rows.is_empty() {
                break;
            }
            let n = rows.len();
            let (bytes, address) = archive::seal_rows(&rows);
            if seal(b, &archive::table_segment_key(table, &address), bytes).await? {
                sealed += 1;
            } else {
                existing += 1;
            }
            snap.rows += n as u64;
            snap.segments.push(address);
            offset += n as u64;
            if n < archive::TABLE_PAGE {
                break;
            }
        }
        rows_total += snap.rows;
        manifest.tables.push(((*table).to_owned(), snap));
    }
    put_json(b, archive::TABLES_MANIFEST_KEY, &manifest.to_value()).await?;
    Ok(json!({"rows": rows_total, "segments_sealed": sealed, "segments_existing": existing, "at": now_ms}))
}

/// What the archive holds: the tables snapshot and every run manifest, and
/// every object under `archive/` (for the operator and the fault tests).
async fn status(env: &Env, db: &Db, with_manifests: bool) -> AppResult<Value> {
    let b = bucket(env)?;
    let mut keys = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut list = b.list().prefix("archive/").limit(1000);
        if let Some(c) = &cursor {
            list = list.cursor(c.clone());
        }
        let page = list.execute().await?;
        keys.extend(page.objects().into_iter().map(|o| json!({"key": o.key(), "size": o.size()})));
        cursor = page.cursor().filter(|_| page.truncated());
        if cursor.is_none() {
            break;
        }
    }
    store::d1_row! {
        struct Archived {
            run_id: String,
        }
    }
    let archived: Vec<Archived> = if with_manifests {
        store::all(db, "SELECT run_id FROM archive_runs ORDER BY run_id", &[]).await?
    } else {
        Vec::new()
    };
    let mut manifests = Map::new();
    for a in archived {
        if let Some(m) = run_manifest(&b, &a.run_id).await? {
            manifests.insert(a.run_id, m.to_value());
        }
    }
    let tables: Value = match get_text(&b, archive::TABLES_MANIFEST_KEY).await? {
        Some(text) => serde_json::from_str(&text).unwrap_or(Value::Null),
        None => Value::Null,
    };
    Ok(json!({"objects": keys, "runs": manifests, "tables": tables}))
}

fn arg(v: &Value) -> Arg<'_> {
    match v {
        Value::Null => Arg::Null,
        Value::Bool(x) => Arg::Int(i64::from(*x)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Arg::Int(i),
            None => Arg::Real(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => Arg::Text(s),
        // Never stored as JSON values by D1; kept as text if ever seen.
        _ => Arg::Null,
    }
}

/// Rebuild every archived table (INSERT OR IGNORE: a row already there, such
/// as the migration's own `market_generation`, stays; on an empty D1 every
/// row comes back). Then replace the edge cache's generation stamps so no
/// cache answers from before.
async fn restore_tables(env: &Env, db: &Db) -> AppResult<Value> {
    let b = bucket(env)?;
    let text = get_text(&b, archive::TABLES_MANIFEST_KEY)
        .await?
        .ok_or_else(|| AppError::rule(404, "no_archive", "the archive holds no table snapshot"))?;
    let manifest = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| TablesManifest::from_value(&v))
        .ok_or_else(|| AppError::internal("tables manifest unreadable"))?;
    let mut restored = Map::new();
    for (table, _) in archive::TABLES {
        let Some(snap) = manifest.table(table) else { continue };
        let mut count = 0u64;
        for address in &snap.segments {
            let text = get_text(&b, &archive::table_segment_key(table, address))
                .await?
                .ok_or_else(|| AppError::internal(format!("table segment {table}/{address} missing")))?;
            let rows = archive::open_rows(&text, address).map_err(AppError::internal)?;
            let mut stmts = Vec::with_capacity(rows.len());
            for row in &rows {
                let (mut names, mut marks) = (String::new(), String::new());
                let mut args: Vec<Arg> = Vec::with_capacity(row.len());
                for (n, (column, value)) in row.iter().enumerate() {
                    if !archive::is_plain_column(column) {
                        return Err(AppError::internal(format!("table segment {table}/{address}: column {column}")));
                    }
                    if n > 0 {
                        names.push_str(", ");
                        marks.push_str(", ");
                    }
                    names.push_str(column);
                    marks.push_str(&format!("?{}", n + 1));
                    args.push(arg(value));
                }
                let sql = format!("INSERT OR IGNORE INTO {table} ({names}) VALUES ({marks})");
                stmts.push(store::stmt(db, &sql, &args)?);
            }
            count += rows.len() as u64;
            for chunk in chunked(stmts, 100) {
                db.batch(chunk).await?;
            }
        }
        restored.insert((*table).to_owned(), json!(count));
    }
    // New stamps: no edge cache entry from before the restore answers again.
    super::edge_cache::bump_env(env, super::edge_cache::Family::Market).await;
    super::edge_cache::bump_env(env, super::edge_cache::Family::Revocations).await;
    Ok(json!({"tables": restored, "snapshot_at": manifest.at}))
}

fn chunked<T>(items: Vec<T>, n: usize) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    let mut cur = Vec::with_capacity(n);
    for item in items {
        cur.push(item);
        if cur.len() == n {
            out.push(std::mem::replace(&mut cur, Vec::with_capacity(n)));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn insert_event_stmt(db: &Db, e: &Event, org: &str) -> AppResult<worker::D1PreparedStatement> {
    let payload = e.payload.to_string();
    store::stmt(
        db,
        "INSERT OR IGNORE INTO events (run_id, seq, id, type, payload, timestamp, author_id, org, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        &[t(&e.run_id), u(e.seq), t(&e.id), t(&e.kind), t(&payload), store::i(e.timestamp), t(&e.author_id), t(org), t(&e.hash)],
    )
}

/// Rebuild the events of up to `limit` runs (in id order after `after`, from
/// the restored `runs` table), each segment checked against its address and
/// the chain before a row is written.
async fn restore_runs(env: &Env, db: &Db, after: &str, limit: u64) -> AppResult<Value> {
    let b = bucket(env)?;
    store::d1_row! {
        struct RunRow {
            id: String,
            org: String,
            session_id: Option<String>,
        }
    }
    let page: Vec<RunRow> = store::all(
        db,
        "SELECT r.id AS id, r.org AS org, (SELECT s.id FROM sessions s WHERE s.run_id = r.id) AS session_id FROM runs r WHERE r.id > ?1 ORDER BY r.id LIMIT ?2",
        &[t(after), u(limit)],
    )
    .await?;
    let (mut runs_done, mut events, mut without_archive, mut resynced) = (0u64, 0u64, 0u64, 0u64);
    for run in &page {
        // A live session's object holds its whole log: it forwards it again, so
        // events newer than the archive come back too.
        if let Some(session_id) = &run.session_id {
            if resync_session(env, session_id).await {
                resynced += 1;
            }
        }
        let Some(manifest) = run_manifest(&b, &run.id).await? else {
            without_archive += 1;
            continue;
        };
        let mut walk = Walk::default();
        for seg in &manifest.segments {
            let text = get_text(&b, &archive::segment_key(&run.id, &seg.address))
                .await?
                .ok_or_else(|| AppError::internal(format!("segment {} of run {} missing", seg.address, run.id)))?;
            let evs = archive::open_segment(&text, seg, &walk).map_err(AppError::internal)?;
            walk = Walk { last_seq: seg.last_seq, head: seg.head_hash.clone() };
            let mut stmts = Vec::with_capacity(evs.len());
            for e in &evs {
                stmts.push(insert_event_stmt(db, e, &run.org)?);
            }
            events += evs.len() as u64;
            for chunk in chunked(stmts, 100) {
                db.batch(chunk).await?;
            }
        }
        store::run(
            db,
            "INSERT INTO archive_runs (run_id, last_seq, head_hash, at) VALUES (?1, ?2, ?3, 0) ON CONFLICT (run_id) DO UPDATE SET last_seq = excluded.last_seq, head_hash = excluded.head_hash",
            &[t(&run.id), u(manifest.last_seq), t(&manifest.head_hash)],
        )
        .await?;
        runs_done += 1;
    }
    let next_after = page.last().map(|r| r.id.clone()).filter(|_| page.len() as u64 == limit);
    Ok(
        json!({"runs": runs_done, "events": events, "runs_without_archive": without_archive, "sessions_resynced": resynced, "next_after": next_after}),
    )
}

/// Ask a session's object to forward its log to D1 again; `false` if it could not.
async fn resync_session(env: &Env, session_id: &str) -> bool {
    let call = async {
        let stub = env.durable_object(store::CLASSROOM)?.id_from_name(session_id)?.get_stub()?;
        let req = super::http::outgoing("https://classroom/resync", Method::Post, None, None)?;
        let resp = stub.fetch_with_request(req).await?;
        Ok::<bool, worker::Error>(resp.status_code() == 200)
    };
    call.await.unwrap_or(false)
}

/// Rewrite, from the archive, exactly the rows of `run_id` that differ from
/// it, starting at the segment where verify finds the chain broken. Rows
/// that match the archive are never touched.
async fn repair(env: &Env, db: &Db, run_id: &str, now_ms: i64) -> AppResult<Value> {
    let bad_seq = match runs::verify_chain(db, run_id).await? {
        Ok(walk) => {
            return Ok(
                json!({"repaired": [], "verify": {"ok": true, "last_seq": walk.last_seq, "head_hash": walk.head}}),
            )
        }
        Err((seq, _)) => seq,
    };
    let b = bucket(env)?;
    let manifest = run_manifest(&b, run_id)
        .await?
        .ok_or_else(|| AppError::rule(409, "not_archived", "the run has no archive to repair from"))?;
    if bad_seq > manifest.last_seq {
        return Err(AppError::rule(
            409,
            "not_archived",
            format!("seq {bad_seq} is past the archive (sealed up to {})", manifest.last_seq),
        ));
    }
    let org = runs::load_run(db, run_id).await?.map(|r| r.org).unwrap_or_default();
    let mut repaired = Vec::new();
    let mut walk = Walk::default();
    for seg in &manifest.segments {
        let from = walk.clone();
        walk = Walk { last_seq: seg.last_seq, head: seg.head_hash.clone() };
        if seg.last_seq < bad_seq {
            continue;
        }
        let text = get_text(&b, &archive::segment_key(run_id, &seg.address))
            .await?
            .ok_or_else(|| AppError::internal(format!("segment {} missing", seg.address)))?;
        let archived = archive::open_segment(&text, seg, &from).map_err(AppError::internal)?;
        let stored = runs::events_page(
            db,
            run_id,
            seg.first_seq.saturating_sub(1),
            seg.last_seq,
            archive::SEGMENT_EVENTS as u64,
        )
        .await?;
        let mut prev = from.head.clone();
        let mut stmts = Vec::new();
        for a in &archived {
            let row = stored.iter().find(|e| e.seq == a.seq);
            let intact = row.is_some_and(|r| r.hash == a.hash && chain::event_hash(&prev, r) == a.hash);
            prev.clone_from(&a.hash);
            if intact {
                continue;
            }
            stmts.push(store::stmt(
                db,
                "INSERT INTO event_repairs (run_id, seq, hash, at, actor) VALUES (?1, ?2, ?3, ?4, 'operator')",
                &[t(run_id), u(a.seq), t(&a.hash), store::i(now_ms)],
            )?);
            if row.is_some() {
                let payload = a.payload.to_string();
                stmts.push(store::stmt(
                    db,
                    "UPDATE events SET id = ?3, type = ?4, payload = ?5, timestamp = ?6, author_id = ?7, hash = ?8 WHERE run_id = ?1 AND seq = ?2",
                    &[t(run_id), u(a.seq), t(&a.id), t(&a.kind), t(&payload), store::i(a.timestamp), t(&a.author_id), t(&a.hash)],
                )?);
            } else {
                stmts.push(insert_event_stmt(db, a, &org)?);
            }
            stmts.push(store::audit_stmt(
                db,
                &org,
                now_ms,
                "operator",
                "event.repaired",
                run_id,
                &json!({"seq": a.seq, "hash": a.hash}),
            )?);
            repaired.push(a.seq);
        }
        for chunk in chunked(stmts, 99) {
            db.batch(chunk).await?;
        }
    }
    let verify = match runs::verify_chain(db, run_id).await? {
        Ok(w) => json!({"ok": true, "last_seq": w.last_seq, "head_hash": w.head}),
        Err((seq, why)) => json!({"ok": false, "first_bad_seq": seq, "reason": why.as_str()}),
    };
    Ok(json!({"repaired": repaired, "verify": verify}))
}

/// The scheduled pass (cron): archive and audit what it finds; never fails loudly.
pub async fn scheduled(env: &Env, now_ms: i64) {
    let result = match store::db(env) {
        Ok(db) => archive_pass(env, &db, now_ms, false).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(report) => super::log::info(&json!({"msg": "archive pass", "report": report})),
        Err(e) => super::log::error(&json!({"msg": "archive pass failed", "error": e.to_string()})),
    }
}
