//! Runs and events over HTTP, with D1 as the event store.
//!
//! Single writer: every append is one D1 batch, which D1 runs as one SQLite
//! transaction on a database that executes writes one at a time. The batch
//! is sealed after the head the writer saw (seq and hash), and its first row
//! lands only if the run's last hash is still that head's: otherwise its seq
//! is NULL, the NOT NULL constraint aborts the batch, nothing lands, and the
//! writer reads the head again. Seqs are the primary key and event ids are
//! unique per run, so parallel appends serialize into unique, gapless seqs
//! and a repeated id can never land twice, without a per-run object.

use super::http::{allow, created, json_text, ok, path_id, Ctx};
use super::store::Db;
use super::store::{self, i, t, u};
use super::Later;
use crate::canonical::write_canonical_str;
use crate::chain;
use crate::error::{AppError, AppResult};
use crate::identity::Claims;
use crate::json;
use crate::policy::{self, Action, Decision, Scope};
use crate::run::{self, Checkpoint, Event, NewEvent};
use serde_json::Value;
use worker::{Method, Response};

store::d1_row! {
    #[derive(Clone)]
    pub struct RunRow {
        pub id: String,
        pub org: String,
        pub kind: String,
        pub creator: String,
        pub created_at: i64,
    }
}

store::d1_row! {
    /// An event row as D1 holds it (`type AS kind`).
    struct EventRow {
        id: String,
        run_id: String,
        seq: u64,
        kind: String,
        payload: String,
        timestamp: i64,
        author_id: String,
        hash: Option<String>,
    }
}

impl EventRow {
    fn into_event(self) -> Event {
        let payload = serde_json::from_str(&self.payload).unwrap_or(Value::Null);
        Event {
            id: self.id,
            run_id: self.run_id,
            seq: self.seq,
            kind: self.kind,
            payload,
            timestamp: self.timestamp,
            author_id: self.author_id,
            hash: self.hash.unwrap_or_default(),
        }
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
            let id = path_id(id, "run")?.to_owned();
            read_run(ctx, &id).await
        }
        [id, "events"] | [id, "events", _] => {
            if rest.len() == 3 {
                // A single event is immutable: it can be read in the list, never changed.
                allow(&m, &[])?;
            }
            allow(&m, &[Method::Get, Method::Post])?;
            let id = path_id(id, "run")?.to_owned();
            if m == Method::Post {
                append(ctx, &id).await
            } else {
                list_events(ctx, &id).await
            }
        }
        [id, "state"] => {
            allow(&m, &[Method::Get])?;
            let id = path_id(id, "run")?.to_owned();
            state(ctx, &id).await
        }
        [id, "verify"] => {
            allow(&m, &[Method::Get])?;
            let id = path_id(id, "run")?.to_owned();
            verify(ctx, &id).await
        }
        [id, "xapi"] => {
            allow(&m, &[Method::Get])?;
            let id = path_id(id, "run")?.to_owned();
            xapi(ctx, &id).await
        }
        _ => Err(AppError::not_found("route")),
    }
}

thread_local! {
    /// Runs this isolate has read (a run row never changes once written).
    static RUNS_READ: store::Kept<RunRow> = const { store::Kept::new(4096) };
    /// The head (seq, hash) this isolate's last append to each run left. A
    /// hint, never trusted: an append sealed after it lands only if SQL finds
    /// the run's last hash still equal to it.
    static HEADS: store::Kept<(u64, String)> = const { store::Kept::new(4096) };
}

pub async fn load_run(db: &Db, id: &str) -> AppResult<Option<RunRow>> {
    if let Some(run) = RUNS_READ.with(|k| k.get(id)) {
        return Ok(Some(run));
    }
    let run: Option<RunRow> =
        store::first(db, "SELECT id, org, kind, creator, created_at FROM runs WHERE id = ?1", &[t(id)]).await?;
    if let Some(r) = &run {
        RUNS_READ.with(|k| k.keep(id.to_owned(), r.clone()));
    }
    Ok(run)
}

/// Load a run and authorize `action` on it; another org's run is a 404.
pub async fn authorized_run(db: &Db, claims: &Claims, id: &str, action: Action) -> AppResult<RunRow> {
    let run = load_run(db, id).await?.ok_or_else(|| AppError::not_found("run"))?;
    let scope = Scope { same_org: run.org == claims.org, owner: run.creator == claims.sub };
    if action == Action::RunRead && scope.same_org && policy::decide(&claims.roles, action, scope) != Decision::Allow {
        // Not a reader of the org's runs: one who took part in it replays it
        // (attendance is looked up only here, never for the org's readers).
        let attended = run.kind == "session" && super::sessions::attended(db, &run.id, &claims.sub).await?;
        let participant = Scope { same_org: true, owner: scope.owner || attended };
        policy::authorize(claims, Action::RunReplay, participant, "run")?;
        return Ok(run);
    }
    policy::authorize(claims, action, scope, "run")?;
    Ok(run)
}

