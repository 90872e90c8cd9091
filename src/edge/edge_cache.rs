//! The read side at the edge: public reads answered from the Workers Cache
//! API (per location) or KV (global) without a D1 statement.
//!
//! Immutable data (a lesson version's content, a frame) is addressed by
//! content; what may change (which versions are public, listings,
//! revocations) is served only if it was built under the current generation
//! stamp of its family, kept in KV and replaced by every write after D1
//! commits (see [`lookup`]). A writer's
//! next read sees its write at once (it reads the new stamp, and with its D1
//! bookmark it bypasses the cache altogether); every read in the same
//! location does too; other locations within KV's propagation bound (60 s).

use super::binding::{object, Binding};
use super::http::Ctx;
use super::store::MARKET_CACHE;
use super::Later;
use crate::error::{AppError, AppResult};
use wasm_bindgen::JsValue;
use worker::worker_sys::web_sys;
use worker::{Cache, Response, ResponseBody};

/// The KV namespace, called directly (see [`Binding`]): `KvStore` would
/// also put every value through `f64`'s `Display`, linking a float printer
/// for what is always text here. These are the two calls the cache makes.
struct Kv(Binding);

impl Kv {
    fn of(env: &worker::Env) -> AppResult<Kv> {
        Binding::of(env, MARKET_CACHE).map(Kv)
    }

    /// The text under `key`, `None` when there is none (or KV failed: the
    /// caller then reads D1, which is always right).
    async fn get_text(&self, key: &str) -> Option<String> {
        self.0.call("get", &[JsValue::from_str(key)]).await.ok().and_then(|v| v.as_string())
    }

    async fn put_text(&self, key: &str, text: &str, expiration_ttl_secs: Option<u32>) -> Result<(), String> {
        let mut args = vec![JsValue::from_str(key), JsValue::from_str(text)];
        if let Some(ttl) = expiration_ttl_secs {
            args.push(object(&[("expirationTtl", JsValue::from(ttl))]));
        }
        self.0.call("put", &args).await.map(|_| ())
    }
}

/// Generation families: one stamp per kind of change.
#[derive(Clone, Copy)]
pub enum Family {
    /// Listings, decisions, reviews: what is public and how it ranks.
    Market,
    /// Revocations: status lists and verification.
    Revocations,
}

impl Family {
    fn key(self) -> &'static str {
        match self {
            Family::Market => "gen:market",
            Family::Revocations => "gen:revocations",
        }
    }
}

/// How long a location keeps an entry. One built under an old stamp is never
/// served, so this
/// only bounds what is derived from unstamped data (trust signals counted
/// from attempts) and the space old stamps hold.
const CACHE_SECS: u32 = 60;
/// KV's own expiry for bodies (its minimum is 60 s).
const KV_BODY_SECS: u32 = 300;
/// Bodies up to this size are also kept in KV, for other locations.
const KV_BODY_MAX: usize = 512 * 1024;

/// A cacheable answer: what the client gets, minus per-request headers.
pub struct Entry {
    pub body: Body,
    pub content_type: String,
    pub etag: Option<String>,
    /// What the client may do with it (`no-store` for stamped pages, which
    /// only the edge may keep; `public, … immutable` for content).
    pub client_cache_control: &'static str,
}

/// An entry's body: built here, or the location's cached one, passed on as
/// the stream the Cache API gave (a hit never copies it into wasm and back).
pub enum Body {
    Bytes(Vec<u8>),
    Cached(web_sys::ReadableStream),
}

impl Entry {
    pub fn json(body: &serde_json::Value, client_cache_control: &'static str) -> Entry {
        Entry {
            body: Body::Bytes(body.to_string().into_bytes()),
            content_type: "application/json".into(),
            etag: None,
            client_cache_control,
        }
    }

    pub fn with_etag(mut self, etag: &str) -> Entry {
        self.etag = Some(etag.to_owned());
        self
    }

    /// The response a client gets (304 when its `If-None-Match` matches).
    pub fn respond(&self, ctx: &Ctx) -> AppResult<Response> {
        let not_modified = self.etag.as_deref().is_some_and(|e| etag_matches(ctx, e));
        let mut r = match &self.body {
            _ if not_modified => Response::empty()?.with_status(304),
            Body::Bytes(bytes) => Response::from_bytes(bytes.clone())?,
            Body::Cached(stream) => Response::from_body(ResponseBody::Stream(stream.clone()))?,
        };
        let h = r.headers_mut();
        h.set("content-type", &self.content_type)?;
        h.set("cache-control", self.client_cache_control)?;
        if let Some(etag) = &self.etag {
            h.set("etag", &format!("\"{etag}\""))?;
        }
        Ok(r)
    }

