//! The classroom Durable Object: one per live session. It adapts sockets and
//! storage to the pure protocol core in `crate::classroom`: decode, call the
//! core, carry out the effects in order (persist before broadcast).
//!
//! Storage is the object's SQLite: `meta` (config, outbox position) and
//! `events` (the session's run). The in-memory state is only a cache of
//! `replay(config, events)`, rebuilt after hibernation, a reset or a restart.
//! An alarm forwards events to D1 (the outbox), retrying with backoff, so a D1
//! fault loses nothing.

use super::binding::Binding;
use super::now_ms;
use super::sessions::{HDR_OBSERVER_LIMIT, HDR_ROLE, HDR_USER};
use super::store::{self, t, u};
use super::Later;
use crate::classroom::{self, Effect, Peer, Role, ServerMsg, SessionConfig, SessionState, Status, StoredEvent};
use crate::error::AppError;
use crate::json;
use crate::run::Event;
use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use worker::worker_sys::web_sys;
use worker::{Env, Request, Response, Result, SqlStorage, SqlStorageValue, State, WebSocket, WebSocketPair};

/// Events per outbox batch; each insert binds 8 values, D1 allows 100 per statement.
const OUTBOX_BATCH: usize = 100;
/// How long events wait to be forwarded to D1 at most: a class's cursor
/// stream goes to D1 in one batch per second (~16 events at 60 ms a move)
/// rather than an alarm, a D1 round trip and outbox bookkeeping every few
/// events. Measured on the 10-observer fan-out (`npm run bench`): the
/// worker's CPU per round is 1.6x the durable room's at 1 s and 2.2x at
/// 100 ms; a longer bound saves little more (1.45x at 5 s) for a D1 copy that
/// lags further behind. The object's own storage (committed before every
/// broadcast) stays the truth meanwhile, and an ended session is forwarded
/// at once (`OUTBOX_END_DELAY_MS`), so its replay from D1 is complete.
const OUTBOX_DELAY_MS: i64 = 1000;
const OUTBOX_END_DELAY_MS: i64 = 1;
const INSERT_EVENT_SQL: &str =
    "INSERT INTO events (seq, id, type, payload, timestamp, author_id, hash) VALUES (?, ?, ?, ?, ?, ?, ?)";
/// Joins and leaves are announced at most this often, as one `presence` with
/// the current count: announcing each one would make a class of N arriving
/// (or a deploy dropping N sockets) cost N² sends.
const PRESENCE_DELAY_MS: i64 = 100;

/// One open SSE stream: the writer of the `TransformStream` whose readable
/// side is the response body. The runtime's own stream, written from here:
/// workers-rs's `Response::from_stream` links wasm-streams (its pull
/// machinery and three exported classes) for this one use.
struct SseStream {
    writer: Binding,
}

thread_local! {
    /// Ignores a write's rejection (the client went away meanwhile): one
    /// closure for every stream, never dropped.
    static IGNORE_REJECTION: Closure<dyn FnMut(wasm_bindgen::JsValue)> = Closure::new(|_| {});
}

impl SseStream {
    fn open() -> std::result::Result<(SseStream, web_sys::ReadableStream), String> {
        let class = Binding::wrap("globalThis", worker::js_sys::global().into()).field("TransformStream");
        let class: &worker::js_sys::Function = class.unchecked_ref();
        let stream = worker::js_sys::Reflect::construct(class, &worker::js_sys::Array::new())
            .map(|stream| Binding::wrap("TransformStream", stream))
            .map_err(|e| store::js_message(&e))?;
        let writer = Binding::wrap("writable", stream.field("writable")).call_now("getWriter", &[])?;
        Ok((SseStream { writer: Binding::wrap("sse writer", writer) }, stream.field("readable").unchecked_into()))
    }

    /// Whether the client still reads: a cancelled body errors the writable
    /// side, and an errored writer's `desiredSize` is `null`.
    fn is_open(&self) -> bool {
        !self.writer.field("desiredSize").is_null()
    }

    /// Queue `bytes` (not awaited: the stream takes them in order); false
    /// once the client has gone.
    fn send(&self, bytes: &[u8]) -> bool {
        if !self.is_open() {
            return false;
        }
        match self.writer.call_now("write", &[worker::js_sys::Uint8Array::from(bytes).into()]) {
            Ok(promise) => {
                let _ =
                    IGNORE_REJECTION.with(|ignore| promise.unchecked_into::<worker::js_sys::Promise>().catch(ignore));
                true
            }
            Err(_) => false,
        }
    }
}

