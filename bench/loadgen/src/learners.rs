//! `loadgen learners --config <file>`: a mixed load of virtual learners with
//! think time, the scale the design plans for (a class of 1,000).
//!
//! Each virtual learner is one of two kinds:
//! - **live**: opens a WebSocket into a classroom session (`hello` → `snapshot`),
//!   follows the teacher (every `cursor.moved` broadcast), answers the lesson's
//!   quiz (`respond`, one per question, acknowledged by its own
//!   `quiz.responded` event) and then keeps the connection alive with `ping`
//!   (→ `pong`), thinking between actions;
//! - **self-paced**: over HTTP/1.1 (one keep-alive connection of its own),
//!   starts an attempt, answers each question, submits, and fetches the
//!   certificate, thinking between requests; then starts over.
//!
//! One teacher driver per classroom moves the cursor every `teacher_interval_ms`
//! (steps cycle 1..=`max_step`); a delivery sample is that send → each synced
//! learner's receipt, on this process's one monotonic clock.
//!
//! The `reference` protocol runs the same schedule against the baseline worker:
//! every HTTP request is `GET <ping_path>` and live learners join its room
//! (connect only; the teacher's message is relayed unchanged; learners send
//! nothing), so the rows show the floor of the same concurrency.
//!
//! Config (JSON): `{"protocol": "dropple"|"reference", "http": "127.0.0.1:port",
//! "ping_path"?, "lesson_id", "version", "answers": [[question_id, answer], ..],
//! "choices": [[question_id, choice], ..], "classes": [{"teacher": ws-url}],
//! "learners": [{"kind": "live", "class": k, "url": ws-url, "sub": id} |
//! {"kind": "self", "token": jwt}], "ramp_ms", "duration_ms", "think_ms",
//! "teacher_interval_ms", "max_step"}`.
//!
//! Prints one JSON line: per kind of request `count`, `errors`, p50/p95/p99/max
//! in ms; `overall` (every request, deliveries excluded); `deliveries`
//! (`expected`, `missing`, percentiles); `requests_per_s` over the run;
//! this process's CPU (`getrusage`) over the run. An error is any non-2xx
//! answer, a protocol `error` message, a timeout (10 s) or a lost connection.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout};
use tokio_tungstenite::tungstenite::Message;

use crate::{close_cleanly, cpu_time, handshake, ms, percentile, round_step, Protocol};

/// A request (or a WebSocket action) that got no answer by then is an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Closing every socket at the end: bounded, not measured.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------- stats

#[derive(Default)]
struct Kind {
    samples: Vec<Duration>,
    errors: u64,
}

#[derive(Default)]
struct Stats {
    kinds: BTreeMap<&'static str, Kind>,
    error_samples: Vec<String>,
}

type Shared = Arc<Mutex<Stats>>;

fn record(stats: &Shared, kind: &'static str, took: Duration) {
    if let Ok(mut s) = stats.lock() {
        s.kinds.entry(kind).or_default().samples.push(took);
    }
}

fn fail(stats: &Shared, kind: &'static str, why: String) {
    if let Ok(mut s) = stats.lock() {
        let k = s.kinds.entry(kind).or_default();
        k.errors += 1;
        // The first few of each kind: enough to tell what went wrong.
        if k.errors <= 3 {
            s.error_samples.push(format!("{kind}: {why}"));
        }
    }
}

fn summary(samples: &mut [Duration], errors: u64) -> Value {
    samples.sort_unstable();
    let p = |q| percentile(samples, q).map(ms);
    json!({"count": samples.len(), "errors": errors, "p50_ms": p(50.0), "p95_ms": p(95.0),
           "p99_ms": p(99.0), "max_ms": samples.last().copied().map(ms)})
}

// ---------------------------------------------------------------- HTTP/1.1

/// A minimal HTTP/1.1 client on one keep-alive connection, as a browser tab
/// holds one: just enough for JSON requests (Content-Length or chunked answers).
struct Http {
    addr: String,
    conn: Option<BufReader<TcpStream>>,
}

