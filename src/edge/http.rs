//! The HTTP side of the edge: the request context handlers receive, JSON
//! responses, and the one place an `AppError` becomes a response.

use super::store::{self, Db, Meter};
use crate::error::{AppError, AppResult};
use crate::identity::{self, Claims};
use serde_json::Value;
use std::cell::OnceCell;
use std::rc::Rc;
use worker::{Context, Env, Headers, Method, Request, Response};

pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// An outgoing request (to a Durable Object or a provider). Not through
/// `worker::RequestInit`: converting one links the serializer of every
/// Cloudflare `cf` option (image resizing and more, ~8 KB of wasm), none of
/// which is ever set here.
pub fn outgoing(url: &str, method: Method, headers: Option<&Headers>, body: Option<String>) -> worker::Result<Request> {
    let init = worker::web_sys::RequestInit::new();
    init.set_method(method.as_ref());
    if let Some(h) = headers {
        init.set_headers(h.as_ref());
    }
    if let Some(b) = body {
        init.set_body(&b.into());
    }
    worker::web_sys::Request::new_with_str_and_init(url, &init).map(Request::from).map_err(|e| {
        worker::Error::JsError(e.as_string().unwrap_or_else(|| "invalid URL or options for Request".into()))
    })
}

impl From<worker::Error> for AppError {
    fn from(e: worker::Error) -> Self {
        AppError::internal(e.to_string())
    }
}

thread_local! {
    /// Tokens this isolate verified (HMAC and claims parsed once per token,
    /// not per request: 4.5 % of the worker's CPU under the class load).
    /// Keyed by the whole token, signature included; the secret is fixed
    /// for an isolate's life.
    static VERIFIED: store::Kept<Claims> = const { store::Kept::new(4096) };
    static VARS: store::Kept<Option<String>> = const { store::Kept::new(64) };
}

/// Everything a handler needs about one request. Time is read once, here.
pub struct Ctx {
    pub req: Request,
    pub env: Env,
    /// For work that may finish after the response (cache fills, counters).
    pub wctx: Context,
    pub now_ms: i64,
    pub path: String,
    origin: String,
    query: Vec<(String, String)>,
    /// Org of the verified caller, for the request log line.
    pub log_org: Option<String>,
    /// What this request cost, for `Server-Timing`.
    pub meter: Rc<Meter>,
    db: OnceCell<Rc<Db>>,
}

impl Ctx {
    pub fn new(req: Request, env: Env, wctx: Context) -> AppResult<Ctx> {
        let (origin, path, query) = crate::urlparts::split(&req.inner().url());
        Ok(Ctx {
            path,
            origin,
            req,
            env,
            wctx,
            now_ms: super::now_ms(),
            query,
            log_org: None,
            meter: Rc::default(),
            db: OnceCell::new(),
        })
    }

    /// The client's `x-d1-bookmark`, when it is one D1 could have issued.
    pub fn bookmark(&self) -> Option<String> {
        self.header("x-d1-bookmark").filter(|b| store::valid_bookmark(b))
    }

    /// The request's one D1 session: anchored at the client's bookmark
    /// (read-your-writes), else unconstrained for reads (any replica) and
    /// primary-first for writes.
    pub fn db(&self) -> AppResult<Rc<Db>> {
        if let Some(db) = self.db.get() {
            return Ok(db.clone());
        }
        let reading = matches!(self.method(), Method::Get | Method::Head);
        let anchor =
            self.bookmark().unwrap_or_else(|| if reading { "first-unconstrained" } else { "first-primary" }.to_owned());
        let db = Rc::new(store::session_db(&self.env, &anchor, self.meter.clone())?);
        Ok(self.db.get_or_init(|| db).clone())
    }

    /// The latest bookmark of this request's session, if it used D1.
    pub fn session_bookmark(&self) -> Option<String> {
        self.db.get().and_then(|db| db.bookmark())
    }

    pub fn method(&self) -> Method {
        self.req.method()
    }

    /// A variable or secret. An isolate's env never changes (a new
    /// deployment or `.dev.vars` starts new isolates), so each is read from
    /// JS once.
    pub fn var(&self, name: &str) -> Option<String> {
        if let Some(value) = VARS.with(|v| v.get(name)) {
            return value;
        }
        let value = self
            .env
            .var(name)
            .ok()
            .map(|v| v.to_string())
            .or_else(|| self.env.secret(name).ok().map(|s| s.to_string()));
        VARS.with(|v| v.keep(name.to_owned(), value.clone()));
        value
    }

    pub fn is_development(&self) -> bool {
        self.var("ENVIRONMENT").as_deref() == Some("development")
    }

    pub fn var_u64(&self, name: &str, default: u64) -> u64 {
        self.var(name).and_then(|v| v.parse().ok()).unwrap_or(default)
    }