    /// What the Cache API stores: the entry, the stamp it was built under,
    /// and a lifetime the cache honours.
    fn stored(&self, stamp: &str) -> AppResult<Response> {
        let Body::Bytes(bytes) = &self.body else {
            return Err(AppError::internal("a cached entry is not stored again"));
        };
        let mut r = Response::from_bytes(bytes.clone())?;
        let h = r.headers_mut();
        h.set("x-entry-stamp", stamp)?;
        h.set("content-type", &self.content_type)?;
        h.set("cache-control", &format!("public, max-age={CACHE_SECS}"))?;
        h.set("x-client-cache-control", self.client_cache_control)?;
        if let Some(etag) = &self.etag {
            h.set("x-entry-etag", etag)?;
        }
        Ok(r)
    }

    /// The stored entry, if it was built under `stamp`; its body stays the
    /// cache's stream.
    fn from_stored(r: Response, stamp: &str) -> Option<Entry> {
        let header = |r: &Response, name: &str| r.headers().get(name).ok().flatten();
        if header(&r, "x-entry-stamp")? != stamp {
            return None;
        }
        let content_type = header(&r, "content-type")?;
        let client = match header(&r, "x-client-cache-control")?.as_str() {
            IMMUTABLE => IMMUTABLE,
            _ => NO_STORE,
        };
        let etag = header(&r, "x-entry-etag");
        let body = match r.body() {
            ResponseBody::Stream(stream) => Body::Cached(stream.clone()),
            ResponseBody::Body(bytes) => Body::Bytes(bytes.clone()),
            ResponseBody::Empty => Body::Bytes(Vec::new()),
        };
        Some(Entry { body, content_type, etag, client_cache_control: client })
    }

    /// The body as JSON, read from the cache's stream if it came from there
    /// (for a handler that looks inside the entry rather than passing it on).
    pub async fn value(&mut self) -> AppResult<serde_json::Value> {
        if let Body::Cached(stream) = &self.body {
            let bytes = super::binding::read_all(stream).await.map_err(AppError::internal)?;
            self.body = Body::Bytes(bytes);
        }
        let unreadable = |why: String| AppError::internal(format!("cached body: {why}"));
        let Body::Bytes(bytes) = &self.body else { return Err(unreadable("unread".into())) };
        let text = std::str::from_utf8(bytes).map_err(|e| unreadable(e.to_string()))?;
        serde_json::from_str(text).map_err(|e| unreadable(e.to_string()))
    }

    /// KV holds `{stamp}\n{content_type}\n{etag}\n{client}\n{body}` (bodies
    /// here are text).
    fn to_kv(&self, stamp: &str) -> Option<String> {
        let Body::Bytes(bytes) = &self.body else { return None };
        if bytes.len() > KV_BODY_MAX {
            return None;
        }
        let body = std::str::from_utf8(bytes).ok()?;
        Some(format!(
            "{stamp}\n{}\n{}\n{}\n{body}",
            self.content_type,
            self.etag.as_deref().unwrap_or(""),
            self.client_cache_control
        ))
    }

    /// The entry KV holds, if it was built under `stamp`.
    fn from_kv(text: String, stamp: &str) -> Option<Entry> {
        let mut parts = text.splitn(5, '\n');
        if parts.next()? != stamp {
            return None;
        }
        let content_type = parts.next()?.to_owned();
        let etag = Some(parts.next()?.to_owned()).filter(|e| !e.is_empty());
        let client = if parts.next()? == IMMUTABLE { IMMUTABLE } else { NO_STORE };
        Some(Entry {
            body: Body::Bytes(parts.next()?.as_bytes().to_vec()),
            content_type,
            etag,
            client_cache_control: client,
        })
    }
}

pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
pub const NO_STORE: &str = "no-store";

pub fn etag_matches(ctx: &Ctx, etag: &str) -> bool {
    ctx.header("if-none-match").is_some_and(|h| {
        h.split(',').any(|tag| {
            let tag = tag.trim().trim_start_matches("W/").trim_matches('"');
            tag == "*" || tag == etag.trim_matches('"')
        })
    })
}

/// The family's current stamp (one KV read; `0` before the first write).
async fn generation(ctx: &Ctx, kv: &Kv, family: Family) -> String {
    ctx.meter.kv_op();
    kv.get_text(family.key()).await.unwrap_or_else(|| "0".into())
}

/// After a write has committed in D1: a new stamp, so every key built from
/// it is one nobody has filled yet. Awaited, so the writer's next read sees it.
pub async fn bump(ctx: &Ctx, family: Family) {
    ctx.meter.kv_op();
    bump_env(&ctx.env, family).await;
}