/// Exported by hand rather than through workers-rs's `#[durable_object]`:
/// that macro makes every handler an async export, so each socket message
/// became a promise, a task and a microtask before any of our code ran. The
/// socket handlers here are synchronous (the object's SQL storage and
/// `send` are), and a message returns a promise only when it has D1 or
/// queue work to do after its effects (audits, explanation requests).
#[wasm_bindgen]
pub struct Classroom {
    state: State,
    env: Env,
    /// Cache of the folded session; `None` until loaded. A RefCell because
    /// handlers take `&self`; never borrowed across an `.await`.
    session: RefCell<Option<SessionState>>,
    /// Open SSE streams. They keep the object awake, so memory is fine here.
    sse: RefCell<Vec<SseStream>>,
    /// Sockets that said hello, with their role: derived from the attachments
    /// (the truth, which survive hibernation) once per wake-up, then kept in
    /// step on hello and close. Without it every broadcast would deserialize
    /// every socket's attachment, O(observers) JS round trips per event.
    connected: RefCell<Option<Vec<(WebSocket, Role, String)>>>,
    /// The count last announced in a `presence` broadcast (after a wake-up,
    /// unknown: the next alarm announces it again, which is harmless).
    presence_sent: std::cell::Cell<Option<u32>>,
    /// What this instance knows of its alarm. Lets a persist skip the
    /// storage round trips when an alarm due soon enough is already set, and
    /// the `get_alarm` when none is.
    alarm: std::cell::Cell<Alarm>,
    /// The quiz's answer key, written once when the session opens: read
    /// from storage once per wake-up, not on every response.
    answer_key: RefCell<Option<Option<Rc<classroom::AnswerKey>>>>,
    /// `meta` values read or written during this wake-up: this object is the
    /// table's only writer, so a kept value stays right until it writes
    /// again. Every alarm reads the outbox's position and backoff; kept,
    /// that is no storage call at all.
    meta_kept: RefCell<std::collections::BTreeMap<String, Option<String>>>,
    /// The storage's SQL handle and the event insert's text as a JS string,
    /// made once per instance: `persist` is then one call into the runtime
    /// per event, not a storage and a `sql` getter, an array, seven pushes
    /// and the query text decoded again on every event.
    insert: std::cell::OnceCell<(web_sys_like::SqlLike, js_sys::JsString)>,
    /// The last sender's [`Peer`], and whether its rate bucket is newer than
    /// its attachment. A cursor stream is one socket's messages in a row:
    /// its peer stays here instead of a read and a write of the attachment
    /// per message. A change of connection state (hello) is written at once;
    /// the bucket alone is written back when another socket takes the slot.
    /// Lost with the instance, the attachment's older bucket counts: an
    /// object is evicted after 10 s without messages, when any bucket is full
    /// again (it refills in 2 s); a restart mid-stream allows one burst more.
    sender: RefCell<Option<(WebSocket, Peer, bool)>>,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Alarm {
    /// After a wake-up: the stored alarm must be read once.
    Unknown,
    /// None is set (it fired and was not re-armed).
    Unset,
    /// Set by this instance, due at this time (ms).
    Due(i64),
}

// Rows of this object's SQL storage, read without serde (see `store::FromRow`).
store::d1_row! {
    struct EventRow {
        seq: f64,
        id: String,
        kind: String,
        payload: String,
        timestamp: f64,
        author_id: String,
        hash: Option<String>,
    }
}

store::d1_row! {
    struct CountRow {
        n: f64,
    }
}

store::d1_row! {
    /// What the outbox has to forward from a table: how many rows, the last
    /// one's key, and the rows as one JSON array of arrays.
    struct Pending {
        n: f64,
        last: Option<f64>,
        rows: String,
    }
}

store::d1_row! {
    struct MetaRow {
        value: String,
    }
}

fn json_response(status: u16, body: &serde_json::Value) -> Result<Response> {
    Ok(Response::from_json(body)?.with_status(status))
}

fn error(status: u16, code: &str, message: &str) -> Result<Response> {
    json_response(status, &json!({"error": {"code": code, "message": message}}))
}

impl Classroom {
    fn sql(&self) -> SqlStorage {
        self.state.storage().sql()
    }

    fn migrate(&self) -> Result<()> {
        let sql = self.sql();
        sql.exec("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)", None)?;
        sql.exec(
            "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, type TEXT NOT NULL, payload TEXT NOT NULL, timestamp INTEGER NOT NULL, author_id TEXT NOT NULL)",
            None,
        )?;
        // Who came (everyone but the session's teacher), once per person: the
        // outbox forwards new rows to D1 with the events, by rowid.
        sql.exec("CREATE TABLE IF NOT EXISTS attendance (user_id TEXT PRIMARY KEY, joined_at INTEGER NOT NULL)", None)?;
        // The chain (issue 19): objects created before it get the column; their
        // rows' hashes are filled on the next load (`with_session`).
        let has_hash = store::sql_rows::<CountRow>(
            sql.exec("SELECT COUNT(*) AS n FROM pragma_table_info('events') WHERE name = 'hash'", None)?,
        )?
        .first()
        .is_some_and(|r| r.n > 0.0);
        if !has_hash {
            sql.exec("ALTER TABLE events ADD COLUMN hash TEXT", None)?;
        }
        Ok(())
    }

    fn meta(&self, key: &str) -> Result<Option<String>> {
        if let Some(kept) = self.meta_kept.borrow().get(key) {
            return Ok(kept.clone());
        }
        let rows: Vec<MetaRow> = store::sql_rows(
            self.sql().exec("SELECT value FROM meta WHERE key = ?", vec![SqlStorageValue::from(key)])?,
        )?;
        let value = rows.into_iter().next().map(|r| r.value);
        self.meta_kept.borrow_mut().insert(key.to_owned(), value.clone());
        Ok(value)
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        if self.meta_kept.borrow().get(key).is_some_and(|kept| kept.as_deref() == Some(value)) {
            return Ok(());
        }
        self.sql().exec(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            vec![key.into(), value.into()],
        )?;
        self.meta_kept.borrow_mut().insert(key.to_owned(), Some(value.to_owned()));
        Ok(())
    }

    /// Stored rows after `after`, as stored (the payload's text unparsed).
    fn rows_after(&self, after: u64, limit: usize) -> Result<Vec<EventRow>> {
        store::sql_rows(self.sql().exec(
            "SELECT seq, id, type AS kind, payload, timestamp, author_id, hash FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            vec![SqlStorageValue::from(after as f64), SqlStorageValue::from(limit as f64)],
        )?)
    }

    fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>> {
        // Loading first also seals rows stored before the chain existed.
        let run_id = self.with_session(|s| s.config.run_id.clone())?.unwrap_or_default();
        let rows = self.rows_after(after, limit)?;
        let mut events = Vec::with_capacity(rows.len());
        for r in rows {
            events.push(Event {
                id: r.id,
                run_id: run_id.clone(),
                seq: r.seq as u64,
                kind: r.kind,
                payload: serde_json::from_str(&r.payload).unwrap_or(serde_json::Value::Null),
                timestamp: r.timestamp as i64,
                author_id: r.author_id,
                hash: r.hash.unwrap_or_default(),
            });
        }
        Ok(events)
    }

    /// Load (replay) the session into the cache if needed, then run `f` on it.
    /// `Ok(None)` when the object was never initialised.
    fn with_session<T>(&self, f: impl FnOnce(&mut SessionState) -> T) -> Result<Option<T>> {
        self.load_session()?;
        Ok(self.session.borrow_mut().as_mut().map(f))
    }

