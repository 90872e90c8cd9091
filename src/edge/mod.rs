//! The edge: everything that touches `worker`. One router, handlers per
//! resource, the classroom Durable Object, stores and the queue consumer.

mod certificates;
mod classroom_do;
mod http;
mod lessons;
mod marketplace;
mod runs;
mod sessions;
mod store;
mod system;

use crate::error::{AppError, AppResult};
use http::Ctx;
use worker::{event, Context, Env, Request, Response};

#[event(fetch)]
async fn fetch(req: Request, env: Env, wctx: Context) -> worker::Result<Response> {
    let started = worker::Date::now().as_millis();
    let method = req.method().to_string();
    let mut ctx = match Ctx::new(req, env, wctx) {
        Ok(c) => c,
        Err(e) => return http::error_response(&e),
    };
    let result = route(&mut ctx).await;
    let response = match result {
        Ok(r) => r,
        Err(e) => {
            if let AppError::Internal(detail) = &e {
                worker::console_error!(
                    "{}",
                    serde_json::json!({"msg": "internal error", "path": ctx.path, "detail": detail})
                );
            }
            http::error_response(&e)?
        }
    };
    // One structured line per request: ids only, never personal data.
    worker::console_log!(
        "{}",
        serde_json::json!({
            "method": method,
            "route": route_name(&ctx.path),
            "status": response.status_code(),
            "ms": worker::Date::now().as_millis().saturating_sub(started),
            "org": ctx.log_org,
        })
    );
    Ok(response)
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
        ["v1", "attempts", rest @ ..] => certificates::attempts_route(ctx, rest).await,
        ["v1", "certificates", rest @ ..] => certificates::certificates_route(ctx, rest).await,
        ["v1", "issuer"] => certificates::issuer(ctx).await,
        ["v1", "status-lists", list] => certificates::status_list(ctx, list).await,
        ["v1", "marketplace", rest @ ..] => marketplace::route(ctx, rest).await,
        ["v1", "lessons", rest @ ..] => lessons::route(ctx, rest).await,
        ["v1", "assets", rest @ ..] => lessons::assets_route(ctx, rest).await,
        ["v1", rest @ ..] => system::route(ctx, rest).await,
        _ => Err(AppError::not_found("route")),
    }
}