pub fn new_id() -> String {
    // Encoded into a buffer, not through `Display`: the live path makes an
    // id per event, and `to_string` runs the formatting machinery for it.
    let uuid = uuid::Builder::from_random_bytes(random_16()).into_uuid();
    String::from(&*uuid.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()))
}

/// 16 bytes from the platform's CSPRNG, drawn 512 at a time: one
/// `crypto.getRandomValues` call per 32 ids instead of per id (the live path
/// makes an id per event). getrandom on wasm does not fail there.
fn random_16() -> [u8; 16] {
    use std::cell::RefCell;
    thread_local! {
        static POOL: RefCell<([u8; 512], usize)> = const { RefCell::new(([0; 512], 512)) };
    }
    POOL.with(|pool| {
        let (bytes, used) = &mut *pool.borrow_mut();
        if *used + 16 > bytes.len() {
            let _ = getrandom::fill(bytes);
            *used = 0;
        }
        let mut out = [0u8; 16];
        if let Some(next) = bytes.get_mut(*used..*used + 16) {
            out.copy_from_slice(next);
            // Handed out once: never left in the pool to be read again.
            next.fill(0);
        }
        *used += 16;
        out
    })
}

/// Create a run row. Used by the API and by sessions and attempts.
pub async fn insert_run(db: &Db, org: &str, kind: &str, creator: &str, now_ms: i64) -> AppResult<String> {
    let id = new_id();
    db.batch(vec![insert_run_stmt(db, &id, org, kind, creator, now_ms)?]).await?;
    run_inserted(&id);
    Ok(id)
}

/// The run's head (last seq and hash) as this isolate's own last append left
/// it: a hint, for an append pinned to it, which lands only if true.
pub fn known_head(id: &str) -> Option<(u64, String)> {
    HEADS.with(|k| k.get(id))
}

/// A run this isolate has just inserted holds no event: its first append
/// needs no read of the head.
pub fn run_inserted(id: &str) {
    HEADS.with(|k| k.keep(id.to_owned(), (0, chain::GENESIS.to_owned())));
}

/// The insert of a new run, to go in a batch with what the run belongs to.
pub fn insert_run_stmt(
    db: &Db,
    id: &str,
    org: &str,
    kind: &str,
    creator: &str,
    now_ms: i64,
) -> AppResult<worker::D1PreparedStatement> {
    store::stmt(
        db,
        "INSERT INTO runs (id, org, kind, creator, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        &[t(id), t(org), t(kind), t(creator), i(now_ms)],
    )
}

async fn create(ctx: &mut Ctx) -> AppResult<Response> {
    let claims = ctx.claims()?;
    policy::authorize(&claims, Action::RunCreate, Scope::ORG, "run")?;
    let body = ctx.json().await?;
    let kind = match body.get("kind") {
        None | Some(Value::Null) => "recording".to_owned(),
        Some(Value::String(k))
            if run::is_valid_type(k) && k.len() <= 32 && !matches!(k.as_str(), "session" | "attempt") =>
        {
            k.clone()
        }
        Some(_) => {
            return Err(AppError::bad_request(
                "invalid_field",
                "kind: must be a lowercase word (session and attempt are reserved)",
            ))
        }
    };
    let db = ctx.db()?;
    let id = insert_run(&db, &claims.org, &kind, &claims.sub, ctx.now_ms).await?;
    created(json!({"run_id": id, "kind": kind}))
}

async fn read_run(ctx: &mut Ctx, id: &str) -> AppResult<Response> {
    let claims = ctx.claims()?;
    let db = ctx.db()?;
    let run = authorized_run(&db, &claims, id, Action::RunRead).await?;
    let last_seq = last_seq(&db, id).await?;
    ok(
        json!({"run_id": run.id, "org": run.org, "kind": run.kind, "creator": run.creator, "created_at": run::rfc3339_ms(run.created_at), "last_seq": last_seq}),
    )
}

pub async fn last_seq(db: &Db, run_id: &str) -> AppResult<u64> {
    store::d1_row! {
        struct Row {
            last: Option<u64>,
        }
    }
    let row: Option<Row> =
        store::first(db, "SELECT MAX(seq) AS last FROM events WHERE run_id = ?1", &[t(run_id)]).await?;
    Ok(row.and_then(|r| r.last).unwrap_or(0))
}

