//! The edge: everything that touches `worker`. One router, handlers per
//! resource, the classroom Durable Object, stores and the queue consumer.

mod ai_jobs;
mod binding;
mod certificates;
mod classroom_do;
mod edge_cache;
mod http;
mod lessons;
mod marketplace;
mod recovery;
mod runs;
mod sessions;
mod store;
mod system;

use crate::error::{AppError, AppResult};
use http::Ctx;
use std::future::Future;
use std::pin::Pin;
use worker::{event, Context, Env, Request, Response, ScheduleContext, ScheduledEvent};

/// Work finished after the response (`wait_until`). One future type for every
/// caller: `wait_until` is generic, and each future type passed to it links
/// its own copy of the promise plumbing.
pub(crate) type Later = Pin<Box<dyn Future<Output = ()>>>;

/// The clock, in ms: `Date.now()` itself (workers-rs's `Date::now` makes a
/// `Date` object to read it, which the live path would pay per message).
pub(crate) fn now_ms() -> i64 {
    js_sys::Date::now() as i64
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, wctx: Context) -> worker::Result<Response> {
    let started = now_ms();
    let method = req.method().to_string();
    let mut ctx = match Ctx::new(req, env, wctx) {
        Ok(c) => c,
        Err(e) => return http::error_response(&e),
    };
    let result = route(&mut ctx).await;
    let mut response = match result {
        Ok(r) => r,
        Err(e) => {
            if let crate::error::Failure::Internal(detail) = e.failure() {
                log::error(&crate::json!({"msg": "internal error", "path": ctx.path, "detail": detail}));
            }
            http::error_response(&e)?
        }
    };
    let elapsed = now_ms().saturating_sub(started).max(0) as u64;
    see_cost(&ctx, &mut response, elapsed);
    // Counters are kept in memory on request paths; a request that wrote to
    // D1 anyway carries the pending ones there after its response.
    let writing = !matches!(ctx.method(), worker::Method::Get | worker::Method::Head);
    if writing && store::has_pending_counters() {
        if let Ok(db) = store::db(&ctx.env) {
            ctx.wctx.wait_until::<Later>(Box::pin(async move { store::flush_counters(&db).await }));
        }
    }
    // One structured line per request: ids only, never personal data.
    request_log::line(
        &ctx.wctx,
        &log::text(&crate::json!({
            "method": method,
            "route": route_name(&ctx.path),
            "status": response.status_code(),
            "ms": elapsed,
            "org": ctx.log_org,
        })),
    );
    Ok(response)
}

/// Structured logs: one JSON object per line. One function per level
/// instead of `console_error!("{}", json!(..))` at each call site, where
/// every site built its own `format!` (-0.8 KB gzipped for 17 sites).
pub(crate) mod log {
    use serde_json::Value;

    pub fn error(line: &Value) {
        worker::web_sys::console::error_1(&text(line).into());
    }

    pub fn info(line: &Value) {
        worker::web_sys::console::log_1(&text(line).into());
    }

    pub fn text(line: &Value) -> String {
        serde_json::to_string(line).unwrap_or_default()
    }
}

/// The request log: one structured line per request, written in batches.
/// A line waits up to `WINDOW` and goes out with every other line of that
/// window in one console call (at once when 16 KB are waiting). Under
/// `wrangler dev` one console call cost a lone request ~2.3 ms of its
/// latency (a plain JavaScript worker measured the same), more than the rest
/// of a cached read; batching writes the same lines with fewer calls. The
/// flush rides on the request that opened the window (`wait_until`), so the
/// runtime keeps the isolate until its lines are out.
mod request_log {
    use super::Later;
    use std::cell::{Cell, RefCell};
    use std::time::Duration;

    thread_local! {
        static WAITING: RefCell<String> = const { RefCell::new(String::new()) };
        static FLUSH_SCHEDULED: Cell<bool> = const { Cell::new(false) };
    }

    const WINDOW: Duration = Duration::from_millis(100);
    const MAX_WAITING_BYTES: usize = 16 * 1024;

    pub fn line(wctx: &worker::Context, line: &str) {
        let waiting = WAITING.with(|w| {
            let mut w = w.borrow_mut();
            if !w.is_empty() {
                w.push('\n');
            }
            w.push_str(line);
            w.len()
        });
        if waiting >= MAX_WAITING_BYTES {
            flush();
        } else if !FLUSH_SCHEDULED.with(|f| f.replace(true)) {
            wctx.wait_until::<Later>(Box::pin(async {
                worker::Delay::from(WINDOW).await;
                FLUSH_SCHEDULED.with(|f| f.set(false));
                flush();
            }));
        }
    }

    fn flush() {
        WAITING.with(|w| {
            let mut w = w.borrow_mut();
            if !w.is_empty() {
                worker::web_sys::console::log_1(&w.as_str().into());
                w.clear();
            }
        });
    }
}

