//! D1 access shared by every resource: binding names, argument conversion,
//! typed queries, the audit log, and the per-request [`Meter`] behind the
//! `Server-Timing` header (every D1 call goes through [`Db`], which counts it).

use crate::error::{AppError, AppResult};
use serde::de::DeserializeOwned;
use std::cell::Cell;
use std::rc::Rc;
use wasm_bindgen::{JsCast, JsValue};
use worker::{D1Database, D1DatabaseSession, D1PreparedStatement, Env};

pub const DB: &str = "DB";
pub const ARTIFACTS: &str = "ARTIFACTS";
pub const MARKET_CACHE: &str = "MARKET_CACHE";
pub const AI_JOBS: &str = "AI_JOBS";
pub const CLASSROOM: &str = "CLASSROOM";

/// What one request cost: D1 statements (a batch counts each), rows D1 read,
/// KV and R2 operations, and how the edge cache answered. Shared by `Rc`
/// because a request's futures all run on the one wasm thread.
#[derive(Default)]
pub struct Meter {
    pub d1: Cell<u32>,
    pub d1_rows_read: Cell<u64>,
    pub kv: Cell<u32>,
    pub r2: Cell<u32>,
    /// `hit`, `miss` or `bypass` once the edge cache was consulted.
    pub cache: Cell<Option<&'static str>>,
    pub wrote: Cell<bool>,
}

impl Meter {
    pub fn kv_op(&self) {
        self.kv.set(self.kv.get() + 1);
    }
    pub fn r2_op(&self) {
        self.r2.set(self.r2.get() + 1);
    }
}

/// What this isolate keeps, by key: things that never change once written
/// (content-addressed artifacts, the immutable columns of lesson, version,
/// session and run rows), and hints checked where they are used (a run's
/// head). Bounded: when full and given a new key, it starts over.
///
/// The values are kept type-erased: every `Kept` shares one map type, so the
/// B-tree's code is in the worker once, not once per kind of value (eleven
/// of them: -9 KB gzipped). A `get` checks the type and clones.
pub struct Kept<V> {
    map: std::cell::RefCell<std::collections::BTreeMap<String, Box<dyn std::any::Any>>>,
    capacity: usize,
    value: std::marker::PhantomData<fn() -> V>,
}

impl<V: Clone + 'static> Kept<V> {
    pub const fn new(capacity: usize) -> Self {
        Kept {
            map: std::cell::RefCell::new(std::collections::BTreeMap::new()),
            capacity,
            value: std::marker::PhantomData,
        }
    }

    pub fn get(&self, key: &str) -> Option<V> {
        self.map.borrow().get(key)?.downcast_ref::<V>().cloned()
    }

    pub fn keep(&self, key: String, value: V) {
        let mut map = self.map.borrow_mut();
        if map.len() >= self.capacity && !map.contains_key(&key) {
            map.clear();
        }
        map.insert(key, Box::new(value));
    }

    pub fn forget(&self, key: &str) {
        self.map.borrow_mut().remove(key);
    }
}

thread_local! {
    /// Development fault switch `d1_delay_ms`: a far primary, simulated. Kept
    /// in the isolate (not in D1) so that reading it is free.
    static D1_DELAY_MS: Cell<u32> = const { Cell::new(0) };
}

pub fn set_d1_delay_ms(ms: u32) {
    D1_DELAY_MS.with(|d| d.set(ms));
}

pub fn d1_delay_ms() -> u32 {
    D1_DELAY_MS.with(Cell::get)
}

enum Conn {
    Plain(D1Database),
    /// The Sessions API: reads may go to a replica no older than the bookmark.
    Session(D1DatabaseSession),
}

/// The D1 database as one request sees it: through a session when the
/// request has one, and metered.
pub struct Db {
    conn: Conn,
    pub meter: Rc<Meter>,
}

impl Db {
    pub fn prepare(&self, sql: &str) -> D1PreparedStatement {
        match &self.conn {
            Conn::Plain(db) => db.prepare(sql),
            Conn::Session(s) => s.prepare(sql),
        }
    }

    /// Count `statements` and wait out the simulated distance to the primary.
    async fn before(&self, statements: usize) {
        self.meter.d1.set(self.meter.d1.get() + statements as u32);
        let delay = d1_delay_ms();
        if delay > 0 {
            worker::Delay::from(std::time::Duration::from_millis(delay as u64)).await;
        }
    }