/// What an append must know before it writes: the seqs these ids already
/// hold, and the run's head (last seq and its hash; `None` hash for a legacy
/// row). One statement per 90 ids, the head riding in the first: the chain
/// costs no extra round trip.
struct Lookup {
    existing: Vec<(String, u64)>,
    head_seq: u64,
    head_hash: Option<String>,
}

async fn lookup(db: &Db, run_id: &str, events: &[NewEvent]) -> AppResult<Lookup> {
    store::d1_row! {
        struct Row {
            id: String,
            seq: u64,
            hash: Option<String>,
            head: i64,
        }
    }
    let mut out = Lookup { existing: Vec::new(), head_seq: 0, head_hash: None };
    // ≤ 100 bound parameters per statement.
    for (n, chunk) in events.chunks(90).enumerate() {
        let placeholders: Vec<String> = (0..chunk.len()).map(|k| format!("?{}", k + 2)).collect();
        let sql = if n == 0 {
            format!("SELECT id, seq, hash, seq = (SELECT MAX(seq) FROM events WHERE run_id = ?1) AS head FROM events WHERE run_id = ?1 AND (id IN ({}) OR seq = (SELECT MAX(seq) FROM events WHERE run_id = ?1))", placeholders.join(","))
        } else {
            format!(
                "SELECT id, seq, hash, 0 AS head FROM events WHERE run_id = ?1 AND id IN ({})",
                placeholders.join(",")
            )
        };
        let mut args = vec![t(run_id)];
        args.extend(chunk.iter().map(|e| t(&e.id)));
        let rows: Vec<Row> = store::all(db, &sql, &args).await?;
        for r in rows {
            if r.head != 0 {
                out.head_seq = r.seq;
                out.head_hash = r.hash.clone();
            }
            if chunk.iter().any(|e| e.id == r.id) {
                out.existing.push((r.id, r.seq));
            }
        }
    }
    Ok(out)
}

/// Give a run's legacy rows (written before the chain, `hash` NULL) their
/// hashes, page by page. They are always a prefix of the run (appends seal
/// after filling it). Returns the last filled seq and its hash (the head of
/// the run when it holds no sealed rows yet).
pub async fn fill_chain(db: &Db, run_id: &str) -> AppResult<(u64, String)> {
    let mut walk = chain::Walk::default();
    const PAGE: u64 = 500;
    loop {
        let page = events_page(db, run_id, walk.last_seq, i64::MAX as u64, PAGE).await?;
        if page.is_empty() {
            break;
        }
        let mut updates = Vec::new();
        let mut sealed = false;
        for e in &page {
            if !e.hash.is_empty() {
                // The first sealed row: the rest of the run was written with the chain.
                sealed = true;
                break;
            }
            let h = chain::event_hash(&walk.head, e);
            updates.push(store::stmt(
                db,
                "UPDATE events SET hash = ?3 WHERE run_id = ?1 AND seq = ?2 AND hash IS NULL",
                &[t(run_id), u(e.seq), t(&h)],
            )?);
            walk.last_seq = e.seq;
            walk.head = h;
        }
        if !updates.is_empty() {
            db.batch(updates).await?;
        }
        if sealed || (page.len() as u64) < PAGE {
            break;
        }
    }
    Ok((walk.last_seq, walk.head))
}

pub enum Appended {
    /// Every event was already in the run: seqs of the originals.
    AlreadyThere { first_seq: u64, last_seq: u64 },
    New {
        first_seq: u64,
        last_seq: u64,
        /// The events as written (seq, timestamp, hash assigned).
        events: Vec<Event>,
    },
}

