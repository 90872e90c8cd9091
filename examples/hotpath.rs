//! Hot-path micro-benchmark for `npm run bench`: the CPU one live cursor event
//! costs in the classroom core, excluding the sends themselves.
//!
//! `ours`: exactly what the Durable Object does per teacher `cursor` message —
//! `classroom::receive` (rate limit, decode, authority, decide, apply, the
//! chained hash and the broadcast text, written once by the core) and the
//! storage row (its texts, the payload's written once by the core too).
//! `core`: `classroom::receive` alone (everything but the storage row's text).
//! `baseline`: the least any server that looks at a message does — parse it as
//! JSON and write it back out (a relay that validates).
//! `floor`: the baseline plus the one SHA-256 of the hash chain each event
//! must carry: the least this design's live path can cost.
//!
//! `hash`: the chained SHA-256 alone (see `run_hash`).
//!
//! Usage: `hotpath ours|core|baseline|floor|hash <iterations>`; prints one JSON line with the
//! wall-clock nanoseconds per event. Under `valgrind --tool=callgrind` the
//! instruction count of a run with N iterations minus a run with 0 gives the
//! instructions per event, which are stable from run to run.

use std::hint::black_box;
use std::time::Instant;

use dropple_edge::classroom::{self, Effect, Peer, Role, SessionConfig, SessionState};

const STEPS: u32 = 1000;
/// Shaped as the edge makes run ids (a UUID): the envelope every event hashes
/// holds it, so its length sets how many SHA-256 blocks an event costs.
const RUN_ID: &str = "00000000-0000-4000-8000-0000000000ab";

fn session() -> (SessionState, Peer) {
    let config = SessionConfig {
        session_id: "s-bench".into(),
        run_id: RUN_ID.into(),
        lesson_id: "l-bench".into(),
        version: 1,
        sha256: "0".repeat(64),
        teacher_id: "teacher-1".into(),
        org: "bench".into(),
        step_count: STEPS,
        quiz: Vec::new(),
    };
    let mut state = SessionState::new(config);
    let mut peer = Peer::new("teacher-1", Role::Teacher, 0);
    let mut ids = id_source();
    classroom::receive(&mut state, &mut peer, r#"{"type":"hello","version":1}"#, 0, &mut ids);
    (state, peer)
}

/// Event ids as the edge makes them (`runs::new_id`: a UUID encoded into a
/// buffer), from a counter instead of the platform's random bytes.
fn id_source() -> impl FnMut() -> String {
    let mut n: u128 = 0;
    move || {
        n += 1;
        let uuid = uuid::Builder::from_random_bytes(n.to_be_bytes()).into_uuid();
        String::from(&*uuid.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()))
    }
}

fn run_ours(messages: &[String]) -> usize {
    run_session(messages, true)
}

fn run_core(messages: &[String]) -> usize {
    run_session(messages, false)
}

fn run_session(messages: &[String], serialize: bool) -> usize {
    let (mut state, mut peer) = session();
    let mut ids = id_source();
    let mut bytes = 0;
    for (i, text) in messages.iter().enumerate() {
        // 100 ms apart: well inside the per-connection rate.
        let now = 1_000 + i as i64 * 100;
        let effects = classroom::receive(&mut state, &mut peer, text, now, &mut ids);
        if !serialize {
            bytes += effects.len();
            continue;
        }
        for effect in effects {
            match effect {
                // The storage row: the payload's canonical text, written by
                // the core for the hash, goes to storage as it is.
                Effect::Persist(events) => {
                    for e in events {
                        let row = [e.id, e.kind, e.payload, e.author_id, e.hash];
                        bytes += row.iter().map(String::len).sum::<usize>();
                    }
                }
                // Written once by the core, inside `receive`.
                Effect::Broadcast { text, .. } => bytes += text.len(),
                _ => {}
            }
        }
    }
    assert_eq!(state.seq as usize, messages.len() + 1, "every cursor message became one event");
    bytes
}

fn run_baseline(messages: &[String]) -> usize {
    let mut bytes = 0;
    for text in messages {
        let value: serde_json::Value = serde_json::from_str(text).expect("valid JSON");
        bytes += serde_json::to_string(&value).map(|s| s.len()).unwrap_or(0);
    }
    bytes
}

/// The floor of a server that keeps this design's promise: the baseline
/// plus the chained SHA-256 of each event over the envelope's canonical text
/// (64 hex characters of the previous hash, then the envelope), which every
/// live event must carry (API.md, the hash chain).
fn run_floor(messages: &[String]) -> usize {
    let mut bytes = 0;
    let mut prev = dropple_edge::chain::GENESIS.to_owned();
    for (i, text) in messages.iter().enumerate() {
        let value: serde_json::Value = serde_json::from_str(text).expect("valid JSON");
        let payload = serde_json::to_string(&value).unwrap_or_default();
        let mut envelope = String::with_capacity(payload.len() + 160);
        envelope.push_str(r#"{"author_id":"teacher-1","id":"00000000-0000-4000-8000-000000000001","payload":"#);
        envelope.push_str(&payload);
        envelope.push_str(r#","run_id":""#);
        envelope.push_str(RUN_ID);
        envelope.push_str(r#"","seq":"#);
        envelope.push_str(&(i + 2).to_string());
        envelope.push_str(r#","timestamp":1000,"type":"cursor.moved"}"#);
        prev = dropple_edge::chain::envelope_hash(&prev, &envelope);
        bytes += envelope.len() + prev.len();
    }
    bytes
}

/// The chained SHA-256 alone, over an envelope of the size a cursor event's
/// is (the same number of SHA-256 blocks): what the hash chain costs before
/// anything else is done. Under callgrind the software SHA-256 runs (valgrind
/// hides the CPU's SHA extensions), as it does on wasm, where there are none.
fn run_hash(messages: &[String]) -> usize {
    let envelope = format!(
        r#"{{"author_id":"teacher-1","id":"00000000-0000-4000-8000-000000000001","payload":{{"step":1,"x":0.5,"y":0.5}},"run_id":"{RUN_ID}","seq":2,"timestamp":1000,"type":"cursor.moved"}}"#
    );
    let mut prev = dropple_edge::chain::GENESIS.to_owned();
    for _ in messages {
        prev = dropple_edge::chain::envelope_hash(&prev, &envelope);
    }
    prev.len() * messages.len()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map(String::as_str).unwrap_or("ours");
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    // Prepared outside the timed part: the client's text, as it arrives.
    let messages: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"type":"cursor","step":{},"x":0.{},"y":0.5}}"#, 1 + i as u32 % STEPS, i % 10))
        .collect();
    let run = match which {
        "ours" => run_ours,
        "core" => run_core,
        "baseline" => run_baseline,
        "floor" => run_floor,
        "hash" => run_hash,
        other => {
            eprintln!("unknown mode {other}: use ours, core, baseline, floor or hash");
            std::process::exit(2);
        }
    };
    // Warm caches and the allocator on a short run first.
    black_box(run(&messages[..n.min(1000)]));
    let start = Instant::now();
    let bytes = black_box(run(&messages));
    let elapsed = start.elapsed();
    let ns_per_event = if n == 0 { 0.0 } else { elapsed.as_nanos() as f64 / n as f64 };
    println!(r#"{{"mode":"{which}","iterations":{n},"ns_per_event":{ns_per_event:.1},"bytes":{bytes}}}"#);
}