/// `Server-Timing` (what the request cost: D1 statements and rows read, KV and
/// R2 operations, how the edge cache answered, total time) and, after a
/// write, the D1 bookmark for the client's read-your-writes. Counts only,
/// never personal data. A response whose headers cannot change (a socket
/// upgrade) goes out as it is.
fn see_cost(ctx: &Ctx, response: &mut Response, elapsed_ms: u64) {
    // A socket upgrade's headers are immutable: setting one throws, and a
    // thrown error (its stack captured) cost a join more than the rest of it.
    if response.status_code() == 101 {
        return;
    }
    let m = &ctx.meter;
    let timing = format!(
        "d1;desc=\"{}\", d1_rows;desc=\"{}\", kv;desc=\"{}\", r2;desc=\"{}\", cache;desc=\"{}\", total;dur={}",
        m.d1.get(),
        m.d1_rows_read.get(),
        m.kv.get(),
        m.r2.get(),
        m.cache.get().unwrap_or("bypass"),
        elapsed_ms
    );
    let headers = response.headers_mut();
    let _ = headers.set("server-timing", &timing);
    let writing = !matches!(ctx.method(), worker::Method::Get | worker::Method::Head);
    if writing || m.wrote.get() {
        if let Some(bookmark) = ctx.session_bookmark() {
            let _ = headers.set("x-d1-bookmark", &bookmark);
        }
    }
}

/// The path with ids replaced, so log lines group by route.
fn route_name(path: &str) -> String {
    let segs: Vec<&str> = path.split('/').collect();
    segs.iter().enumerate().map(|(n, s)| if n >= 3 && n % 2 == 1 { ":id" } else { s }).collect::<Vec<_>>().join("/")
}

async fn route(ctx: &mut Ctx) -> AppResult<Response> {
    let path = ctx.path.clone();
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    match segs.as_slice() {
        ["v1", "runs", id, "export"] => {
            http::allow(&ctx.method(), &[worker::Method::Post])?;
            let id = http::path_id(id, "run")?.to_owned();
            lessons::export(ctx, &id).await
        }
        ["v1", "runs", rest @ ..] => runs::route(ctx, rest).await,
        ["v1", "sessions", rest @ ..] => sessions::route(ctx, rest).await,
        ["v1", "join", code] => sessions::join(ctx, code).await,
        ["v1", "me", "sessions"] => sessions::mine(ctx).await,
        ["v1", "attempts", rest @ ..] => certificates::attempts_route(ctx, rest).await,
        ["v1", "certificates", rest @ ..] => certificates::certificates_route(ctx, rest).await,
        ["v1", "issuer"] => certificates::issuer(ctx).await,
        ["v1", "status-lists", list] => certificates::status_list(ctx, list).await,
        ["v1", "marketplace", rest @ ..] => marketplace::route(ctx, rest).await,
        ["v1", "ai", rest @ ..] => ai_jobs::route(ctx, rest).await,
        ["v1", "ops", rest @ ..] => recovery::route(ctx, rest).await,
        ["v1", "lessons", rest @ ..] => lessons::route(ctx, rest).await,
        ["v1", "assets", rest @ ..] => lessons::assets_route(ctx, rest).await,
        ["v1", rest @ ..] => system::route(ctx, rest).await,
        _ => Err(AppError::not_found("route")),
    }
}

/// The AI jobs consumer (and its dead-letter queue). Every message is acked
/// or retried here; the handler never returns an error (that would panic).
///
/// Exported by hand rather than with `#[event(queue)]`: workers-rs's
/// `retry_with_options` turns its options into a JS object through
/// serde_wasm_bindgen, ~1.6 KB gzipped of the worker for `{delaySeconds}`.
/// The batch and its messages are the runtime's objects, called by name.
mod queue_export {
    use super::{ai_jobs, binding::Binding, now_ms};
    use worker::wasm_bindgen::{prelude::wasm_bindgen, JsValue};

    #[wasm_bindgen(wasm_bindgen = ::worker::wasm_bindgen, wasm_bindgen_futures = ::worker::wasm_bindgen_futures, js_sys = ::worker::js_sys)]
    pub async fn queue(batch: JsValue, env: worker::Env, _ctx: JsValue) -> Result<JsValue, JsValue> {
        let batch = Binding::wrap("batch", batch);
        let dead_letters = batch.field("queue").as_string().as_deref() == Some(ai_jobs::DLQ);
        let messages = worker::js_sys::Array::from(&batch.field("messages"));
        for message in messages.iter() {
            let message = Binding::wrap("message", message);
            // The body is read where it is (its `job_id`), not turned into a Rust value first.
            let body = message.field("body");
            let job_id = ai_jobs::job_id(&body);
            let now = now_ms();
            let settled = if dead_letters {
                let text = worker::js_sys::JSON::stringify(&body).map(String::from).unwrap_or_default();
                ai_jobs::dead_letter(&env, &job_id, &text, now).await;
                message.call("ack", &[]).await
            } else {
                match ai_jobs::process(&env, &job_id, now).await {
                    ai_jobs::Outcome::Done => message.call("ack", &[]).await,
                    ai_jobs::Outcome::RetryAfter(secs) => {
                        let options = super::binding::object(&[("delaySeconds", JsValue::from(secs))]);
                        message.call("retry", &[options]).await
                    }
                }
            };
            if let Err(e) = settled {
                super::log::error(&crate::json!({"msg": "queue message not settled", "job_id": job_id, "error": e}));
            }
        }
        Ok(JsValue::UNDEFINED)
    }
}

/// Every minute: re-send AI jobs whose queue message was lost, then the
/// archive pass (seal new events into R2; tables when due).
#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    let now = now_ms();
    if let Ok(db) = store::db(&env) {
        store::flush_counters(&db).await;
        if let Err(e) = ai_jobs::requeue_stale(&env, &db, None, now).await {
            log::error(&crate::json!({"msg": "stale AI job sweep failed", "error": e.to_string()}));
        }
    }
    recovery::scheduled(&env, now).await;
}