    /// Fold the stored events into the session state once per wake-up. Kept
    /// out of the generic `with_session`, which would copy it per caller.
    fn load_session(&self) -> Result<()> {
        if self.session.borrow().is_none() {
            self.migrate()?;
            let Some(config) = self.meta("config")? else { return Ok(()) };
            let config: SessionConfig =
                serde_json::from_str(&config).map_err(|e| worker::Error::RustError(e.to_string()))?;
            let mut state = SessionState::new(config);
            let mut after = 0;
            loop {
                let rows: Vec<EventRow> = store::sql_rows(self.sql().exec(
                    "SELECT seq, id, type AS kind, payload, timestamp, author_id, hash FROM events WHERE seq > ? ORDER BY seq LIMIT 1000",
                    vec![SqlStorageValue::from(after as f64)],
                )?)?;
                let Some(last) = rows.last() else { break };
                after = last.seq as u64;
                for r in rows {
                    let stored_hash = r.hash;
                    let mut ev = Event {
                        id: r.id,
                        run_id: state.config.run_id.clone(),
                        seq: r.seq as u64,
                        kind: r.kind,
                        payload: serde_json::from_str(&r.payload).unwrap_or(serde_json::Value::Null),
                        timestamp: r.timestamp as i64,
                        author_id: r.author_id,
                        hash: String::new(),
                    };
                    ev.hash = match stored_hash {
                        Some(h) => h,
                        None => {
                            // A row from before the chain: seal it now, once.
                            let h = crate::chain::event_hash(&state.head_hash, &ev);
                            self.sql().exec(
                                "UPDATE events SET hash = ? WHERE seq = ? AND hash IS NULL",
                                vec![h.clone().into(), SqlStorageValue::from(ev.seq as f64)],
                            )?;
                            h
                        }
                    };
                    state.apply(&ev);
                }
            }
            *self.session.borrow_mut() = Some(state);
        }
        Ok(())
    }

    /// Everyone who has said hello (their attachment is `Connected`), plus SSE streams.
    fn with_connected<T>(&self, f: impl FnOnce(&mut Vec<(WebSocket, Role, String)>) -> T) -> T {
        self.list_connected();
        f(self.connected.borrow_mut().get_or_insert_with(Vec::new))
    }

    /// Build the list from the sockets' attachments once per wake-up (not
    /// generic: one copy).
    fn list_connected(&self) {
        if self.connected.borrow().is_some() {
            return;
        }
        let list = self
            .state
            .get_websockets()
            .into_iter()
            .filter_map(|ws| {
                let peer = peer_of(&ws)?;
                let who = peer.conn.who();
                peer.conn.is_connected().then_some((ws, who.role, who.user_id))
            })
            .collect();
        *self.connected.borrow_mut() = Some(list);
    }

    /// `ws` just said hello. A cache not built yet will read its attachment.
    fn mark_connected(&self, ws: &WebSocket, role: Role, user_id: String) {
        if let Some(list) = self.connected.borrow_mut().as_mut() {
            if !list.iter().any(|(w, _, _)| w == ws) {
                list.push((ws.clone(), role, user_id));
            }
        }
    }

    fn mark_gone(&self, ws: &WebSocket) {
        if let Some(list) = self.connected.borrow_mut().as_mut() {
            list.retain(|(w, _, _)| w != ws);
        }
    }

    /// Everyone present: connected sockets (with `role`, only those) and SSE streams.
    fn count_present(&self, role: Option<Role>) -> u32 {
        self.sse.borrow_mut().retain(SseStream::is_open);
        let sockets = self.with_connected(|l| l.iter().filter(|(_, r, _)| role.is_none_or(|want| *r == want)).count());
        (sockets + self.sse.borrow().len()) as u32
    }

    fn presence_count(&self) -> u32 {
        self.count_present(None)
    }

    /// Connected observers (sockets that are not the teacher, and SSE streams).
    fn observer_count(&self) -> u32 {
        self.count_present(Some(Role::Observer))
    }

    /// Serialize once, hand the same JS string to every connected socket and
    /// SSE stream (`send_with_str` would copy the text into JS per socket).
    fn broadcast(&self, msg: &ServerMsg) {
        let Ok(text) = serde_json::to_string(msg) else { return };
        let seq = match msg {
            ServerMsg::Event { seq, .. } | ServerMsg::Snapshot { seq, .. } => Some(*seq),
            _ => None,
        };
        self.broadcast_text(&text, seq.map(|seq| (seq, msg_kind(msg))));
    }

    /// Send one message text to every connected socket, and to the SSE
    /// streams when it is a sequenced one (`sse`: its seq and event name).
    fn broadcast_text(&self, text: &str, sse: Option<(u64, &str)>) {
        let js_text = wasm_bindgen::JsValue::from_str(text);
        self.with_connected(|list| {
            // A socket that can no longer be sent to has gone: drop it now.
            list.retain(|(ws, _, _)| raw(ws).send(&js_text).is_ok())
        });
        if let Some((seq, kind)) = sse {
            let mut sse = self.sse.borrow_mut();
            if !sse.is_empty() {
                let frame = sse_frame(seq, kind, text);
                sse.retain(|s| s.send(frame.as_bytes()));
            }
        }
    }

    /// Who is here, for the teacher: the connected observers (from the list
    /// kept in step on hello and close, not one attachment read per socket).
    fn roster(&self) -> ServerMsg {
        let ids = self.with_connected(|l| {
            l.iter().filter(|(_, r, _)| *r == Role::Observer).map(|(_, _, user)| user.clone()).collect::<Vec<_>>()
        });
        classroom::roster(ids, self.observer_count())
    }

    fn send_roster(&self) {
        let teachers: Vec<WebSocket> = self
            .with_connected(|l| l.iter().filter(|(_, r, _)| *r == Role::Teacher).map(|(w, _, _)| w.clone()).collect());
        if teachers.is_empty() {
            return;
        }
        let roster = self.roster();
        for ws in &teachers {
            Self::send(ws, &roster);
        }
    }

    /// The responder's quiz feedback, when `effects` record their response
    /// (the key is read only then: one storage read per quiz response).
    fn quiz_feedback(&self, effects: &[Effect], peer: &Peer) -> Option<ServerMsg> {
        let responded = matches!(effects.first(), Some(Effect::Persist(events)) if events.iter().any(|e| e.kind == "quiz.responded"));
        if !responded {
            return None;
        }
        let key = self.answer_key()?;
        classroom::quiz_feedback(&key, effects, &peer.conn.who().user_id)
    }

    /// `None` for sessions opened before keys were kept, and for empty quizzes.
    fn answer_key(&self) -> Option<Rc<classroom::AnswerKey>> {
        if let Some(kept) = self.answer_key.borrow().as_ref() {
            return kept.clone();
        }
        let stored = self.meta("answer_key").ok()?;
        let key = stored
            .and_then(|text| serde_json::from_str(&text).ok())
            .and_then(|value| classroom::answer_key_from_value(&value).ok())
            .filter(|key| !key.is_empty())
            .map(Rc::new);
        // Kept once the session exists; before that the key may still come.
        if self.session.borrow().is_some() {
            *self.answer_key.borrow_mut() = Some(key.clone());
        }
        key
    }