/// [`bump`] outside a request (restore).
pub async fn bump_env(env: &worker::Env, family: Family) {
    let stamp = super::runs::new_id();
    let put = match Kv::of(env) {
        Ok(kv) => kv.put_text(family.key(), &stamp, None).await,
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = put {
        super::log::error(&crate::json!({"msg": "cache generation bump failed", "error": e}));
    }
}

/// Whether a request may be answered from the edge: a client holding a D1
/// bookmark asked to read its own writes, so it goes to D1.
pub fn usable(ctx: &Ctx) -> bool {
    ctx.header("x-d1-bookmark").is_none()
}

/// Answer from the location's cache, else from KV, else `build` it (from D1,
/// R2) and keep it in both after the response. `key` must name everything
/// the entry depends on besides the family's stamp. `build` answers `Err` for
/// what must not be cached (errors, refusals).
///
/// Only this wrapper is generic: the cache work is in [`lookup`] and
/// [`keep`], one copy each (a generic async fn is a state machine per caller).
pub async fn read_through<F>(ctx: &Ctx, family: Option<Family>, key: &str, build: F) -> AppResult<Entry>
where
    F: std::future::Future<Output = AppResult<Entry>>,
{
    match lookup(ctx, family, key).await? {
        Lookup::Hit(entry) => Ok(entry),
        Lookup::Bypass => build.await,
        Lookup::Miss(miss) => {
            let entry = build.await?;
            keep(ctx, miss, &entry);
            Ok(entry)
        }
    }
}

enum Lookup {
    Hit(Entry),
    /// Not cached: where to keep the entry once built.
    Miss(Miss),
    /// The client reads its own writes: neither read nor keep.
    Bypass,
}

struct Miss {
    url: String,
    kv: Kv,
    kv_key: String,
    stamp: String,
}

/// Entries are keyed by what they answer, not by the family's stamp: each
/// carries the stamp it was built under, and only one built under the
/// current stamp is a hit. So the stamp (KV) and the location's entry (the
/// Cache API) are read at once, a warm read waiting for one round trip
/// instead of two in a row. An entry built under an older stamp, even one
/// written late by a slow reader, is a miss, rebuilt and replaced.
async fn lookup(ctx: &Ctx, family: Option<Family>, key: &str) -> AppResult<Lookup> {
    if !usable(ctx) {
        ctx.meter.cache.set(Some("bypass"));
        return Ok(Lookup::Bypass);
    }
    let kv = Kv::of(&ctx.env)?;
    let hash = crate::canonical::sha256_hex(key.as_bytes());
    let url = format!("https://edge-cache.dropple.invalid/{hash}");
    let cached = async { Cache::default().get(url.as_str(), false).await.ok().flatten() };
    let stamp = async {
        match family {
            Some(f) => generation(ctx, &kv, f).await,
            // Immutable content: one stamp for ever.
            None => "c".into(),
        }
    };
    let (stored, stamp) = futures_util::future::join(cached, stamp).await;
    if let Some(stored) = stored {
        if let Some(entry) = Entry::from_stored(stored, &stamp) {
            ctx.meter.cache.set(Some("hit"));
            return Ok(Lookup::Hit(entry));
        }
    }
    let kv_key = format!("body:{hash}");
    ctx.meter.kv_op();
    if let Some(entry) = kv.get_text(&kv_key).await.and_then(|text| Entry::from_kv(text, &stamp)) {
        ctx.meter.cache.set(Some("hit"));
        if let Ok(stored) = entry.stored(&stamp) {
            ctx.wctx.wait_until::<Later>(Box::pin(async move {
                let _ = Cache::default().put(url.as_str(), stored).await;
            }));
        }
        return Ok(Lookup::Hit(entry));
    }
    Ok(Lookup::Miss(Miss { url, kv, kv_key, stamp }))
}

/// Keep a built entry in the location's cache and in KV, after the response.
fn keep(ctx: &Ctx, miss: Miss, entry: &Entry) {
    ctx.meter.cache.set(Some("miss"));
    let Miss { url, kv, kv_key, stamp } = miss;
    let stored = entry.stored(&stamp).ok();
    let kv_text = entry.to_kv(&stamp);
    ctx.wctx.wait_until::<Later>(Box::pin(async move {
        if let Some(stored) = stored {
            let _ = Cache::default().put(url.as_str(), stored).await;
        }
        if let Some(text) = kv_text {
            let _ = kv.put_text(&kv_key, &text, Some(KV_BODY_SECS)).await;
        }
    }));
}