impl Http {
    fn new(addr: &str) -> Self {
        Http { addr: addr.to_owned(), conn: None }
    }

    async fn request(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Result<(u16, Vec<u8>), String> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\n", self.addr);
        if let Some(t) = token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        let body = body.unwrap_or("");
        if method != "GET" {
            head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        head.push_str(body);
        // A kept-alive connection the server closed while we were thinking
        // fails before any answer byte: then once more on a fresh connection.
        let reused = self.conn.is_some();
        match self.exchange(head.as_bytes()).await {
            Err(Stale) if reused => self.exchange(head.as_bytes()).await.map_err(Failure::text),
            r => r.map_err(Failure::text),
        }
    }

    async fn exchange(&mut self, request: &[u8]) -> Result<(u16, Vec<u8>), Failure> {
        if self.conn.is_none() {
            let s = TcpStream::connect(&self.addr).await.map_err(|e| Failure::Other(format!("connect: {e}")))?;
            let _ = s.set_nodelay(true);
            self.conn = Some(BufReader::new(s));
        }
        let Some(conn) = self.conn.as_mut() else { return Err(Failure::Other("no connection".into())) };
        let result = read_response(conn, request).await;
        match &result {
            Ok((_, _, keep)) if *keep => {}
            _ => self.conn = None,
        }
        result.map(|(status, body, _)| (status, body))
    }
}

enum Failure {
    /// Nothing came back on a reused connection: the server had closed it.
    Stale,
    Other(String),
}
use Failure::Stale;

impl Failure {
    fn text(self) -> String {
        match self {
            Stale => "the connection closed before an answer".into(),
            Failure::Other(s) => s,
        }
    }
}

/// Writes the request and reads one answer: (status, body, keep-alive).
async fn read_response(conn: &mut BufReader<TcpStream>, request: &[u8]) -> Result<(u16, Vec<u8>, bool), Failure> {
    if conn.get_mut().write_all(request).await.is_err() {
        return Err(Stale);
    }
    let mut line = String::new();
    match conn.read_line(&mut line).await {
        Ok(0) | Err(_) => return Err(Stale),
        Ok(_) => {}
    }
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Failure::Other(format!("bad status line {line:?}")))?;
    let (mut length, mut chunked, mut keep) = (None, false, true);
    loop {
        line.clear();
        conn.read_line(&mut line).await.map_err(|e| Failure::Other(format!("headers: {e}")))?;
        let h = line.trim_end();
        if h.is_empty() {
            break;
        }
        let Some((name, value)) = h.split_once(':') else { continue };
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse::<usize>().ok(),
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "connection" => keep = !value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let io = |e: std::io::Error| Failure::Other(format!("body: {e}"));
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            conn.read_line(&mut line).await.map_err(io)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| Failure::Other(format!("bad chunk size {line:?}")))?;
            let start = body.len();
            body.resize(start + size, 0);
            conn.read_exact(&mut body[start..]).await.map_err(io)?;
            line.clear();
            conn.read_line(&mut line).await.map_err(io)?; // the chunk's CRLF
            if size == 0 {
                break;
            }
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        conn.read_exact(&mut body).await.map_err(io)?;
    } else {
        conn.read_to_end(&mut body).await.map_err(io)?;
        keep = false;
    }
    Ok((status, body, keep))
}

// ---------------------------------------------------------------- learners

struct Plan {
    protocol: Protocol,
    reference: bool,
    http: String,
    ping_path: String,
    lesson_id: String,
    version: u64,
    answers: Vec<(String, Value)>,
    choices: Vec<(String, u64)>,
    think: Duration,
    deadline: Instant,
}

/// What the teacher driver of one class last sent, and the delivery counts.
#[derive(Default)]
struct Class {
    last: Mutex<Option<(u64, Instant)>>,
    joined: AtomicU64,
    expected: AtomicU64,
    received: AtomicU64,
}