    /// One atomic batch, in one round trip and one transaction (every
    /// statement counts): each statement's rows come back on their own, to be
    /// decoded as their own type. D1's `batch` is called directly:
    /// workers-rs's wrapper reads each result's `meta` through
    /// serde_wasm_bindgen.
    pub async fn batch(&self, statements: Vec<D1PreparedStatement>) -> AppResult<Vec<Rows>> {
        self.before(statements.len()).await;
        self.meter.wrote.set(true);
        let target: &JsValue = match &self.conn {
            Conn::Plain(d) => d.as_ref(),
            Conn::Session(s) => s.as_ref(),
        };
        let batch = get(target, "batch")
            .and_then(|f| f.dyn_into::<worker::js_sys::Function>().ok())
            .ok_or_else(|| AppError::internal("D1 has no batch"))?;
        let list: worker::js_sys::Array = statements.iter().map(|s| JsValue::from(s.inner().clone())).collect();
        let promise = batch.call1(target, &list).map_err(|e| AppError::internal(js_message(&e)))?;
        let results = worker::wasm_bindgen_futures::JsFuture::from(worker::js_sys::Promise::from(promise))
            .await
            .map_err(|e| AppError::internal(js_message(&e)))?;
        let results = results
            .dyn_into::<worker::js_sys::Array>()
            .map_err(|_| AppError::internal("D1 batch results are not an array"))?;
        Ok(results
            .iter()
            .map(|result| {
                count_rows_read(self, &result);
                let changes = get(&result, "meta").and_then(|m| get(&m, "changes")).and_then(|v| v.as_f64());
                let rows = match get(&result, "results") {
                    Some(rows) => rows.dyn_into::<worker::js_sys::Array>().map(|a| a.to_vec()).unwrap_or_default(),
                    None => Vec::new(),
                };
                Rows { rows, changes: changes.map(|n| n as u64) }
            })
            .collect())
    }

    /// The session's latest bookmark, for `x-d1-bookmark`.
    pub fn bookmark(&self) -> Option<String> {
        match &self.conn {
            Conn::Session(s) => s.get_bookmark().ok().flatten(),
            Conn::Plain(_) => None,
        }
    }
}