    pub fn query(&self, key: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// A non-negative integer query parameter; anything else is a 400 naming it.
    pub fn query_u64(&self, key: &str) -> AppResult<Option<u64>> {
        match self.query(key) {
            None | Some("") => Ok(None),
            Some(v) => v.parse::<u64>().ok().filter(|n| *n <= i64::MAX as u64).map(Some).ok_or_else(|| {
                AppError::bad_request("invalid_query", format!("{key}: must be a non-negative integer"))
            }),
        }
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.req.headers().get(name).ok().flatten()
    }

    /// The verified caller: `Authorization: Bearer` or, for WebSockets and
    /// EventSource which cannot send headers, `?token=`.
    pub fn claims(&mut self) -> AppResult<Claims> {
        let header = self.header("authorization");
        let token = identity::bearer(header.as_deref())
            .map(str::to_owned)
            .or_else(|| self.query("token").map(str::to_owned))
            .ok_or_else(|| AppError::unauthorized("missing bearer token"))?;
        let claims = match VERIFIED.with(|v| v.get(&token)) {
            // Its signature and ids were checked when it was kept; time moves on.
            Some(claims) if claims.exp <= self.now_ms / 1000 => return Err(AppError::unauthorized("token expired")),
            Some(claims) => claims,
            None => {
                let secret = self.auth_secret()?;
                let claims = identity::verify(&token, secret.as_bytes(), self.now_ms / 1000)?;
                VERIFIED.with(|v| v.keep(token, claims.clone()));
                claims
            }
        };
        self.log_org = Some(claims.org.clone());
        Ok(claims)
    }

    pub fn auth_secret(&self) -> AppResult<String> {
        self.var("AUTH_SECRET").filter(|s| s.len() >= 16).ok_or_else(|| AppError::internal("AUTH_SECRET is not set"))
    }

    /// The raw body, refused with 413 past `MAX_BODY_BYTES` (checked against
    /// the declared length first, so an oversized upload is not read at all).
    pub async fn body_bytes(&mut self, limit: usize) -> AppResult<Vec<u8>> {
        let too_large = || AppError::too_large(format!("request body is larger than {limit} bytes"));
        if let Some(len) = self.header("content-length").and_then(|l| l.parse::<usize>().ok()) {
            if len > limit {
                return Err(too_large());
            }
        }
        let bytes = self
            .req
            .bytes()
            .await
            .map_err(|_| AppError::bad_request("unreadable_body", "the request body could not be read"))?;
        if bytes.len() > limit {
            return Err(too_large());
        }
        Ok(bytes)
    }

    pub fn max_body(&self) -> usize {
        self.var_u64("MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES as u64) as usize
    }

    /// The body as a JSON object.
    pub async fn json(&mut self) -> AppResult<Value> {
        let limit = self.max_body();
        let bytes = self.body_bytes(limit).await?;
        if bytes.is_empty() {
            return Err(AppError::bad_request("malformed_json", "request body is empty; a JSON object is required"));
        }
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| AppError::bad_request("malformed_json", "request body is not valid UTF-8"))?;
        let value: Value = serde_json::from_str(text)?;
        if !value.is_object() {
            return Err(AppError::bad_request("malformed_json", "request body must be a JSON object"));
        }
        Ok(value)
    }

    pub fn base_url(&self) -> String {
        self.origin.clone()
    }
}

pub fn json(status: u16, body: &Value) -> AppResult<Response> {
    json_text(status, body.to_string())
}

/// A JSON body already written as text (a page of typed rows goes to text
/// once, without a `Value` in between); every JSON answer ends here.
pub fn json_text(status: u16, text: String) -> AppResult<Response> {
    Ok(worker::ResponseBuilder::new()
        .with_status(status)
        .with_header("content-type", "application/json")?
        .with_header("cache-control", "no-store")?
        .fixed(text.into_bytes()))
}

pub fn ok(body: Value) -> AppResult<Response> {
    json(200, &body)
}

pub fn created(body: Value) -> AppResult<Response> {
    json(201, &body)
}

pub fn error_response(e: &AppError) -> worker::Result<Response> {
    let mut r = Response::from_json(&e.body())?.with_status(e.status());
    let headers: &mut Headers = r.headers_mut();
    headers.set("cache-control", "no-store")?;
    if let Some(secs) = e.retry_after() {
        headers.set("retry-after", &secs.to_string())?;
    }
    Ok(r)
}

/// 405 unless the method is one of `allowed`.
pub fn allow(method: &Method, allowed: &[Method]) -> AppResult<()> {
    if allowed.contains(method) {
        Ok(())
    } else {
        let names: Vec<String> = allowed.iter().map(|m| m.to_string()).collect();
        Err(AppError::rule(
            405,
            "method_not_allowed",
            format!("{method} is not allowed here; allowed: {}", names.join(", ")),
        ))
    }
}

/// Ids in paths must be safe before they reach SQL, R2 keys or logs.
pub fn path_id<'a>(raw: &'a str, what: &str) -> AppResult<&'a str> {
    if identity::is_valid_id(raw) {
        Ok(raw)
    } else {
        Err(AppError::not_found(what))
    }
}

/// Add a field to a response body built as a JSON object. `IndexMut` on a
/// `Value` would panic on anything else; this never does.
pub fn set_field(body: &mut serde_json::Value, key: &str, value: serde_json::Value) {
    if let Some(object) = body.as_object_mut() {
        object.insert(key.to_owned(), value);
    }
}