/// Slightly different think times (±10 %, deterministic): learners started
/// together do not stay in lockstep.
fn think(plan: &Plan, seed: &mut u64) -> Duration {
    *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let jitter = ((*seed >> 33) % 201) as f64 / 1000.0 - 0.1;
    plan.think.mul_f64(1.0 + jitter)
}

/// Thinks, then says whether there is time left for another request.
async fn pause(plan: &Plan, seed: &mut u64) -> bool {
    tokio::time::sleep_until((Instant::now() + think(plan, seed)).into()).await;
    Instant::now() < plan.deadline
}

async fn self_paced(plan: Arc<Plan>, token: String, start: Instant, mut seed: u64, stats: Shared) {
    tokio::time::sleep_until(start.into()).await;
    let mut http = Http::new(&plan.http);
    let auth = Some(token.as_str());
    // One request: its latency or its error, recorded under `kind`.
    async fn call(
        http: &mut Http,
        plan: &Plan,
        stats: &Shared,
        kind: &'static str,
        method: &str,
        path: &str,
        auth: Option<&str>,
        body: Option<&str>,
    ) -> Option<Value> {
        let (method, path, body) =
            if plan.reference { ("GET", plan.ping_path.as_str(), None) } else { (method, path, body) };
        let t0 = Instant::now();
        match timeout(REQUEST_TIMEOUT, http.request(method, path, auth, body)).await {
            Err(_) => {
                http.conn = None;
                fail(stats, kind, "timed out".into());
                None
            }
            Ok(Err(e)) => {
                fail(stats, kind, e);
                None
            }
            Ok(Ok((status, bytes))) if (200..300).contains(&status) => {
                record(stats, kind, t0.elapsed());
                Some(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
            }
            Ok(Ok((status, bytes))) => {
                fail(stats, kind, format!("{status} {}", String::from_utf8_lossy(&bytes[..bytes.len().min(200)])));
                None
            }
        }
    }
    'cycles: while Instant::now() < plan.deadline {
        let body = json!({"lesson_id": plan.lesson_id, "version": plan.version}).to_string();
        let Some(a) =
            call(&mut http, &plan, &stats, "self-paced: start attempt", "POST", "/v1/attempts", auth, Some(&body))
                .await
        else {
            if !pause(&plan, &mut seed).await {
                break;
            }
            continue;
        };
        let attempt = a["attempt_id"].as_str().unwrap_or("ref").to_owned();
        for (question_id, answer) in &plan.answers {
            if !pause(&plan, &mut seed).await {
                break 'cycles;
            }
            let body = json!({"question_id": question_id, "answer": answer}).to_string();
            let path = format!("/v1/attempts/{attempt}/answers");
            call(&mut http, &plan, &stats, "self-paced: answer", "POST", &path, auth, Some(&body)).await;
        }
        if !pause(&plan, &mut seed).await {
            break;
        }
        let path = format!("/v1/attempts/{attempt}/submit");
        let submitted = call(&mut http, &plan, &stats, "self-paced: submit", "POST", &path, auth, None).await;
        let certificate = submitted.as_ref().and_then(|s| s["certificate_id"].as_str()).map(str::to_owned);
        if !pause(&plan, &mut seed).await {
            break;
        }
        match (certificate, plan.reference) {
            (Some(id), _) => {
                let path = format!("/v1/certificates/{id}");
                call(&mut http, &plan, &stats, "self-paced: fetch certificate", "GET", &path, auth, None).await;
            }
            (None, true) => {
                call(&mut http, &plan, &stats, "self-paced: fetch certificate", "GET", "", auth, None).await;
            }
            (None, false) if submitted.is_some() => {
                fail(&stats, "self-paced: submit", "passed without a certificate_id".into());
            }
            (None, false) => {}
        }
        if !pause(&plan, &mut seed).await {
            break;
        }
    }
}

/// What a live learner waits for after an action.
enum Pending {
    Respond { question: String, sent: Instant },
    Ping { sent: Instant },
}