/// Append a validated batch atomically. Public for attempts, which write runs too.
pub async fn append_events(
    db: &Db,
    run: &RunRow,
    author: &str,
    events: &[NewEvent],
    expected_seq: Option<u64>,
    now_ms: i64,
) -> AppResult<Appended> {
    // The common case is one statement: this isolate wrote the run's last
    // batch, so it knows the head; the insert itself checks that it still
    // stands. A repeated id, a moved head or a pinned `expected_seq` that is
    // not the known head all take the reading path below, which answers them.
    if let Some((head_seq, head_hash)) = known_head(&run.id) {
        if expected_seq.is_none_or(|x| x == head_seq) {
            let all: Vec<&NewEvent> = events.iter().collect();
            match seal(db, run, author, &all, head_seq, &head_hash, now_ms)?.write(db).await {
                Ok(appended) => return Ok(appended),
                Err(e) if store::is_constraint(&e, "constraint failed") => HEADS.with(|k| k.forget(&run.id)),
                Err(e) => return Err(e),
            }
        }
    }
    // Read the head and the ids already there, seal the rest after the head,
    // and write them only if the head is still the same. A concurrent append,
    // or a concurrent append of the same new id (UNIQUE), costs one more round.
    for _ in 0..MAX_APPEND_ROUNDS {
        let found = lookup(db, &run.id, events).await?;
        let mut fresh: Vec<&NewEvent> = Vec::new();
        for e in events {
            if !found.existing.iter().any(|(id, _)| *id == e.id) {
                fresh.push(e);
            }
        }
        if fresh.is_empty() {
            let (mut first_seq, mut last_seq) = (u64::MAX, 0);
            for (_, seq) in &found.existing {
                first_seq = first_seq.min(*seq);
                last_seq = last_seq.max(*seq);
            }
            return Ok(Appended::AlreadyThere {
                first_seq: if found.existing.is_empty() { 0 } else { first_seq },
                last_seq,
            });
        }
        if let Some(x) = expected_seq.filter(|x| *x != found.head_seq) {
            return Err(seq_conflict(x, found.head_seq));
        }
        let prev = match (found.head_seq, found.head_hash) {
            (0, _) => chain::GENESIS.to_owned(),
            (_, Some(h)) => h,
            // Rows from before the chain: fill theirs first (once per run).
            (_, None) => fill_chain(db, &run.id).await?.1,
        };
        match seal(db, run, author, &fresh, found.head_seq, &prev, now_ms)?.write(db).await {
            Ok(appended) => return Ok(appended),
            Err(e) if store::is_constraint(&e, "NOT NULL") => {
                // The head moved under us: a conflict when the client pinned it.
                if let Some(x) = expected_seq {
                    let current = last_seq(db, &run.id).await?;
                    return Err(seq_conflict(x, current));
                }
            }
            Err(e) if store::is_constraint(&e, "UNIQUE") => {}
            Err(e) => return Err(e),
        }
    }
    Err(AppError::conflict("concurrent_append", "the run was being appended to concurrently; retry"))
}

/// The insert of a sealed batch: rows travel as one JSON parameter
/// (`[[seq, id, type, payload text, hash], ...]`), so a batch is one
/// statement, not one per row. The first row's seq is NULL unless the run's
/// last hash is still `?2` (NULL: the run holds no event yet) and the run
/// exists; NOT NULL then aborts the whole batch.
const INSERT_SQL: &str = "INSERT INTO events (run_id, seq, id, type, payload, timestamp, author_id, org, hash) \
     SELECT ?1, CASE WHEN value ->> 0 != ?7 OR ((SELECT hash FROM events WHERE run_id = ?1 ORDER BY seq DESC LIMIT 1) IS ?2 \
     AND EXISTS (SELECT 1 FROM runs WHERE id = ?1)) THEN value ->> 0 END, \
     value ->> 1, value ->> 2, value ->> 3, ?3, ?4, ?5, value ->> 4 FROM json_each(?6)";

/// Bytes of rows per insert statement: far below D1's 2 MB per bound value
/// (a request body is 1 MB at most, so this is nearly always one statement).
const INSERT_CHUNK_BYTES: usize = 512 * 1024;

/// Events sealed after a head, with the statements that insert them, for a
/// batch of the caller's (a new run's first events go in the batch that
/// inserts the run).
pub struct Sealed {
    pub statements: Vec<worker::D1PreparedStatement>,
    run_id: String,
    events: Vec<Event>,
    head: String,
}

/// Seal `fresh` after the head (`head_seq`, its hash `prev`): seqs, hashes
/// and the insert statements, which land only if that is still the head.
pub fn seal(
    db: &Db,
    run: &RunRow,
    author: &str,
    fresh: &[&NewEvent],
    head_seq: u64,
    prev: &str,
    now_ms: i64,
) -> AppResult<Sealed> {
    let mut sealed: Vec<Event> = Vec::with_capacity(fresh.len());
    for (n, e) in fresh.iter().enumerate() {
        sealed.push(Event {
            id: e.id.clone(),
            run_id: run.id.clone(),
            seq: head_seq + 1 + n as u64,
            kind: e.kind.clone(),
            payload: e.payload.clone(),
            timestamp: now_ms,
            author_id: author.to_owned(),
            hash: String::new(),
        });
    }
    let head = chain::seal(prev, &mut sealed);
    let first_seq = sealed.first().map_or(0, |e| e.seq);
    let guard = if head_seq == 0 { store::Arg::Null } else { t(prev) };
    let mut statements = Vec::new();
    let mut list = String::from("[");
    for (n, e) in sealed.iter().enumerate() {
        if list.len() > 1 {
            list.push(',');
        }
        list.push('[');
        list.push_str(&e.seq.to_string());
        for text in [e.id.as_str(), e.kind.as_str(), e.payload.to_string().as_str(), e.hash.as_str()] {
            list.push(',');
            write_canonical_str(text, &mut list);
        }
        list.push(']');
        if list.len() >= INSERT_CHUNK_BYTES || n + 1 == sealed.len() {
            list.push(']');
            statements.push(store::stmt(
                db,
                INSERT_SQL,
                &[t(&run.id), guard, i(now_ms), t(author), t(&run.org), t(&list), u(first_seq)],
            )?);
            list = String::from("[");
        }
    }
    Ok(Sealed { statements, run_id: run.id.clone(), events: sealed, head })
}