    fn send(ws: &WebSocket, msg: &ServerMsg) {
        if let Ok(text) = serde_json::to_string(msg) {
            let _ = ws.send_with_str(&text);
        }
    }

    fn snapshot_with_presence(&self) -> Result<Option<ServerMsg>> {
        let snap = self.with_session(|s| s.snapshot())?;
        let count = self.presence_count();
        Ok(snap.map(|m| match m {
            ServerMsg::Snapshot { seq, state, .. } => ServerMsg::Snapshot { seq, state, presence: Some(count) },
            other => other,
        }))
    }

    fn persist(&self, events: Vec<StoredEvent>) -> Result<()> {
        let (sql, query) = self.insert.get_or_init(|| {
            let sql = wasm_bindgen::JsCast::unchecked_into(AsRef::<JsValue>::as_ref(&self.sql()).clone());
            (sql, js_sys::JsString::from(INSERT_EVENT_SQL))
        });
        // No await between these statements: the object's storage commits
        // them together, so a batch lands whole or not at all.
        for e in events {
            // The payload is the canonical text the core wrote for the hash.
            sql.insert_event(
                query,
                e.seq as f64,
                &e.id,
                &e.kind,
                &e.payload,
                e.timestamp as f64,
                &e.author_id,
                &e.hash,
            )
            .map_err(worker::Error::from)?;
        }
        Ok(())
    }

    /// Carry out the core's effects for `ws` (the sender, if any). Returns
    /// audit entries to write after (they need D1, an await).
    fn execute(&self, ws: Option<&WebSocket>, effects: Vec<Effect>) -> Vec<Effect> {
        let mut audits = Vec::new();
        let mut persisted = None;
        for effect in effects {
            match effect {
                Effect::Persist(events) => {
                    let ends = events.iter().any(|e| e.kind == "session.ended");
                    if let Err(e) = self.persist(events) {
                        // Nothing broadcast yet: drop the cache so the next
                        // message replays exactly what storage holds.
                        super::log::error(&json!({"msg": "classroom persist failed", "error": e.to_string()}));
                        *self.session.borrow_mut() = None;
                        if let Some(ws) = ws {
                            Self::send(
                                ws,
                                &ServerMsg::Error {
                                    code: classroom::ErrorCode::InvalidMessage,
                                    message: "could not store the change; try again".into(),
                                },
                            );
                        }
                        return audits;
                    }
                    persisted = Some(if ends { OUTBOX_END_DELAY_MS } else { OUTBOX_DELAY_MS });
                }
                Effect::Broadcast { seq, text } => self.broadcast_text(&text, Some((seq, "event"))),
                Effect::Reply(msg) => {
                    let msg = match msg {
                        ServerMsg::Snapshot { seq, state, .. } => {
                            ServerMsg::Snapshot { seq, state, presence: Some(self.presence_count() + 1) }
                        }
                        m => m,
                    };
                    if let Some(ws) = ws {
                        Self::send(ws, &msg);
                    }
                }
                Effect::SendSince { after } => {
                    if let Some(ws) = ws {
                        let mut cursor = after;
                        while let Ok(page) = self.events_after(cursor, 500) {
                            let Some(last) = page.last().map(|e| e.seq) else { break };
                            for e in page {
                                Self::send(ws, &ServerMsg::Event { seq: e.seq, event: e });
                            }
                            cursor = last;
                        }
                    }
                }
                later @ (Effect::Audit { .. } | Effect::RequestExplanation { .. }) => audits.push(later),
                Effect::Close { code, reason } => {
                    if let Some(ws) = ws {
                        let _ = ws.close(Some(code), Some(reason));
                    }
                }
            }
        }
        if let Some(delay) = persisted {
            self.schedule_alarm(delay);
        }
        audits
    }

    /// Make the alarm (outbox flush, presence announcement) fire within
    /// `delay_ms`: an alarm already due sooner stays, a later one (an outbox
    /// backoff) is brought forward.
    fn schedule_alarm(&self, delay_ms: i64) {
        let due = now_ms() + delay_ms.max(1);
        let known = match self.alarm.get() {
            Alarm::Due(at) if at <= due => return, // the common case on the live path: no storage call at all
            Alarm::Unknown => false,
            Alarm::Unset | Alarm::Due(_) => true,
        };
        self.alarm.set(Alarm::Due(due));
        let storage = self.state.storage();
        self.state.wait_until::<Later>(Box::pin(async move {
            // Only after a wake-up is the stored alarm unknown: read it once.
            if !known {
                if let Ok(Some(at)) = storage.get_alarm().await {
                    if at <= due {
                        return;
                    }
                }
            }
            let _ = storage.set_alarm(std::time::Duration::from_millis(delay_ms.max(1) as u64)).await;
        }));
    }

    /// Re-arm the alarm from inside `alarm` (and remember when it is due).
    async fn rearm(&self, delay_ms: u64) -> Result<()> {
        self.alarm.set(Alarm::Due(now_ms() + delay_ms as i64));
        self.state.storage().set_alarm(std::time::Duration::from_millis(delay_ms)).await
    }

