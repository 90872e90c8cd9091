//! Dropple Edge: a deterministic, replayable live-teaching runtime.
//!
//! # Layout
//!
//! The crate is a functional core with an imperative shell.
//!
//! Pure core (no `worker` imports, tested natively with `cargo test`; time and
//! randomness are always parameters):
//! - [`error`]: the one application error, carrying an HTTP status and a snake_case code.
//! - [`identity`]: HS256 JWT issue and verification, claims and roles.
//! - [`policy`]: the authorization matrix, plans and their hard limits, rate arithmetic.
//! - [`archive`]: the R2 archive's formats (sealed NDJSON segments, manifests, table snapshots).
//! - [`chain`]: the per-run hash chain of events (seal, verify walk), tamper evidence.
//! - [`run`]: event envelopes, validation, the canvas reducer, replay and checkpoints.
//! - [`lesson`]: lesson artifacts, canonical JSON and sha256, validation, frames.
//! - [`classroom`]: the live-session protocol and state machine (`handle` -> effects).
//! - [`certificate`]: JCS, Ed25519 Data Integrity proofs, Open Badges 3.0, status lists.
//! - [`grading`]: deterministic scoring of quiz attempts.
//! - [`urlparts`]: URL path and query splitting without the `url` crate (size).
//! - [`ai`]: AI job rules, cache keys, the builtin offline provider, OpenAI-compatible shaping.
//! - [`canonical`]: canonical JSON (RFC 8785 style) and hashing shared by lessons, state and proofs.
//!
//! Edge (wasm32 only, `src/edge/`): the router and HTTP handlers per resource,
//! the classroom Durable Object, D1 / R2 / KV stores and the queue consumer. They
//! translate, authorize, persist and broadcast; they hold no business rules.

pub mod ai;
pub mod archive;
pub mod canonical;
pub mod certificate;
pub mod chain;
pub mod classroom;
pub mod error;
pub mod grading;
pub mod identity;
pub mod lesson;
pub mod marketplace;
pub mod policy;
pub mod run;
pub mod urlparts;

#[cfg(target_arch = "wasm32")]
mod edge;
#[cfg(test)]
mod fuzz_tests;