impl Sealed {
    /// The events as they will be written (seqs and hashes assigned).
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Write its statements in one batch of their own, then [`Sealed::landed`].
    async fn write(self, db: &Db) -> AppResult<Appended> {
        self.write_after(db, Vec::new()).await
    }

    /// Write `before` and then its statements in one batch (all land or
    /// none), then [`Sealed::landed`]: a caller's own change recorded by
    /// these events, or a guard that fails the batch.
    pub async fn write_after(mut self, db: &Db, mut before: Vec<worker::D1PreparedStatement>) -> AppResult<Appended> {
        before.append(&mut self.statements);
        db.batch(before).await?;
        Ok(self.landed())
    }

    /// Its statements landed: this isolate's head of the run moves on.
    pub fn landed(self) -> Appended {
        let (Some(first_seq), Some(last_seq)) = (self.events.first().map(|e| e.seq), self.events.last().map(|e| e.seq))
        else {
            return Appended::AlreadyThere { first_seq: 0, last_seq: 0 };
        };
        let head = self.head;
        HEADS.with(|k| {
            // Responses may come back out of order: keep the furthest head.
            if k.get(&self.run_id).is_none_or(|(s, _)| s < last_seq) {
                k.keep(self.run_id.clone(), (last_seq, head));
            }
        });
        Appended::New { first_seq, last_seq, events: self.events }
    }
}

/// Rounds an append may take when other appends keep winning (each round at
/// least one append lands, so this many parallel writers all get through).
const MAX_APPEND_ROUNDS: usize = 64;

fn seq_conflict(expected: u64, current: u64) -> AppError {
    AppError::conflict("seq_conflict", format!("expected_seq {expected} does not match the run's last seq {current}"))
}

async fn append(ctx: &mut Ctx, run_id: &str) -> AppResult<Response> {
    let claims = ctx.claims()?;
    let db = ctx.db()?;
    let run = authorized_run(&db, &claims, run_id, Action::RunAppend).await?;
    if run.kind == "session" || run.kind == "attempt" {
        return Err(AppError::forbidden("session and attempt runs are written by their own writer only"));
    }
    let body = ctx.json().await?;
    if let Some(extra) =
        body.as_object().and_then(|o| o.keys().find(|k| !matches!(k.as_str(), "events" | "expected_seq")))
    {
        return Err(AppError::bad_request(
            "invalid_field",
            format!("{extra}: unknown field (allowed: events, expected_seq)"),
        ));
    }
    let expected_seq =
        match body.get("expected_seq") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_u64().filter(|n| *n <= i64::MAX as u64).ok_or_else(|| {
                AppError::bad_request("invalid_field", "expected_seq: must be a non-negative integer")
            })?),
        };
    let events = run::validate_batch(body.get("events").unwrap_or(&Value::Null))?;
    match append_events(&db, &run, &claims.sub, &events, expected_seq, ctx.now_ms).await? {
        Appended::AlreadyThere { first_seq, last_seq } => {
            ok(json!({"first_seq": first_seq, "last_seq": last_seq, "duplicate": true}))
        }
        Appended::New { first_seq, last_seq, .. } => created(json!({"first_seq": first_seq, "last_seq": last_seq})),
    }
}

pub async fn events_page(db: &Db, run_id: &str, after: u64, to: u64, limit: u64) -> AppResult<Vec<Event>> {
    start_page(db, run_id, after, to, limit).await?.events(db).await
}