    /// The effects that need I/O beyond this object's storage (D1, the
    /// queue), as a future that owns what it needs: `None` when there are
    /// none, which is every message of a cursor stream.
    fn run_later(&self, ws: Option<&WebSocket>, later: Vec<Effect>, actor: &str) -> Option<impl Future<Output = ()>> {
        if later.is_empty() {
            return None;
        }
        let db = store::db(&self.env).ok()?;
        let (org, lesson_id, version, session_id) = self
            .with_session(|s| {
                (s.config.org.clone(), s.config.lesson_id.clone(), s.config.version, s.config.session_id.clone())
            })
            .ok()
            .flatten()?;
        let env = self.env.clone();
        let ws = ws.cloned();
        let actor = actor.to_owned();
        Some(async move {
            let actor = actor.as_str();
            let ws = ws.as_ref();
            for effect in later {
                match effect {
                    Effect::Audit { action, detail } => {
                        super::log::info(&json!({"msg": "audit", "action": action, "actor": actor}));
                        store::audit(&db, &org, now_ms(), actor, action, &session_id, &detail).await;
                    }
                    Effect::RequestExplanation { step, .. } => {
                        let req = crate::ai::JobRequest {
                            kind: crate::ai::JobKind::Explain,
                            lesson_id: lesson_id.clone(),
                            version,
                            input: crate::ai::JobInput::Explain { step },
                        };
                        let who = super::ai_jobs::Requester {
                            org: &org,
                            user: actor,
                            counted: true,
                            session_id: Some(&session_id),
                            fail_first: 0,
                        };
                        if let Err(e) = super::ai_jobs::enqueue(&env, &db, &who, &req, now_ms()).await {
                            let code = match e.status() {
                                429 => classroom::ErrorCode::RateLimited,
                                402 => classroom::ErrorCode::LimitReached,
                                _ => classroom::ErrorCode::Unavailable,
                            };
                            if let Some(ws) = ws {
                                Self::send(
                                    ws,
                                    &ServerMsg::Error {
                                        code,
                                        message: format!("no explanation: {}", e.public_message()),
                                    },
                                );
                            }
                        }
                    }
                    _ => {}
                }
            }
        })
    }

    /// An explanation from the queue consumer; a redelivery of the same job is dropped.
    fn explanation_arrived(&self, step: u32, job_id: &str, text: &str) -> Result<()> {
        let seen: Vec<CountRow> = store::sql_rows(self.sql().exec(
            "SELECT COUNT(*) AS n FROM events WHERE type = 'explanation.ready' AND json_extract(payload, '$.job_id') = ?",
            vec![SqlStorageValue::from(job_id)],
        )?)?;
        if seen.first().is_some_and(|n| n.n > 0.0) {
            return Ok(());
        }
        let now = now_ms();
        let effects = self
            .with_session(|state| {
                classroom::explanation_ready(state, step, job_id, text, now, &mut super::runs::new_id)
            })?
            .unwrap_or_default();
        self.execute(None, effects);
        Ok(())
    }

    async fn accept_socket(&self, req: &Request) -> Result<Response> {
        let user = req.headers().get(HDR_USER)?.unwrap_or_default();
        let role =
            if req.headers().get(HDR_ROLE)?.as_deref() == Some("teacher") { Role::Teacher } else { Role::Observer };
        let limit: u32 =
            req.headers().get(HDR_OBSERVER_LIMIT)?.and_then(|l| l.parse().ok()).unwrap_or(classroom::MAX_OBSERVERS);
        let pair = WebSocketPair::new()?;
        let tag = if role == Role::Teacher { "teacher" } else { "observer" };
        let observers = self.state.get_websockets_with_tag("observer").len() as u32;
        // The plan may allow fewer observers than the protocol's own cap.
        let over_plan = role == Role::Observer && observers >= limit;
        let refusal = classroom::admission(role, observers)
            .or_else(|| over_plan.then_some(Effect::Close { code: classroom::CLOSE_ROOM_FULL, reason: "room_full" }));
        self.state.accept_websocket_with_tags(&pair.server, &[tag]);
        if refusal.is_none() {
            self.record_attendance(&user)?;
        }
        keep_peer(&pair.server, &Peer::new(user, role, now_ms()))?;
        if let Some(Effect::Close { code, reason }) = refusal {
            Self::send(
                &pair.server,
                &ServerMsg::Error { code: classroom::ErrorCode::RoomFull, message: "the session is full".into() },
            );
            let _ = pair.server.close(Some(code), Some(reason));
        }
        Response::from_websocket(pair.client)
    }

    /// `user` opened the door (a socket let in, or a stream): their
    /// attendance, the record of their right to replay this class and of
    /// their past sessions. Written here, in the object's own storage, and
    /// carried to D1 by the outbox in the batch it writes anyway: not one D1
    /// write per join, which a class arriving at once would queue behind
    /// every other D1 write of the moment.
    fn record_attendance(&self, user: &str) -> Result<()> {
        let teacher = self.with_session(|s| s.config.teacher_id == user)?.unwrap_or(true);
        if teacher || user.is_empty() {
            return Ok(());
        }
        let written = self
            .sql()
            .exec(
                "INSERT OR IGNORE INTO attendance (user_id, joined_at) VALUES (?, ?)",
                vec![user.into(), SqlStorageValue::from(now_ms() as f64)],
            )?
            .rows_written();
        if written > 0 {
            self.schedule_alarm(PRESENCE_DELAY_MS);
        }
        Ok(())
    }

    fn open_sse(&self, req: &Request) -> Result<Response> {
        let user = req.headers().get(HDR_USER)?.unwrap_or_default();
        self.record_attendance(&user)?;
        let (_, _, query) = crate::urlparts::split(&req.inner().url());
        let after = query
            .into_iter()
            .find(|(k, _)| k == "after")
            .and_then(|(_, v)| v.parse::<u64>().ok())
            .or_else(|| req.headers().get("last-event-id").ok().flatten().and_then(|v| v.trim().parse().ok()));
        let (stream, body) = SseStream::open().map_err(worker::Error::JsError)?;
        let mut preamble = String::from("retry: 1000\n\n");
        let known = self.with_session(|s| s.seq)?.unwrap_or(0);
        match after {
            Some(after) if after <= known => {
                let mut cursor = after;
                loop {
                    let page = self.events_after(cursor, 500)?;
                    let Some(last) = page.last().map(|e| e.seq) else { break };
                    for e in page {
                        let seq = e.seq;
                        let text = serde_json::to_string(&ServerMsg::Event { seq, event: e }).unwrap_or_default();
                        preamble.push_str(&sse_frame(seq, "event", &text));
                    }
                    cursor = last;
                }
            }
            _ => {
                if let Some(snap) = self.snapshot_with_presence()? {
                    let text = serde_json::to_string(&snap).unwrap_or_default();
                    preamble.push_str(&sse_frame(known, "snapshot", &text));
                }
            }
        }
        stream.send(preamble.as_bytes());
        self.sse.borrow_mut().push(stream);
        let mut resp = Response::from_body(worker::ResponseBody::Stream(body))?;
        let h = resp.headers_mut();
        h.set("content-type", "text/event-stream; charset=utf-8")?;
        h.set("cache-control", "no-store")?;
        Ok(resp)
    }

