//! The classroom Durable Object (one per live session).

use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

#[durable_object]
pub struct Classroom {
    _state: State,
    _env: Env,
}

impl DurableObject for Classroom {
    fn new(state: State, env: Env) -> Self {
        Classroom { _state: state, _env: env }
    }

    async fn fetch(&self, _req: Request) -> Result<Response> {
        Response::error("not found", 404)
    }
}