/// One page of events, as SQLite writes it: a single JSON text with each
/// payload embedded as JSON. One value crosses from D1 (not one JS object per
/// row and column) and every payload is parsed once, straight into the event.
/// `$run` is the SQL for the run's id (`?1`, or a subquery on `?1`).
macro_rules! page_sql {
    ($run:literal) => {
        concat!(
            "SELECT json_group_array(json_object('id', id, 'run_id', run_id, 'seq', seq, 'type', type, \
             'payload', json(payload), 'timestamp', timestamp, 'author_id', author_id, 'hash', COALESCE(hash, ''))) AS page \
             FROM (SELECT * FROM events WHERE run_id = ",
            $run,
            " AND seq > ?2 AND seq <= ?3 ORDER BY seq LIMIT ?4)"
        )
    };
}
pub(crate) use page_sql;
const PAGE_SQL: &str = page_sql!("?1");

/// A page's text as its events in seq order (`None`: not a page).
pub fn page_events(text: &str) -> Option<Vec<Event>> {
    let mut events = serde_json::from_str::<Vec<Event>>(text).ok()?;
    // json_group_array keeps the subquery's order in SQLite; never rely on it blindly.
    crate::order::sort_by_key(&mut events, |e| e.seq);
    Some(events)
}

pub struct PendingPage {
    pending: AppResult<store::Pending>,
    run_id: String,
    range: (u64, u64, u64),
}

/// Start reading a page; D1 works on it until [`PendingPage::events`].
pub async fn start_page(db: &Db, run_id: &str, after: u64, to: u64, limit: u64) -> AppResult<PendingPage> {
    let pending = store::start(db, PAGE_SQL, &[t(run_id), u(after), u(to), u(limit)]).await;
    Ok(PendingPage { pending, run_id: run_id.to_owned(), range: (after, to, limit) })
}

impl PendingPage {
    pub async fn events(self, db: &Db) -> AppResult<Vec<Event>> {
        let (after, to, limit) = self.range;
        // D1 caps a value at 2 MB: a page of big payloads is read row by row instead.
        let text = match self.pending {
            Ok(p) => p.text(db, "page").await.ok().flatten(),
            Err(_) => None,
        };
        if let Some(events) = text.as_deref().and_then(page_events) {
            return Ok(events);
        }
        // Rare (a page of big payloads), so read as any other rows are: no
        // serde decoder of its own for this row type.
        let rows: Vec<EventRow> = store::all(
            db,
            "SELECT id, run_id, seq, type AS kind, payload, timestamp, author_id, hash FROM events WHERE run_id = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq LIMIT ?4",
            &[t(&self.run_id), u(after), u(to), u(limit)],
        )
        .await?;
        Ok(rows.into_iter().map(EventRow::into_event).collect())
    }
}

async fn list_events(ctx: &mut Ctx, run_id: &str) -> AppResult<Response> {
    let claims = ctx.claims()?;
    let after = ctx.query_u64("after")?.unwrap_or(0);
    let limit = ctx.query_u64("limit")?.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(AppError::bad_request("invalid_query", "limit: must be from 1 to 1000"));
    }
    let db = ctx.db()?;
    authorized_run(&db, &claims, run_id, Action::RunRead).await?;
    let events = events_page(&db, run_id, after, i64::MAX as u64, limit).await?;
    let last_seq = last_seq(&db, run_id).await?;
    let next_after = events.last().map(|e| e.seq).filter(|s| *s < last_seq);
    let events = serde_json::to_string(&events).map_err(|e| AppError::internal(e.to_string()))?;
    let next_after = next_after.map_or_else(|| "null".to_owned(), |s| s.to_string());
    json_text(200, format!("{{\"events\":{events},\"last_seq\":{last_seq},\"next_after\":{next_after}}}"))
}

/// A replay page: `[seq, type, payload]` per event, in one JSON text built by
/// SQLite (one value crosses from D1), with only the columns the fold reads.
const REPLAY_SQL: &str = "SELECT json_group_array(json_array(seq, type, json(payload))) AS page \
     FROM (SELECT seq, type, payload FROM events WHERE run_id = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq LIMIT ?4)";

/// Events per replay page. Canvas events are ~60 bytes in a page, far below
/// D1's 2 MB per value; a page of big payloads is read as rows instead.
const REPLAY_PAGE: u64 = 10_000;

/// Start reading a replay page; D1 works on it until its text is awaited.
async fn start_replay_page(db: &Db, run_id: &str, after: u64, to: u64) -> AppResult<store::Pending> {
    store::start(db, REPLAY_SQL, &[t(run_id), u(after), u(to), u(REPLAY_PAGE)]).await
}

/// Rows per page when a page is too big for one D1 value: 25 payloads of at
/// most 64 KB each stay below 2 MB.
const REPLAY_SMALL_PAGE: u64 = 25;