async fn live(
    plan: Arc<Plan>,
    class: Arc<Class>,
    url: String,
    sub: String,
    start: Instant,
    mut seed: u64,
    stats: Shared,
) {
    tokio::time::sleep_until(start.into()).await;
    let t0 = Instant::now();
    let mut ws = match timeout(REQUEST_TIMEOUT, handshake(&url, plan.protocol)).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => return fail(&stats, "live: join (connect, hello → snapshot)", e),
        Err(_) => return fail(&stats, "live: join (connect, hello → snapshot)", "timed out".into()),
    };
    record(&stats, "live: join (connect, hello → snapshot)", t0.elapsed());
    class.joined.fetch_add(1, Ordering::Relaxed);
    let mine = format!("\"learner_id\":\"{sub}\"");
    let mut quiz = plan.choices.iter();
    let mut pending: Option<Pending> = None;
    let mut next_action = Instant::now() + think(&plan, &mut seed);
    loop {
        let wake = match &pending {
            Some(Pending::Respond { sent, .. } | Pending::Ping { sent }) => *sent + REQUEST_TIMEOUT,
            None => next_action,
        }
        .min(plan.deadline);
        tokio::select! {
            msg = ws.next() => {
                let at = Instant::now();
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None => { fail(&stats, "live: connection", "closed by the server".into()); break; }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => { fail(&stats, "live: connection", e.to_string()); break; }
                };
                let text = text.as_str();
                if let Some(step) = round_step(plan.protocol, text) {
                    let last = class.last.lock().ok().and_then(|l| *l);
                    if let Some((sent_step, sent)) = last {
                        if sent_step == step {
                            class.received.fetch_add(1, Ordering::Relaxed);
                            record(&stats, "live: teacher step → learner (delivery)", at.duration_since(sent));
                        }
                    }
                    continue;
                }
                let done = match &pending {
                    Some(Pending::Respond { question, sent })
                        if text.contains("quiz.responded") && text.contains(&mine) && text.contains(question.as_str()) =>
                        Some(("live: respond to the quiz (→ its event)", *sent)),
                    Some(Pending::Ping { sent }) if text.contains("\"pong\"") => Some(("live: ping (→ pong)", *sent)),
                    _ => None,
                };
                if let Some((kind, sent)) = done {
                    record(&stats, kind, at.duration_since(sent));
                    pending = None;
                    next_action = at + think(&plan, &mut seed);
                } else if text.starts_with("{\"type\":\"error\"") || text.contains("\"type\":\"error\"") && !text.contains("\"event\"") {
                    let kind = match pending { Some(Pending::Respond { .. }) => "live: respond to the quiz (→ its event)", Some(Pending::Ping { .. }) => "live: ping (→ pong)", None => "live: connection" };
                    fail(&stats, kind, text.chars().take(200).collect());
                    pending = None;
                    next_action = at + think(&plan, &mut seed);
                }
            }
            _ = sleep_until(wake.into()) => {
                let now = Instant::now();
                if now >= plan.deadline {
                    break;
                }
                match pending.take() {
                    Some(Pending::Respond { .. }) => { fail(&stats, "live: respond to the quiz (→ its event)", "timed out".into()); next_action = now; }
                    Some(Pending::Ping { .. }) => { fail(&stats, "live: ping (→ pong)", "timed out".into()); next_action = now; }
                    None if plan.reference => next_action = now + think(&plan, &mut seed),
                    None => {
                        let (text, p) = match quiz.next() {
                            Some((question, choice)) => (
                                json!({"type": "respond", "question_id": question, "choice": choice}).to_string(),
                                Pending::Respond { question: format!("\"{question}\""), sent: now },
                            ),
                            None => (r#"{"type":"ping"}"#.to_owned(), Pending::Ping { sent: now }),
                        };
                        if let Err(e) = ws.send(Message::text(text)).await {
                            fail(&stats, "live: connection", format!("send: {e}"));
                            break;
                        }
                        pending = Some(p);
                    }
                }
            }
        }
    }
    class.joined.fetch_sub(1, Ordering::Relaxed);
    let _ = timeout(CLOSE_TIMEOUT, close_cleanly(&mut ws)).await;
}