    /// Up to `OUTBOX_BATCH` rows after `after` (a `?`, then the limit's `?`).
    fn pending(&self, query: &str, after: u64) -> Result<Pending> {
        let args = vec![SqlStorageValue::from(after as f64), SqlStorageValue::from(OUTBOX_BATCH as f64)];
        let rows: Vec<Pending> = store::sql_rows(self.sql().exec(query, args)?)?;
        Ok(rows.into_iter().next().unwrap_or(Pending { n: 0.0, last: None, rows: "[]".into() }))
    }

    /// Forward events D1 has not seen yet; returns whether everything is synced.
    async fn flush_outbox(&self) -> std::result::Result<bool, AppError> {
        let synced: u64 = self.meta("d1_synced_seq")?.and_then(|v| v.parse().ok()).unwrap_or(0);
        // The rows as D1's statement takes them, one JSON array each, made
        // by SQLite: one text crosses into wasm and on to D1, no row decoded.
        let events = self.pending(
            "SELECT COUNT(*) AS n, MAX(seq) AS last, \
             json_group_array(json_array(seq, id, type, payload, timestamp, author_id, COALESCE(hash, ''))) AS rows \
             FROM (SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?)",
            synced,
        )?;
        let (org, status, session_id, run_id) = self
            .with_session(|s| (s.config.org.clone(), s.status, s.config.session_id.clone(), s.config.run_id.clone()))?
            .ok_or_else(|| AppError::internal("outbox of an uninitialised session"))?;
        // Nothing to write: no D1 round trip at all (presence-only alarms).
        // The sessions row (status, observers) is written only when it
        // changed: a cursor stream's batches carry events alone.
        let observers = self.observer_count();
        let listed = format!("{} {observers}", status_name(status));
        let listed_synced = self.meta("d1_listed")?.as_deref() == Some(listed.as_str());
        let attended_synced: u64 = self.meta("d1_attendance_rowid")?.and_then(|v| v.parse().ok()).unwrap_or(0);
        let attendees = self.pending(
            "SELECT COUNT(*) AS n, MAX(rowid) AS last, json_group_array(json_array(user_id, joined_at)) AS rows \
             FROM (SELECT rowid, user_id, joined_at FROM attendance WHERE rowid > ? ORDER BY rowid LIMIT ?)",
            attended_synced,
        )?;
        if events.n == 0.0 && attendees.n == 0.0 && listed_synced {
            return Ok(true);
        }
        let db = store::db(&self.env)?;
        let last = events.last.map(|l| l as u64).unwrap_or(synced);
        let mut stmts = Vec::with_capacity(3);
        if self.env.var("ENVIRONMENT").map(|v| v.to_string()).ok().as_deref() == Some("development") {
            // The development fault switch, checked inside the batch rather than
            // by a D1 round trip of its own: while it says `fail`, this statement
            // fails (json() of a non-JSON text) and the batch, one transaction,
            // writes nothing.
            stmts.push(store::stmt(
                &db,
                "SELECT CASE WHEN EXISTS (SELECT 1 FROM dev_faults WHERE name = 'd1_writes' AND value = 'fail') THEN json('D1 writes disabled by the development fault switch') END",
                &[],
            )?);
        }
        if events.n > 0.0 {
            // Every row in one statement, the payload as the text stored here.
            stmts.push(store::stmt(
                &db,
                "INSERT OR IGNORE INTO events (run_id, seq, id, type, payload, timestamp, author_id, org, hash) \
                 SELECT ?1, value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, ?2, value ->> 6 FROM json_each(?3)",
                &[t(&run_id), t(&org), t(&events.rows)],
            )?);
        }
        if attendees.n > 0.0 {
            stmts.push(store::stmt(
                &db,
                "INSERT OR IGNORE INTO attendance (run_id, user_id, session_id, org, joined_at) \
                 SELECT ?1, value ->> 0, ?2, ?3, value ->> 1 FROM json_each(?4)",
                &[t(&run_id), t(&session_id), t(&org), t(&attendees.rows)],
            )?);
        }
        if !listed_synced {
            stmts.push(store::stmt(
                &db,
                "UPDATE sessions SET status = ?1, observers = ?2 WHERE id = ?3",
                &[t(status_name(status)), u(observers as u64), t(&session_id)],
            )?);
        }
        db.batch(stmts).await?;
        if last != synced {
            self.set_meta("d1_synced_seq", &last.to_string())?;
        }
        if !listed_synced {
            self.set_meta("d1_listed", &listed)?;
        }
        if let Some(rowid) = attendees.last {
            self.set_meta("d1_attendance_rowid", &(rowid as u64).to_string())?;
        }
        // More to forward: a full batch, or events stored while D1 answered.
        let stored = self.with_session(|s| s.seq)?.unwrap_or(last);
        Ok(attendees.n < OUTBOX_BATCH as f64 && last >= stored)
    }
}

/// A socket's [`Peer`], kept in its attachment as JSON text: one string
/// crosses per message (every teacher message reads and writes it), through
/// the runtime's own methods rather than workers-rs's, which go through
/// serde_wasm_bindgen even for a string. An attachment that is not such a
/// text (none can survive a deploy: it disconnects every socket) reads as
/// lost, and the socket is closed for the client to reconnect.
fn peer_of(ws: &WebSocket) -> Option<Peer> {
    crate::decode::from_text(&raw(ws).deserialize_attachment().ok()?.as_string()?, Peer::from_value).ok()
}

fn keep_peer(ws: &WebSocket, peer: &Peer) -> Result<()> {
    let text = serde_json::to_string(peer).map_err(|e| worker::Error::RustError(e.to_string()))?;
    raw(ws).serialize_attachment(&JsValue::from_str(&text)).map_err(worker::Error::from)
}

fn status_name(s: Status) -> &'static str {
    match s {
        Status::Waiting => "waiting",
        Status::Live => "live",
        Status::Paused => "paused",
        Status::Ended => "ended",
    }
}

fn msg_kind(msg: &ServerMsg) -> &'static str {
    match msg {
        ServerMsg::Snapshot { .. } => "snapshot",
        _ => "event",
    }
}

fn sse_frame(seq: u64, kind: &str, data: &str) -> String {
    format!("id: {seq}\nevent: {kind}\ndata: {data}\n\n")
}

