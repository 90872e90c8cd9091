//! D1 access shared by every resource: binding names, argument conversion,
//! typed queries, the audit log and metric counters.

use crate::error::{AppError, AppResult};
use serde::de::DeserializeOwned;
use wasm_bindgen::{JsCast, JsValue};
use worker::{D1Database, D1PreparedStatement, Env};

pub const DB: &str = "DB";
pub const ARTIFACTS: &str = "ARTIFACTS";
pub const MARKET_CACHE: &str = "MARKET_CACHE";
pub const AI_JOBS: &str = "AI_JOBS";
pub const CLASSROOM: &str = "CLASSROOM";

/// A value bound to a D1 statement. Integers travel as f64: `JsValue::from(i64)`
/// is a BigInt, which D1 rejects; every id and seq here stays below 2^53.
pub enum Arg<'a> {
    Text(&'a str),
    Int(i64),
    Real(f64),
    Null,
}

impl From<&Arg<'_>> for JsValue {
    fn from(a: &Arg<'_>) -> JsValue {
        match a {
            Arg::Text(s) => JsValue::from_str(s),
            Arg::Int(n) => JsValue::from_f64(*n as f64),
            Arg::Real(f) => JsValue::from_f64(*f),
            Arg::Null => JsValue::NULL,
        }
    }
}

pub fn t(s: &str) -> Arg<'_> {
    Arg::Text(s)
}
pub fn i(n: impl Into<i64>) -> Arg<'static> {
    Arg::Int(n.into())
}
pub fn u(n: u64) -> Arg<'static> {
    Arg::Int(n.min(i64::MAX as u64) as i64)
}

pub fn db(env: &Env) -> AppResult<D1Database> {
    Ok(env.d1(DB)?)
}

pub fn stmt(db: &D1Database, sql: &str, args: &[Arg<'_>]) -> AppResult<D1PreparedStatement> {
    let values: Vec<JsValue> = args.iter().map(JsValue::from).collect();
    Ok(db.prepare(sql).bind(&values)?)
}

pub async fn all<T: DeserializeOwned>(db: &D1Database, sql: &str, args: &[Arg<'_>]) -> AppResult<Vec<T>> {
    let result = stmt(db, sql, args)?.all().await?;
    Ok(result.results::<T>()?)
}

pub async fn first<T: DeserializeOwned>(db: &D1Database, sql: &str, args: &[Arg<'_>]) -> AppResult<Option<T>> {
    Ok(stmt(db, sql, args)?.first::<T>(None).await?)
}

/// [`all`] for big pages (event pages read by replay and paging): the rows
/// cross from JS as one JSON text instead of field by field through
/// serde_wasm_bindgen, one boundary crossing per query instead of several per
/// field. Used only where pages are big: each row type read this way adds its
/// own serde_json deserializer to the binary.
pub async fn all_bulk<T: DeserializeOwned>(db: &D1Database, sql: &str, args: &[Arg<'_>]) -> AppResult<Vec<T>> {
    let promise = stmt(db, sql, args)?.inner().all().map_err(|e| AppError::from(worker::Error::from(e)))?;
    let result = worker::wasm_bindgen_futures::JsFuture::from(promise).await.map_err(|e| {
        // Keep D1's own message (constraint names) for the caller.
        let message = e
            .dyn_ref::<worker::js_sys::Error>()
            .map(|err| String::from(err.message()))
            .or_else(|| e.as_string())
            .unwrap_or_else(|| "D1 query failed".into());
        AppError::internal(message)
    })?;
    let rows = worker::js_sys::Reflect::get(&result, &JsValue::from_str("results")).unwrap_or(JsValue::NULL);
    if rows.is_null() || rows.is_undefined() {
        return Ok(Vec::new());
    }
    let text = worker::js_sys::JSON::stringify(&rows)
        .map_err(|_| AppError::internal("D1 rows are not JSON"))?
        .as_string()
        .unwrap_or_default();
    serde_json::from_str(&text).map_err(|e| AppError::internal(format!("D1 row shape: {e}")))
}

pub async fn run(db: &D1Database, sql: &str, args: &[Arg<'_>]) -> AppResult<()> {
    stmt(db, sql, args)?.run().await?;
    Ok(())
}

/// The text D1 gives for a failed statement, for telling constraint kinds apart.
pub fn is_constraint(e: &AppError, kind: &str) -> bool {
    matches!(e, AppError::Internal(msg) if msg.contains(kind))
}

/// Append to the audit log (itself append-only by trigger). Best effort for
/// refusals: an audit write failing must not turn a 4xx into a 500.
pub fn audit_stmt(
    db: &D1Database,
    org: &str,
    at_ms: i64,
    actor: &str,
    action: &str,
    target: &str,
    detail: &serde_json::Value,
) -> AppResult<D1PreparedStatement> {
    stmt(
        db,
        "INSERT INTO audit (org, at, actor, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        &[t(org), i(at_ms), t(actor), t(action), t(target), t(&detail.to_string())],
    )
}

pub async fn audit(
    db: &D1Database,
    org: &str,
    at_ms: i64,
    actor: &str,
    action: &str,
    target: &str,
    detail: &serde_json::Value,
) {
    let result = match audit_stmt(db, org, at_ms, actor, action, target, detail) {
        Ok(s) => s.run().await.map_err(AppError::from),
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        worker::console_error!(
            "{}",
            serde_json::json!({"msg": "audit write failed", "action": action, "error": e.to_string()})
        );
    }
}

/// Add to a counter (`name` plus a label set rendered Prometheus-style).
pub fn counter_stmt(db: &D1Database, name: &str, labels: &str, by: f64) -> AppResult<D1PreparedStatement> {
    stmt(
        db,
        "INSERT INTO metrics (name, labels, value) VALUES (?1, ?2, ?3) ON CONFLICT (name, labels) DO UPDATE SET value = value + excluded.value",
        &[t(name), t(labels), Arg::Real(by)],
    )
}

pub async fn count(db: &D1Database, name: &str, labels: &str, by: f64) {
    if let Ok(s) = counter_stmt(db, name, labels, by) {
        let _ = s.run().await;
    }
}