async fn teacher(
    plan: Arc<Plan>,
    class: Arc<Class>,
    url: String,
    interval: Duration,
    max_step: u64,
    stats: Shared,
) -> Result<(), String> {
    let ws = timeout(REQUEST_TIMEOUT, handshake(&url, plan.protocol))
        .await
        .map_err(|_| "teacher: handshake timed out".to_string())?
        .map_err(|e| format!("teacher: {e}"))?;
    let (mut tx, mut rx) = ws.split();
    let stats2 = stats.clone();
    let reader = tokio::spawn(async move {
        while let Some(msg) = rx.next().await {
            match msg {
                Ok(Message::Text(t)) if t.as_str().starts_with("{\"type\":\"error\"") => {
                    fail(&stats2, "teacher: cursor", t.as_str().chars().take(200).collect())
                }
                Ok(Message::Close(_)) | Err(_) => break,
                _ => {}
            }
        }
        rx
    });
    let mut round = 0u64;
    let mut at = Instant::now() + interval;
    while at < plan.deadline {
        sleep_until(at.into()).await;
        let step = round % max_step + 1;
        round += 1;
        if let Ok(mut last) = class.last.lock() {
            *last = Some((step, Instant::now()));
        }
        class.expected.fetch_add(class.joined.load(Ordering::Relaxed), Ordering::Relaxed);
        tx.send(Message::text(json!({"type": "cursor", "step": step}).to_string()))
            .await
            .map_err(|e| format!("teacher send: {e}"))?;
        at += interval;
    }
    sleep_until(plan.deadline.into()).await;
    // Learners leave first (the teacher leaving pauses the session).
    Ok(drop((tx, reader)))
}