/// A bookmark as D1 hands them out (hex groups and dashes). Anything else is
/// ignored rather than passed to D1, so a forged one can never fail a query.
pub fn valid_bookmark(raw: &str) -> bool {
    (8..=256).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// The database for one request. `constraint_or_bookmark` is a valid bookmark,
/// `first-primary` or `first-unconstrained`; a runtime without the Sessions
/// API gets the plain binding.
pub fn session_db(env: &Env, constraint_or_bookmark: &str, meter: Rc<Meter>) -> AppResult<Db> {
    let db = env.d1(DB)?;
    let conn = match db.with_session(Some(constraint_or_bookmark)) {
        Ok(s) => Conn::Session(s),
        Err(_) => Conn::Plain(db),
    };
    Ok(Db { conn, meter })
}

/// The database outside a request (queue consumer, cron, Durable Object).
pub fn db(env: &Env) -> AppResult<Db> {
    Ok(Db { conn: Conn::Plain(env.d1(DB)?), meter: Rc::default() })
}

/// A value bound to a D1 statement. Integers travel as f64: `JsValue::from(i64)`
/// is a BigInt, which D1 rejects; every id and seq here stays below 2^53.
#[derive(Clone, Copy)]
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

pub fn stmt(db: &Db, sql: &str, args: &[Arg<'_>]) -> AppResult<D1PreparedStatement> {
    let values: Vec<JsValue> = args.iter().map(JsValue::from).collect();
    Ok(db.prepare(sql).bind(&values)?)
}

/// A D1 (or Durable Object SQL, [`sql_rows`]) row type, decoded column by
/// column without serde: a serde deserializer per row type
/// (serde_wasm_bindgen's struct visitors) cost the worker far more bytes than
/// these few getter calls. Declared with [`d1_row!`].
pub trait FromRow {
    /// The row's value; a column that failed is recorded in `row` (see [`Row::get`]).
    fn from_row(row: &Row) -> Self;
}

/// A row whose columns are not read (`Option<()>`: does a row exist).
impl FromRow for () {
    fn from_row(_: &Row) {}
}

/// One row as D1 hands it over (a JS object keyed by column name), and the
/// first column that could not be read.
pub struct Row {
    value: JsValue,
    failed: Cell<Option<&'static str>>,
}

impl Row {
    /// The column `name`. One missing or of another type (a query and its row
    /// type disagree) gives the default here and fails the row in [`Row::decode`]:
    /// no early return per column, so a row type's decoder stays a few calls.
    pub fn get<T: Column + Default>(&self, name: &'static str) -> T {
        T::from_js(get(&self.value, name).unwrap_or(JsValue::UNDEFINED)).unwrap_or_else(|| {
            if self.failed.get().is_none() {
                self.failed.set(Some(name));
            }
            T::default()
        })
    }

    /// [`Row::get`], with the type's default when the query has no such column.
    pub fn get_or_default<T: Column + Default>(&self, name: &'static str) -> T {
        match get(&self.value, name) {
            Some(v) if !v.is_undefined() => self.get(name),
            _ => T::default(),
        }
    }

    /// An internal error naming the first column that could not be read.
    fn check(&self) -> AppResult<()> {
        match self.failed.get() {
            None => Ok(()),
            Some(name) => Err(AppError::internal(format!("SQL column {name}: missing or of another type"))),
        }
    }
}

/// A value one column can hold. SQLite integers arrive as JS numbers: an
/// integer type takes only safe integers in its range; NULL (or no column)
/// is `None` for an `Option` and an error for anything else.
pub trait Column: Sized {
    fn from_js(v: JsValue) -> Option<Self>;
}

impl Column for String {
    fn from_js(v: JsValue) -> Option<Self> {
        v.as_string()
    }
}

impl Column for f64 {
    fn from_js(v: JsValue) -> Option<Self> {
        v.as_f64()
    }
}

impl Column for i64 {
    fn from_js(v: JsValue) -> Option<Self> {
        v.as_f64().filter(|_| worker::js_sys::Number::is_safe_integer(&v)).map(|f| f as i64)
    }
}

macro_rules! unsigned_column {
    ($($t:ty),*) => {$(
        impl Column for $t {
            fn from_js(v: JsValue) -> Option<Self> {
                i64::from_js(v).and_then(|n| <$t>::try_from(n).ok())
            }
        }
    )*};
}
unsigned_column!(u8, u32, u64);

impl<T: Column> Column for Option<T> {
    fn from_js(v: JsValue) -> Option<Self> {
        if v.is_null() || v.is_undefined() {
            Some(None)
        } else {
            T::from_js(v).map(Some)
        }
    }
}

/// A row struct and its [`FromRow`]: each field is read from the column of
/// its name.
macro_rules! d1_row {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($(#[$fmeta:meta])* $fvis:vis $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])* $vis struct $name { $($(#[$fmeta])* $fvis $field: $ty),* }
        impl $crate::edge::store::FromRow for $name {
            fn from_row(row: &$crate::edge::store::Row) -> Self {
                Self { $($field: row.get(stringify!($field))),* }
            }
        }
    };
}
pub(crate) use d1_row;

/// Every row of a query.
pub async fn all<T: FromRow>(db: &Db, sql: &str, args: &[Arg<'_>]) -> AppResult<Vec<T>> {
    decode_all(raw_rows(db, sql, args).await?)
}

/// The first row (read as `all` reads, so that D1's `rows_read` is counted
/// too).
pub async fn first<T: FromRow>(db: &Db, sql: &str, args: &[Arg<'_>]) -> AppResult<Option<T>> {
    decode_first(raw_rows(db, sql, args).await?)
}

/// A query's rows as JS objects. Not generic, so that the future exists once
/// rather than once per row type.
async fn raw_rows(db: &Db, sql: &str, args: &[Arg<'_>]) -> AppResult<Vec<JsValue>> {
    let statement = stmt(db, sql, args)?;
    db.before(1).await;
    let promise = statement.inner().all().map_err(worker::Error::from)?;
    let result = worker::wasm_bindgen_futures::JsFuture::from(promise).await.map_err(worker::Error::from)?;
    count_rows_read(db, &result);
    match get(&result, "results") {
        Some(rows) if !rows.is_null() && !rows.is_undefined() => Ok(rows
            .dyn_into::<worker::js_sys::Array>()
            .map_err(|_| AppError::internal("D1 results are not an array"))?
            .to_vec()),
        _ => Ok(Vec::new()),
    }
}

// Decoding is a plain loop over `for_each_row` rather than an iterator
// chain: what exists once per row type (~60 of them) is then `from_row` and
// a push, where `map(..).collect::<Result<Vec<_>, _>>()` instantiated its
// adapters (try_fold, the shunt, from_iter) for every row type.

fn decode_all<T: FromRow>(rows: Vec<JsValue>) -> AppResult<Vec<T>> {
    let mut out = Vec::with_capacity(rows.len());
    for_each_row(rows, &mut |row| out.push(T::from_row(row)))?;
    Ok(out)
}

fn decode_first<T: FromRow>(mut rows: Vec<JsValue>) -> AppResult<Option<T>> {
    rows.truncate(1);
    let mut out = None;
    for_each_row(rows, &mut |row| out = Some(T::from_row(row)))?;
    Ok(out)
}

/// Each row through `decode`, stopping at the first one a column of which
/// could not be read.
fn for_each_row(rows: Vec<JsValue>, decode: &mut dyn FnMut(&Row)) -> AppResult<()> {
    for value in rows {
        let row = Row { value, failed: Cell::new(None) };
        decode(&row);
        row.check()?;
    }
    Ok(())
}

/// Every row of a Durable Object SQL query, decoded as D1 rows are.
pub fn sql_rows<T: FromRow>(cursor: worker::SqlCursor) -> worker::Result<Vec<T>> {
    let mut rows = Vec::new();
    for row in cursor {
        rows.push(row?);
    }
    decode_all(rows).map_err(|e| worker::Error::RustError(e.to_string()))
}

/// [`all`] for big pages (event pages read by replay and paging): the rows
/// cross from JS as one JSON text instead of field by field through
/// serde_wasm_bindgen, one boundary crossing per query instead of several per
/// field. Used only where pages are big: each row type read this way adds its
/// own serde_json deserializer to the binary.
pub async fn all_bulk<T: DeserializeOwned>(db: &Db, sql: &str, args: &[Arg<'_>]) -> AppResult<Vec<T>> {
    let result = start(db, sql, args).await?.result(db).await?;
    let rows = get(&result, "results").unwrap_or(JsValue::NULL);
    if rows.is_null() || rows.is_undefined() {
        return Ok(Vec::new());
    }
    let text = worker::js_sys::JSON::stringify(&rows)
        .map_err(|_| AppError::internal("D1 rows are not JSON"))?
        .as_string()
        .unwrap_or_default();
    serde_json::from_str(&text).map_err(|e| AppError::internal(format!("D1 row shape: {e}")))
}

/// Add D1's `meta.rows_read` of a raw result object to the request's meter.
fn count_rows_read(db: &Db, result: &JsValue) {
    let rows_read = get(result, "meta").and_then(|m| get(&m, "rows_read")).and_then(|v| v.as_f64());
    db.meter.d1_rows_read.set(db.meter.d1_rows_read.get() + rows_read.unwrap_or(0.0) as u64);
}

fn get(v: &JsValue, key: &str) -> Option<JsValue> {
    worker::js_sys::Reflect::get(v, &JsValue::from_str(key)).ok()
}

/// One statement's rows out of [`Db::batch`], and D1's `meta.changes`.
pub struct Rows {
    rows: Vec<JsValue>,
    pub changes: Option<u64>,
}

impl Rows {
    /// The first row, as [`first`] reads it.
    pub fn first<T: FromRow>(self) -> AppResult<Option<T>> {
        decode_first(self.rows)
    }

    /// The text in `column` of the first row (`None` for no row or NULL).
    pub fn text(&self, column: &str) -> Option<String> {
        self.rows.first().and_then(|row| get(row, column)).and_then(|v| v.as_string())
    }
}

/// D1's own message of a failed call (constraint names), for the caller.
pub fn js_message(e: &JsValue) -> String {
    e.dyn_ref::<worker::js_sys::Error>()
        .map(|err| String::from(err.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| "D1 query failed".into())
}

/// A query started now and read later: D1 works on it while the caller
/// does something else (replay folds one page while the next is read).
pub struct Pending {
    future: worker::wasm_bindgen_futures::JsFuture,
}

/// Start a query (counted like any statement).
pub async fn start(db: &Db, sql: &str, args: &[Arg<'_>]) -> AppResult<Pending> {
    let statement = stmt(db, sql, args)?;
    db.before(1).await;
    let promise = statement.inner().all().map_err(|e| AppError::from(worker::Error::from(e)))?;
    Ok(Pending { future: worker::wasm_bindgen_futures::JsFuture::from(promise) })
}

impl Pending {
    /// D1's result object, its `rows_read` counted; D1's own error message
    /// (constraint names) kept for the caller.
    async fn result(self, db: &Db) -> AppResult<JsValue> {
        let result = self.future.await.map_err(|e| AppError::internal(js_message(&e)))?;
        count_rows_read(db, &result);
        Ok(result)
    }

    /// The text in `column` of the first row (`None` for no row or NULL).
    pub async fn text(self, db: &Db, column: &str) -> AppResult<Option<String>> {
        let result = self.result(db).await?;
        let first = get(&result, "results").and_then(|rows| get(&rows, "0"));
        Ok(first.and_then(|row| get(&row, column)).and_then(|v| v.as_string()))
    }
}

pub async fn run(db: &Db, sql: &str, args: &[Arg<'_>]) -> AppResult<()> {
    let statement = stmt(db, sql, args)?;
    db.before(1).await;
    db.meter.wrote.set(true);
    let promise = statement.inner().run().map_err(|e| AppError::internal(js_message(&e)))?;
    let result =
        worker::wasm_bindgen_futures::JsFuture::from(promise).await.map_err(|e| AppError::internal(js_message(&e)))?;
    count_rows_read(db, &result);
    Ok(())
}

/// The text D1 gives for a failed statement, for telling constraint kinds apart.
pub fn is_constraint(e: &AppError, kind: &str) -> bool {
    matches!(e.failure(), crate::error::Failure::Internal(msg) if msg.contains(kind))
}

/// Append to the audit log (itself append-only by trigger). Best effort for
/// refusals: an audit write failing must not turn a 4xx into a 500.
pub fn audit_stmt(
    db: &Db,
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
    db: &Db,
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
        super::log::error(&crate::json!({"msg": "audit write failed", "action": action, "error": e.to_string()}));
    }
}

thread_local! {
    /// Counter increments not yet in D1: (name, Prometheus label set, amount).
    /// Request paths only add here; [`flush_counters`] writes them in one
    /// batch off the response path (cron, or after a request that wrote).
    static PENDING: std::cell::RefCell<Vec<(&'static str, String, f64)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Add to a counter, in memory: no database write on the request path.
pub fn count(name: &'static str, labels: &str, by: f64) {
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        match p.iter_mut().find(|(n, l, _)| *n == name && l == labels) {
            Some(entry) => entry.2 += by,
            None => p.push((name, labels.to_owned(), by)),
        }
    });
}

/// This isolate's increments not yet flushed (added to what D1 holds when
/// `/v1/metrics` renders).
pub fn pending_counters() -> Vec<(&'static str, String, f64)> {
    PENDING.with(|p| p.borrow().clone())
}

pub fn has_pending_counters() -> bool {
    PENDING.with(|p| !p.borrow().is_empty())
}

/// Move the pending increments into D1 in one batch; on failure they stay
/// pending for the next flush (nothing counted is lost or counted twice).
pub async fn flush_counters(db: &Db) {
    let taken = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
    if taken.is_empty() {
        return;
    }
    let mut statements = Vec::with_capacity(taken.len());
    for (name, labels, by) in &taken {
        match stmt(
            db,
            "INSERT INTO metrics (name, labels, value) VALUES (?1, ?2, ?3) ON CONFLICT (name, labels) DO UPDATE SET value = value + excluded.value",
            &[t(name), t(labels), Arg::Real(*by)],
        ) {
            Ok(s) => statements.push(s),
            Err(_) => break,
        }
    }
    let ok = statements.len() == taken.len() && db.batch(statements).await.is_ok();
    if !ok {
        for (name, labels, by) in taken {
            count(name, &labels, by);
        }
    }
}