/// The text of a replay page D1 could not give as one value (over 2 MB):
/// the same rows read in small pages, joined into one text.
async fn replay_rows(db: &Db, run_id: &str, after: u64, to: u64) -> AppResult<String> {
    let mut out = String::from("[");
    let (mut at, mut read) = (after, 0);
    while read < REPLAY_PAGE {
        let Some(text) = store::start(db, REPLAY_SQL, &[t(run_id), u(at), u(to), u(REPLAY_SMALL_PAGE)])
            .await?
            .text(db, "page")
            .await?
        else {
            break;
        };
        let rows: Vec<run::PageRow> =
            serde_json::from_str(&text).map_err(|e| AppError::internal(format!("replay page: {e}")))?;
        let Some(last) = rows.iter().map(|r| r.0).max() else { break };
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(text.trim().strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or_default());
        (at, read) = (last, read + rows.len() as u64);
        if (rows.len() as u64) < REPLAY_SMALL_PAGE {
            break;
        }
    }
    out.push(']');
    Ok(out)
}

/// Replay a run up to `target` from its best checkpoint, storing the
/// checkpoints the replay passes so the next one starts later.
pub async fn replay_to(
    db: &Db,
    env: &worker::Env,
    later: Option<&worker::Context>,
    run_id: &str,
    target: u64,
    every: u64,
) -> AppResult<(run::Canvas, u64)> {
    store::d1_row! {
        struct CpRow {
            seq: u64,
            state: String,
            hash: String,
        }
    }
    let row: Option<CpRow> = store::first(
        db,
        "SELECT seq, state, hash FROM checkpoints WHERE run_id = ?1 AND seq <= ?2 ORDER BY seq DESC LIMIT 1",
        &[t(run_id), u(target)],
    )
    .await?;
    // A checkpoint that no longer matches its hash is ignored: replay from scratch is the fallback.
    let checkpoint = row
        .and_then(|r| serde_json::from_str(&r.state).ok().map(|state| Checkpoint { seq: r.seq, state, hash: r.hash }))
        .and_then(Checkpoint::verified);
    let (mut state, mut seq) = match checkpoint {
        Some(c) => (c.state, c.seq),
        None => (run::Canvas::default(), 0),
    };
    let mut fresh: Vec<(u64, run::Canvas)> = Vec::new();
    let mut next = if seq < target { Some((seq, start_replay_page(db, run_id, seq, target).await)) } else { None };
    while let Some((after, pending)) = next.take() {
        // D1 caps a value at 2 MB: a page it cannot give as one text is read as rows.
        let text = match pending {
            Ok(p) => p.text(db, "page").await.ok().flatten(),
            Err(_) => None,
        };
        let rows_text;
        let mut rows: Vec<run::PageRow> = match text.as_deref().and_then(|t| serde_json::from_str(t).ok()) {
            Some(rows) => rows,
            None => {
                rows_text = replay_rows(db, run_id, after, target).await?;
                serde_json::from_str(&rows_text).map_err(|e| AppError::internal(format!("replay page: {e}")))?
            }
        };
        // json_group_array keeps the subquery's order in SQLite; never rely on it blindly.
        crate::order::sort_by_key(&mut rows, |r| r.0);
        let Some(last) = rows.last().map(|r| r.0) else { break };
        // The next page is read while this one folds.
        if rows.len() as u64 == REPLAY_PAGE && last < target {
            next = Some((last, start_replay_page(db, run_id, last, target).await));
        }
        fresh.extend(run::fold_page(&mut state, &mut seq, &rows, every));
    }
    // The checkpoints are hashed, serialized and written to D1 in one batch
    // after the response when the caller can wait for it there: nobody waits.
    if !fresh.is_empty() {
        let db = store::db(env)?;
        let run_id = run_id.to_owned();
        let write: Later = Box::pin(async move {
            let mut stmts = Vec::new();
            for (at, state) in fresh {
                let c = Checkpoint::of(at, state);
                let Ok(text) = serde_json::to_string(&c.state) else { continue };
                if let Ok(s) = store::stmt(
                    &db,
                    "INSERT OR IGNORE INTO checkpoints (run_id, seq, state, hash) VALUES (?1, ?2, ?3, ?4)",
                    &[t(&run_id), u(c.seq), t(&text), t(&c.hash)],
                ) {
                    stmts.push(s);
                }
            }
            if let Err(e) = db.batch(stmts).await {
                super::log::error(&json!({"msg": "checkpoint write failed", "error": e.to_string()}));
            }
        });
        match later {
            Some(wctx) => wctx.wait_until(write),
            None => write.await,
        }
    }
    Ok((state, seq))
}