pub async fn run(config_path: &str) -> Result<Value, String> {
    let text = std::fs::read_to_string(config_path).map_err(|e| format!("--config {config_path}: {e}"))?;
    let c: Value = serde_json::from_str(&text).map_err(|e| format!("--config: {e}"))?;
    let str_of =
        |v: &Value, name: &str| v[name].as_str().map(str::to_owned).ok_or_else(|| format!("config: {name} missing"));
    let num = |name: &str| c[name].as_u64().ok_or_else(|| format!("config: {name} missing"));
    let reference = match c["protocol"].as_str() {
        Some("dropple") => false,
        Some("reference") => true,
        other => return Err(format!("config: protocol must be dropple or reference, got {other:?}")),
    };
    let pairs = |name: &str| -> Vec<(String, Value)> {
        c[name]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| Some((p[0].as_str()?.to_owned(), p[1].clone())))
            .collect()
    };
    let learners = c["learners"].as_array().cloned().unwrap_or_default();
    let classes_cfg = c["classes"].as_array().cloned().unwrap_or_default();
    let limit = crate::raise_nofile_limit()?;
    if learners.len() as u64 + classes_cfg.len() as u64 + 64 > limit as u64 {
        return Err(format!("{} learners need more open files than the limit allows ({limit})", learners.len()));
    }
    let ramp = Duration::from_millis(num("ramp_ms")?);
    let duration = Duration::from_millis(num("duration_ms")?);
    let begin = Instant::now();
    let plan = Arc::new(Plan {
        protocol: if reference { Protocol::Relay } else { Protocol::Dropple },
        reference,
        http: str_of(&c, "http")?,
        ping_path: c["ping_path"].as_str().unwrap_or("/ping").to_owned(),
        lesson_id: str_of(&c, "lesson_id").unwrap_or_default(),
        version: c["version"].as_u64().unwrap_or(1),
        answers: pairs("answers"),
        choices: pairs("choices").into_iter().map(|(q, v)| (q, v.as_u64().unwrap_or(0))).collect(),
        think: Duration::from_millis(num("think_ms")?),
        deadline: begin + duration,
    });
    let stats: Shared = Arc::default();
    let (cpu0_user, cpu0_sys) = cpu_time();

    // Teachers first: their hello opens each session before learners join.
    let classes: Vec<Arc<Class>> = classes_cfg.iter().map(|_| Arc::default()).collect();
    let interval = Duration::from_millis(num("teacher_interval_ms")?);
    let max_step = num("max_step")?.max(2);
    let mut teachers = Vec::new();
    for (k, cls) in classes_cfg.iter().enumerate() {
        let url = str_of(cls, "teacher")?;
        teachers.push(tokio::spawn(teacher(plan.clone(), classes[k].clone(), url, interval, max_step, stats.clone())));
    }
    let n = learners.len().max(1) as u32;
    let mut tasks = Vec::new();
    for (i, l) in learners.iter().enumerate() {
        let start = Instant::now() + ramp * i as u32 / n;
        let seed = i as u64 * 2654435761 + 1;
        match l["kind"].as_str() {
            Some("live") => {
                let k = l["class"].as_u64().unwrap_or(0) as usize;
                let class = classes.get(k).cloned().ok_or_else(|| format!("learner {i}: no class {k}"))?;
                tasks.push(tokio::spawn(live(
                    plan.clone(),
                    class,
                    str_of(l, "url")?,
                    str_of(l, "sub")?,
                    start,
                    seed,
                    stats.clone(),
                )));
            }
            Some("self") => {
                tasks.push(tokio::spawn(self_paced(plan.clone(), str_of(l, "token")?, start, seed, stats.clone())))
            }
            other => return Err(format!("learner {i}: unknown kind {other:?}")),
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    let wall = begin.elapsed().min(duration.max(Duration::from_millis(1)));
    let (cpu1_user, cpu1_sys) = cpu_time();
    for t in teachers {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => fail(&stats, "teacher: cursor", e),
            Err(e) => fail(&stats, "teacher: cursor", e.to_string()),
        }
    }
    let cpu = (cpu1_user + cpu1_sys).saturating_sub(cpu0_user + cpu0_sys);

    let mut s = stats.lock().map_err(|_| "stats poisoned")?;
    let mut kinds = serde_json::Map::new();
    let (mut all, mut errors, mut requests) = (Vec::new(), 0u64, 0u64);
    let mut deliveries = Value::Null;
    let error_samples = std::mem::take(&mut s.error_samples);
    for (kind, k) in s.kinds.iter_mut() {
        if kind.starts_with("live: teacher step") {
            deliveries = summary(&mut k.samples, k.errors);
            continue;
        }
        all.extend_from_slice(&k.samples);
        errors += k.errors;
        requests += k.samples.len() as u64 + k.errors;
        kinds.insert((*kind).to_owned(), summary(&mut k.samples, k.errors));
    }
    let expected: u64 = classes.iter().map(|c| c.expected.load(Ordering::Relaxed)).sum();
    let received: u64 = classes.iter().map(|c| c.received.load(Ordering::Relaxed)).sum();
    if let Value::Object(d) = &mut deliveries {
        d.insert("expected".into(), json!(expected));
        d.insert("missing".into(), json!(expected.saturating_sub(received)));
    }
    let live = learners.iter().filter(|l| l["kind"] == "live").count();
    Ok(json!({
        "protocol": if reference { "reference" } else { "dropple" },
        "learners": learners.len(), "live": live, "self_paced": learners.len() - live, "classes": classes.len(),
        "kinds": kinds,
        "overall": summary(&mut all, errors),
        "deliveries": deliveries,
        "requests": requests, "errors": errors,
        "requests_per_s": (requests as f64 / wall.as_secs_f64() * 10.0).round() / 10.0,
        "wall_ms": ms(wall),
        "cpu_ms": ms(cpu),
        "cpu_percent": (cpu.as_secs_f64() / wall.as_secs_f64() * 1e4).round() / 1e2,
        "error_samples": error_samples,
    }))
}