#[wasm_bindgen(wasm_bindgen_futures = worker::wasm_bindgen_futures, js_sys = worker::js_sys)]
impl Classroom {
    #[wasm_bindgen(constructor)]
    pub fn new(state: worker::worker_sys::DurableObjectState, env: Env) -> Self {
        let state = State::from(state);
        Classroom {
            state,
            env,
            session: RefCell::new(None),
            sse: RefCell::new(Vec::new()),
            connected: RefCell::new(None),
            presence_sent: std::cell::Cell::new(None),
            alarm: std::cell::Cell::new(Alarm::Unknown),
            answer_key: RefCell::new(None),
            meta_kept: RefCell::new(std::collections::BTreeMap::new()),
            insert: std::cell::OnceCell::new(),
            sender: RefCell::new(None),
        }
    }

    pub async fn fetch(&self, req: web_sys::Request) -> std::result::Result<JsValue, JsValue> {
        let res = self.respond(Request::from(req)).await.map_err(JsValue::from)?;
        Ok(web_sys::Response::from(res).into())
    }

    pub async fn alarm(&self) -> std::result::Result<JsValue, JsValue> {
        self.on_alarm().await.map_err(JsValue::from)?;
        Ok(JsValue::UNDEFINED)
    }

    /// A text frame goes to the core; a binary one is refused. Returns a
    /// promise only when the message left D1 or queue work (`run_later`).
    #[wasm_bindgen(js_name = webSocketMessage)]
    pub fn websocket_message(&self, ws: web_sys::WebSocket, message: JsValue) -> std::result::Result<JsValue, JsValue> {
        let ws = WebSocket::from(ws);
        let Some(text) = message.as_string() else {
            Self::send(
                &ws,
                &ServerMsg::Error {
                    code: classroom::ErrorCode::InvalidMessage,
                    message: "binary frames are not part of the protocol; send JSON text".into(),
                },
            );
            return Ok(JsValue::UNDEFINED);
        };
        match self.on_message(ws, &text).map_err(JsValue::from)? {
            Some(later) => Ok(worker::wasm_bindgen_futures::future_to_promise(async move {
                later.await;
                Ok(JsValue::UNDEFINED)
            })
            .into()),
            None => Ok(JsValue::UNDEFINED),
        }
    }

    #[wasm_bindgen(js_name = webSocketClose)]
    pub fn websocket_close(&self, ws: web_sys::WebSocket, _code: usize, _reason: String, _was_clean: bool) {
        self.on_socket_gone(&WebSocket::from(ws));
    }

    #[wasm_bindgen(js_name = webSocketError)]
    pub fn websocket_error(&self, ws: web_sys::WebSocket, _error: JsValue) {
        self.on_socket_gone(&WebSocket::from(ws));
    }
}

impl Classroom {
    async fn respond(&self, req: Request) -> Result<Response> {
        let path = req.path();
        match path.as_str() {
            "/init" => {
                let mut req = req;
                let text = req.text().await.unwrap_or_default();
                let init = crate::decode::from_text(&text, classroom::SessionInit::from_value);
                let classroom::SessionInit { config, answer_key } = match init {
                    Ok(init) => init,
                    Err(_) => return error(400, "invalid_config", "session config is malformed"),
                };
                self.migrate()?;
                if self.meta("config")?.is_none() {
                    let text = serde_json::to_string(&config).map_err(|e| worker::Error::RustError(e.to_string()))?;
                    self.set_meta("config", &text)?;
                    let key =
                        serde_json::to_string(&answer_key).map_err(|e| worker::Error::RustError(e.to_string()))?;
                    self.set_meta("answer_key", &key)?;
                }
                json_response(200, &json!({"ok": true}))
            }
            "/explanation" => {
                let mut req = req;
                // Text, then serde_json (workers-rs's `json` decodes through serde_wasm_bindgen).
                let text = req.text().await.unwrap_or_default();
                let body: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
                let (Some(step), Some(job_id)) = (body["step"].as_u64(), body["job_id"].as_str()) else {
                    return error(400, "invalid_body", "step and job_id are required");
                };
                if self.with_session(|_| ())?.is_none() {
                    return error(404, "not_found", "session not found");
                }
                let step = step.min(u64::from(u32::MAX)) as u32;
                self.explanation_arrived(step, job_id, body["text"].as_str().unwrap_or(""))?;
                json_response(200, &json!({"ok": true}))
            }
            "/resync" => {
                // D1 lost rows the outbox had already forwarded (a restore from an
                // archive older than them): forward the whole log and the
                // attendance again. D1 keeps what it has (INSERT OR IGNORE on
                // (run_id, seq), and on (run_id, user_id)).
                if self.with_session(|_| ())?.is_none() {
                    return error(404, "not_found", "session not found");
                }
                self.set_meta("d1_synced_seq", "0")?;
                self.set_meta("d1_attendance_rowid", "0")?;
                self.set_meta("d1_listed", "")?;
                self.set_meta("outbox_retry_at", "0")?;
                self.schedule_alarm(OUTBOX_DELAY_MS);
                json_response(200, &json!({"ok": true}))
            }
            "/status" => {
                match self.with_session(|s| (status_name(s.status), s.cursor.clone(), s.seq, s.questions.len()))? {
                    Some((status, cursor, seq, questions)) => json_response(
                        200,
                        &json!({"status": status, "cursor": crate::json_value::serialized(&cursor), "seq": seq, "participants": self.presence_count(), "questions": questions}),
                    ),
                    None => error(404, "not_found", "session not found"),
                }
            }
            "/ws" => {
                if self.with_session(|_| ())?.is_none() {
                    return error(404, "not_found", "session not found");
                }
                self.accept_socket(&req).await
            }
            "/sse" => {
                if self.with_session(|_| ())?.is_none() {
                    return error(404, "not_found", "session not found");
                }
                self.open_sse(&req)
            }
            _ => error(404, "not_found", "route not found"),
        }
    }

    /// `ws`'s peer: the one kept in the slot if `ws` sent last, else its
    /// attachment (the slot's previous holder written back first).
    fn sender_peer(&self, ws: &WebSocket) -> Option<Peer> {
        let held = self.sender.borrow_mut().take();
        if let Some((held, peer, unwritten)) = held {
            if held == *ws {
                return Some(peer);
            }
            if unwritten {
                let _ = keep_peer(&held, &peer);
            }
        }
        peer_of(ws)
    }