async fn state(ctx: &mut Ctx, run_id: &str) -> AppResult<Response> {
    let claims = ctx.claims()?;
    let at_seq = ctx.query_u64("at_seq")?;
    let at_ms = match ctx.query("at") {
        None | Some("") => None,
        Some(text) => Some(
            run::parse_rfc3339_ms(text)
                .ok_or_else(|| AppError::bad_request("invalid_query", "at: must be an RFC 3339 time"))?,
        ),
    };
    let db = ctx.db()?;
    authorized_run(&db, &claims, run_id, Action::RunRead).await?;
    let last = last_seq(&db, run_id).await?;
    let target = match (at_seq, at_ms) {
        (Some(_), Some(_)) => return Err(AppError::bad_request("invalid_query", "give at_seq or at, not both")),
        (Some(s), None) if s > last => {
            return Err(AppError::rule(
                404,
                "seq_out_of_range",
                format!("at_seq {s} is past the run's last seq {last}"),
            ))
        }
        (Some(s), None) => s,
        (None, Some(ms)) => {
            store::d1_row! {
                struct Row {
                    seq: Option<u64>,
                }
            }
            let row: Option<Row> = store::first(
                &db,
                "SELECT MAX(seq) AS seq FROM events WHERE run_id = ?1 AND timestamp <= ?2",
                &[t(run_id), i(ms)],
            )
            .await?;
            row.and_then(|r| r.seq).unwrap_or(0)
        }
        (None, None) => last,
    };
    let started = super::now_ms();
    let every = ctx.var_u64("CHECKPOINT_EVERY", 100).max(1);
    let (canvas, seq) = replay_to(&db, &ctx.env, Some(&ctx.wctx), run_id, target, every).await?;
    let elapsed = (super::now_ms() - started) as f64 / 1000.0;
    store::count("dropple_replay_seconds_sum", "", elapsed);
    store::count("dropple_replay_seconds_count", "", 1.0);
    // The state's JSON once: the answer and its hash (what `Canvas::hash` computes).
    let state = canvas.to_value();
    let hash = crate::canonical::canonical_sha256(&state);
    ok(json!({"seq": seq, "state": state, "hash": hash}))
}

async fn xapi(ctx: &mut Ctx, run_id: &str) -> AppResult<Response> {
    let claims = ctx.claims()?;
    let after = ctx.query_u64("after")?.unwrap_or(0);
    let limit = ctx.query_u64("limit")?.unwrap_or(500).clamp(1, 1000);
    let db = ctx.db()?;
    authorized_run(&db, &claims, run_id, Action::RunRead).await?;
    let base = ctx.base_url();
    let events = events_page(&db, run_id, after, i64::MAX as u64, limit).await?;
    let statements: Vec<Value> = events.iter().map(|e| run::xapi_statement(e, &base)).collect();
    ok(json!({"statements": statements, "more": events.len() as u64 == limit}))
}

/// Walk the run's chain in bounded pages: the first bad seq, or the head.
pub async fn verify_chain(db: &Db, run_id: &str) -> AppResult<Result<chain::Walk, (u64, chain::Break)>> {
    const PAGE: u64 = 1000;
    let mut walk = chain::Walk::default();
    loop {
        let page = events_page(db, run_id, walk.last_seq, i64::MAX as u64, PAGE).await?;
        if let Err(bad) = walk.check(&page) {
            return Ok(Err(bad));
        }
        if (page.len() as u64) < PAGE {
            return Ok(Ok(walk));
        }
    }
}

async fn verify(ctx: &mut Ctx, run_id: &str) -> AppResult<Response> {
    let claims = ctx.claims()?;
    let db = ctx.db()?;
    authorized_run(&db, &claims, run_id, Action::RunRead).await?;
    let mut result = verify_chain(&db, run_id).await?;
    if let Err((_, chain::Break::MissingHash)) = result {
        // A run from before the chain whose rows were not filled yet: fill
        // them (only a leading run of NULL hashes ever is) and walk again.
        store::d1_row! {
            struct One {
                #[allow(dead_code)]
                run_id: String,
            }
        }
        let legacy: Option<One> =
            store::first(&db, "SELECT run_id FROM chain_backfill WHERE run_id = ?1", &[t(run_id)]).await?;
        if legacy.is_some() {
            fill_chain(&db, run_id).await?;
            result = verify_chain(&db, run_id).await?;
        }
    }
    match result {
        Ok(walk) => ok(json!({"ok": true, "last_seq": walk.last_seq, "head_hash": walk.head})),
        Err((seq, why)) => ok(json!({"ok": false, "first_bad_seq": seq, "reason": why.as_str()})),
    }
}
