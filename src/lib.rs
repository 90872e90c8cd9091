//! Dropple Edge: a deterministic, replayable live-teaching runtime.
//!
//! # Layout
//!
//! The crate is a functional core with an imperative shell, built for three
//! targets from one source tree:
//!
//! | target | how | what it compiles |
//! |---|---|---|
//! | native | `cargo test --lib` | the pure core and its tests |
//! | the worker (wasm32) | worker-build, default feature `edge` | the pure core + `edge` (links `worker`) |
//! | the browser (wasm32) | `--no-default-features --features browser`, wasm-bindgen `--target web` (scripts/build.sh → `public/core/`) | the pure core + `browser` (no `worker`) |
//!
//! Pure core (no `worker` imports, every target; tested natively with
//! `cargo test`; time and randomness are always parameters):
//! - [`error`]: the one application error, carrying an HTTP status and a snake_case code.
//! - [`identity`]: HS256 JWT issue and verification, claims and roles.
//! - [`policy`]: the authorization matrix, plans and their hard limits, rate arithmetic.
//! - [`archive`]: the R2 archive's formats (sealed NDJSON segments, manifests, table snapshots).
//! - [`chain`]: the per-run hash chain of events (seal, verify walk), tamper evidence.
//! - [`run`]: event envelopes, validation, the canvas reducer, replay and checkpoints.
//! - [`lesson`]: lesson artifacts, canonical JSON and sha256, validation, frames.
//! - [`classroom`]: the live-session protocol and state machine (`handle` -> effects).
//! - [`certificate`]: JCS, Ed25519 Data Integrity proofs, Open Badges 3.0, status lists
//!   (the signature arithmetic is the platform's: `webcrypto` on wasm32).
//! - [`grading`]: deterministic scoring of quiz attempts.
//! - `journal` (browser build and tests only): events and timeline items in words, one sentence each.
//! - [`timefmt`]: RFC 3339 timestamps and UTC month starts, without `chrono` (size).
//! - [`urlparts`]: URL path and query splitting without the `url` crate (size).
//! - [`ai`]: AI job rules, cache keys, the builtin offline provider, OpenAI-compatible shaping.
//! - [`canonical`]: canonical JSON (RFC 8785 style) and hashing shared by lessons, state and proofs.
//! - [`decode`]: hand-written decoders from `Value` for rarely read structs (wasm size).
//! - [`json_value`]: the crate's `json!` (serde_json's syntax and values, less code per use).
//! - [`order`]: the one stable sort every caller shares (wasm size).
//! - [`streams`]: the seeded random event streams of the native / browser / edge parity tests.
//!
//! Edge (wasm32 with feature `edge`, `src/edge/`): the router and HTTP handlers
//! per resource, the classroom Durable Object, D1 / R2 / KV stores and the
//! queue consumer. They translate, authorize, persist and broadcast; they hold
//! no business rules. `worker` is an optional dependency enabled only by
//! `edge`, so the browser build cannot link it.
//!
//! Browser (wasm32 with feature `browser`, `src/browser.rs`): every
//! `#[wasm_bindgen]` entry point of the web app in one file (canvas fold and
//! frames, session fold and replay, the teacher's class summary, events in
//! words, canonical hashes, credential verification, score preview). JSON
//! text in, JSON text out; the web app's JavaScript only renders. Native code that the browser calls is the code
//! the server runs: a drift between them cannot happen, and
//! `tests/core-browser.test.mjs` proves it on 200 random streams.

// A panic in the worker resets the wasm instance and every Durable Object in
// it: outside tests, nothing may unwrap, expect or panic (`cargo clippy`, run
// by `npm test`, refuses the build otherwise). Failures are `AppError`s.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::todo,
        clippy::unimplemented,
        clippy::unreachable
    )
)]

pub mod ai;
pub mod archive;
pub mod base64url;
pub mod canonical;
pub mod certificate;
pub mod chain;
pub mod classroom;
pub mod decode;
pub mod error;
pub mod grading;
pub mod identity;
pub mod json_value;
// Only the browser reads it (and the native tests): the worker is compiled
// without it, so its wasm does not change by a byte.
#[cfg(any(test, feature = "browser"))]
pub mod journal;
pub mod lesson;
pub mod marketplace;
pub mod order;
pub mod policy;
pub mod run;
pub mod streams;
pub mod timefmt;
pub mod urlparts;

#[cfg(all(target_arch = "wasm32", feature = "browser"))]
pub mod browser;
#[cfg(all(target_arch = "wasm32", feature = "edge"))]
mod edge;
#[cfg(test)]
mod fuzz_tests;
#[cfg(target_arch = "wasm32")]
pub mod webcrypto;