    fn on_message(&self, ws: WebSocket, text: &str) -> Result<Option<impl Future<Output = ()>>> {
        let Some(mut peer) = self.sender_peer(&ws) else {
            let _ = ws.close(Some(1011), Some("lost attachment"));
            return Ok(None);
        };
        let conn_before = peer.conn.clone();
        let was_connected = peer.conn.is_connected();
        let now = now_ms();
        let effects = self
            .with_session(|state| classroom::receive(state, &mut peer, text, now, &mut super::runs::new_id))?
            .unwrap_or_default();
        let feedback = self.quiz_feedback(&effects, &peer);
        let later = self.execute(Some(&ws), effects);
        // Only what was stored is confirmed (a failed persist drops the cache).
        if let (Some(msg), true) = (feedback, self.session.borrow().is_some()) {
            Self::send(&ws, &msg);
        }
        let conn_changed = peer.conn != conn_before;
        if conn_changed {
            keep_peer(&ws, &peer)?;
        }
        if !was_connected && peer.conn.is_connected() {
            let who = peer.conn.who();
            let role = who.role;
            self.mark_connected(&ws, role, who.user_id);
            self.schedule_alarm(PRESENCE_DELAY_MS);
            if role == Role::Teacher {
                Self::send(&ws, &self.roster());
                if let Some(answers) = self.answer_key() {
                    Self::send(&ws, &ServerMsg::AnswerKey { answers: (*answers).clone() });
                }
            }
        }
        let actor = peer.conn.who().user_id;
        let later = self.run_later(Some(&ws), later, &actor);
        *self.sender.borrow_mut() = Some((ws, peer, !conn_changed));
        Ok(later)
    }

    async fn on_alarm(&self) -> Result<()> {
        self.alarm.set(Alarm::Unset); // it fired; anything set below records itself
        let count = self.presence_count();
        if self.presence_sent.get() != Some(count) {
            self.presence_sent.set(Some(count));
            self.broadcast(&ServerMsg::Presence { count });
            self.send_roster();
        }
        // An alarm brought forward (presence, a new event) never shortens the
        // outbox's backoff: D1 is retried only when its retry is due.
        let retry_at: i64 = self.meta("outbox_retry_at")?.and_then(|v| v.parse().ok()).unwrap_or(0);
        let now = now_ms();
        if now < retry_at {
            self.rearm((retry_at - now) as u64).await?;
            return Ok(());
        }
        match self.flush_outbox().await {
            // A failure always leaves a retry time: only then is there anything to reset.
            Ok(true) if retry_at == 0 => {}
            Ok(true) => {
                self.set_meta("outbox_failures", "0")?;
                self.set_meta("outbox_retry_at", "0")?;
            }
            Ok(false) => {
                if retry_at != 0 {
                    self.set_meta("outbox_failures", "0")?;
                    self.set_meta("outbox_retry_at", "0")?;
                }
                self.rearm(1).await?;
            }
            Err(e) => {
                let failures: u32 = self.meta("outbox_failures")?.and_then(|v| v.parse().ok()).unwrap_or(0) + 1;
                self.set_meta("outbox_failures", &failures.to_string())?;
                // 250 ms, 500 ms, 1 s … capped at 30 s: D1 coming back is noticed quickly.
                let delay = (250u64 << failures.min(7)).min(30_000);
                super::log::error(
                    &json!({"msg": "outbox flush failed", "failures": failures, "retry_ms": delay, "error": e.to_string()}),
                );
                self.set_meta("outbox_retry_at", &(now + delay as i64).to_string())?;
                self.rearm(delay).await?;
            }
        }
        Ok(())
    }
}

impl Classroom {
    fn on_socket_gone(&self, ws: &WebSocket) {
        if self.sender.borrow().as_ref().is_some_and(|(held, _, _)| held == ws) {
            *self.sender.borrow_mut() = None;
        }
        let peer = peer_of(ws);
        let _ = ws.close(Some(1000), Some("bye"));
        let Some(peer) = peer else { return };
        if peer.conn.who().role == Role::Teacher {
            let teacher_left =
                self.state.get_websockets_with_tag("teacher").iter().all(|other| other == ws || other_closing(other));
            if teacher_left {
                let now = now_ms();
                let effects = self
                    .with_session(|state| classroom::teacher_disconnected(state, now, &mut super::runs::new_id))
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                self.execute(None, effects);
            }
        }
        self.mark_gone(ws);
        if peer.conn.is_connected() {
            self.schedule_alarm(PRESENCE_DELAY_MS);
        }
    }
}

/// A socket in CLOSING/CLOSED state no longer counts as present.
fn other_closing(ws: &WebSocket) -> bool {
    raw(ws).ready_state() >= 2
}

/// The socket as the runtime's own object: its methods called directly,
/// not through workers-rs (see `peer_of` and `broadcast_text`).
fn raw(ws: &WebSocket) -> &web_sys_like::WebSocketLike {
    wasm_bindgen::JsCast::unchecked_ref(ws.as_ref())
}

mod web_sys_like {
    use wasm_bindgen::prelude::*;
    #[wasm_bindgen]
    extern "C" {
        #[wasm_bindgen(js_name = WebSocket)]
        pub type WebSocketLike;
        #[wasm_bindgen(method, getter, js_name = readyState)]
        pub fn ready_state(this: &WebSocketLike) -> u16;
        #[wasm_bindgen(method, catch)]
        pub fn send(this: &WebSocketLike, data: &JsValue) -> Result<(), JsValue>;
        #[wasm_bindgen(method, catch, js_name = deserializeAttachment)]
        pub fn deserialize_attachment(this: &WebSocketLike) -> Result<JsValue, JsValue>;
        #[wasm_bindgen(method, catch, js_name = serializeAttachment)]
        pub fn serialize_attachment(this: &WebSocketLike, value: &JsValue) -> Result<(), JsValue>;

        /// The object's `ctx.storage.sql`.
        pub type SqlLike;
        /// `exec(INSERT_EVENT_SQL, ...)` with the event's seven values.
        #[allow(clippy::too_many_arguments)]
        #[wasm_bindgen(method, catch, js_name = exec)]
        pub fn insert_event(
            this: &SqlLike,
            query: &js_sys::JsString,
            seq: f64,
            id: &str,
            kind: &str,
            payload: &str,
            timestamp: f64,
            author_id: &str,
            hash: &str,
        ) -> Result<JsValue, JsValue>;
    }
}
