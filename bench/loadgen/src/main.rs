//! WebSocket fan-out load generator for the Dropple Edge benchmarks.
//!
//! ```text
//! loadgen learners --config <file.json>   (see learners.rs: the mixed class load)
//! loadgen fanout --teacher <ws-url> --observers-file <file> --observers N
//!                --rounds R --interval-ms I --protocol dropple|relay
//!                [--warmup W] [--max-step S] [--pad-to B]
//! ```
//!
//! Opens N observer sockets (a bounded number of handshakes at a time), then
//! the teacher socket. Each round the teacher sends `{"type":"cursor","step":K}`
//! and the generator waits until every observer has received it (or 10 s
//! passed); a latency sample is receive instant − send instant, both read from
//! one monotonic clock in this one process. Prints one JSON line on stdout;
//! errors go to stderr with a nonzero exit status.
//!
//! Protocols:
//! - `relay` (the benchmark's baseline room): no greeting; observers receive
//!   the teacher's message unchanged.
//! - `dropple` (the product's classroom): every socket sends `{"type":"hello"}`
//!   and is ready once it got its `snapshot`. The teacher's cursor becomes a
//!   `cursor.moved` event broadcast to every synced socket (the teacher too) as
//!   `{"type":"event","seq":..,"event":{"type":"cursor.moved","payload":{"step":K,..},..}}`.
//!   Observers also get `presence`, `snapshot`, other events, `pong`, `error`:
//!   everything else is read and ignored.
//!
//! `--pad-to B` (relay only) pads the teacher's message with a `pad` field to
//! B bytes: the durable room then stores and relays a text as long as the
//! product's committed event (`round_bytes` of a `dropple` run), so message
//! size is compared apart from everything else.
//!
//! Output fields: `round_bytes` is the length of the round message as the
//! observers receive it (the first observer's, averaged over the recorded
//! rounds); `rounds` is the number of recorded rounds (R − W) and
//! `warmup` is W; `samples` + `missing` = observers × rounds; latencies are in
//! ms over the recorded samples (nearest-rank percentiles; `null` if there are
//! none); `connect_ms` is the time to get every socket ready and `close_ms` the
//! time to close them all (closing handshakes included, each given up after
//! 60 s and then counted in `unclean_closes`, the teacher's too); `wall_ms` and the
//! CPU figures (this process, `getrusage`) cover the recorded rounds, from the
//! first recorded send to the end of the last round, intervals included.

mod learners;

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt, TryStreamExt};
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, timeout_at};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Handshakes in flight at once: enough to open 1,000 sockets in seconds,
/// few enough not to storm the local runtime (it serves them on two cores).
const MAX_HANDSHAKES_IN_FLIGHT: usize = 50;
/// TCP connect + upgrade (+ hello/snapshot for `dropple`) of one socket.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// A round gives up on observers that have not received its message by then.
const ROUND_TIMEOUT: Duration = Duration::from_secs(10);
/// Sending our close frame and reading the server's close reply. Generous (the
/// product broadcasts `presence` to everyone left on each close: 500 observers
/// closing together took ~17 s locally) but bounded, so a server that falls
/// further behind costs the run at most this, reported as `unclean_closes`.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(60);
/// The product allows each connection 20 messages/s (burst 40): one cursor per
/// round plus an interval of at least this keeps the teacher under it.
const DROPPLE_MIN_INTERVAL_MS: u64 = 50;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Protocol {
    Dropple,
    Relay,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Dropple => "dropple",
            Protocol::Relay => "relay",
        }
    }
}

struct Args {
    teacher: String,
    observer_urls: Vec<String>,
    observers: usize,
    rounds: u64,
    warmup: u64,
    interval: Duration,
    protocol: Protocol,
    max_step: Option<u64>,
    pad_to: Option<usize>,
}

const USAGE: &str = "usage: loadgen fanout --teacher <ws-url> --observers-file <file> --observers N \
--rounds R --interval-ms I --protocol dropple|relay [--warmup W] [--max-step S] [--pad-to B]

  --rounds R     rounds in total; the first W of them (--warmup, default 0) are not recorded
  --max-step S   steps cycle 1..=S (the product refuses a cursor beyond the lesson's
                 step count); default: step K = round number, never repeating
  --pad-to B     (relay) pad each round message to B bytes with a `pad` field";

fn parse_args() -> Result<Args, String> {
    let mut argv = std::env::args().skip(1);
    match argv.next().as_deref() {
        Some("fanout") => {}
        Some("-h" | "--help") | None => return Err(USAGE.to_string()),
        Some(other) => return Err(format!("unknown command {other}\n{USAGE}")),
    }
    let mut opts: HashMap<String, String> = HashMap::new();
    while let Some(flag) = argv.next() {
        let known = [
            "--teacher",
            "--observers-file",
            "--observers",
            "--rounds",
            "--interval-ms",
            "--protocol",
            "--warmup",
            "--max-step",
            "--pad-to",
        ];
        if !known.contains(&flag.as_str()) {
            return Err(format!("unknown option {flag}\n{USAGE}"));
        }
        let value = argv.next().ok_or_else(|| format!("{flag} needs a value"))?;
        opts.insert(flag, value);
    }
    let required = |name: &str| opts.get(name).cloned().ok_or_else(|| format!("{name} is required\n{USAGE}"));
    let number = |name: &str, default: Option<u64>| -> Result<u64, String> {
        match opts.get(name) {
            Some(v) => v.parse().map_err(|_| format!("{name}: not a non-negative integer: {v}")),
            None => default.ok_or_else(|| format!("{name} is required\n{USAGE}")),
        }
    };
    let protocol = match required("--protocol")?.as_str() {
        "dropple" => Protocol::Dropple,
        "relay" => Protocol::Relay,
        other => return Err(format!("--protocol: expected dropple or relay, got {other}")),
    };
    let observers = number("--observers", None)? as usize;
    let rounds = number("--rounds", None)?;
    let warmup = number("--warmup", Some(0))?;
    let interval_ms = number("--interval-ms", None)?;
    let max_step = opts.get("--max-step").map(|_| number("--max-step", None)).transpose()?;
    let pad_to = opts.get("--pad-to").map(|_| number("--pad-to", None)).transpose()?.map(|b| b as usize);
    if pad_to.is_some() && protocol != Protocol::Relay {
        return Err("--pad-to is for --protocol relay (the product's messages are what they are)".into());
    }
    if observers == 0 {
        return Err("--observers must be at least 1".into());
    }
    if warmup >= rounds {
        return Err(format!("--rounds ({rounds}) must be greater than --warmup ({warmup})"));
    }
    if protocol == Protocol::Dropple && interval_ms < DROPPLE_MIN_INTERVAL_MS {
        return Err(format!(
            "--interval-ms must be at least {DROPPLE_MIN_INTERVAL_MS} with --protocol dropple \
             (the product rate-limits each connection to 20 messages/s)"
        ));
    }
    // Consecutive rounds must differ in step so a late message is never taken
    // for the next round's.
    if max_step.is_some_and(|s| s < 2) {
        return Err("--max-step must be at least 2".into());
    }
    let file = required("--observers-file")?;
    let text = std::fs::read_to_string(&file).map_err(|e| format!("--observers-file {file}: {e}"))?;
    let observer_urls: Vec<String> =
        text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_owned).collect();
    if observer_urls.is_empty() {
        return Err(format!("--observers-file {file}: no URLs"));
    }
    Ok(Args {
        teacher: required("--teacher")?,
        observer_urls,
        observers,
        rounds,
        warmup,
        interval: Duration::from_millis(interval_ms),
        protocol,
        max_step,
        pad_to,
    })
}

/// A URL fit for an error message: the query (which may carry a token) is cut.
fn redact(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

/// What the socket tasks tell the round loop.
enum Report {
    /// Observer `observer` received the round message with this step at `at`.
    Hit { observer: usize, step: u64, at: Instant, bytes: usize },
    /// Observer `observer`'s socket ended before the run did.
    Gone { observer: usize, why: String },
    /// The teacher's socket was refused something or ended: the run cannot go on.
    TeacherFailed(String),
}

/// The step a round message carries, if `text` is one. Cheap checks first:
/// every observer parses every message it receives.
fn round_step(protocol: Protocol, text: &str) -> Option<u64> {
    if !text.contains("cursor") {
        return None;
    }
    let v: Value = serde_json::from_str(text).ok()?;
    match protocol {
        Protocol::Relay => (v["type"] == "cursor").then(|| v["step"].as_u64()).flatten(),
        Protocol::Dropple => {
            let event = &v["event"];
            (v["type"] == "event" && event["type"] == "cursor.moved")
                .then(|| event["payload"]["step"].as_u64())
                .flatten()
        }
    }
}

/// Connects and, for `dropple`, says hello and waits for the snapshot.
async fn handshake(url: &str, protocol: Protocol) -> Result<Ws, String> {
    // A small read buffer: tungstenite zero-fills all of it before every read,
    // and with its 128 KiB default that memset was half of our CPU time at
    // 1,000 sockets. Bigger frames (a snapshot) still arrive, over several reads.
    let config = WebSocketConfig::default().read_buffer_size(4096);
    // Nagle off: a round message is one small frame, it must leave at once.
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    if protocol == Protocol::Dropple {
        ws.send(Message::text(r#"{"type":"hello"}"#)).await.map_err(|e| format!("hello: {e}"))?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                    match v["type"].as_str() {
                        Some("snapshot") => break,
                        Some("error") => return Err(format!("refused: {}", t.as_str())),
                        _ => {}
                    }
                }
                Some(Ok(Message::Close(frame))) => return Err(format!("closed before the snapshot: {frame:?}")),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("before the snapshot: {e}")),
                None => return Err("ended before the snapshot".into()),
            }
        }
    }
    Ok(ws)
}

/// Sends our close frame and reads until the server's reply ends the stream.
/// True if the closing handshake completed in time.
async fn close_cleanly<S>(ws: &mut S) -> bool
where
    S: futures_util::Sink<Message>
        + futures_util::Stream<Item = tokio_tungstenite::tungstenite::Result<Message>>
        + Unpin,
{
    let frame = CloseFrame { code: CloseCode::Normal, reason: "done".into() };
    if ws.send(Message::Close(Some(frame))).await.is_err() {
        return false;
    }
    timeout(CLOSE_TIMEOUT, async {
        loop {
            match ws.next().await {
                None => return true,
                Some(Err(_)) => return false,
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .unwrap_or(false)
}

/// One observer: reads everything, reports round messages, closes on shutdown.
/// Returns whether its socket closed cleanly.
async fn observe(
    index: usize,
    mut ws: Ws,
    protocol: Protocol,
    reports: mpsc::UnboundedSender<Report>,
    mut shutdown: watch::Receiver<bool>,
) -> bool {
    loop {
        tokio::select! {
            msg = ws.next() => {
                // Stamp before any parsing: the sample is the arrival.
                let at = Instant::now();
                let why = match msg {
                    Some(Ok(Message::Text(t))) => {
                        if let Some(step) = round_step(protocol, t.as_str()) {
                            let _ = reports.send(Report::Hit { observer: index, step, at, bytes: t.len() });
                        }
                        continue;
                    }
                    Some(Ok(Message::Close(frame))) => format!("closed by the server: {frame:?}"),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => e.to_string(),
                    None => "ended".to_string(),
                };
                let _ = reports.send(Report::Gone { observer: index, why });
                return false;
            }
            _ = shutdown.changed() => return close_cleanly(&mut ws).await,
        }
    }
}

/// The teacher's socket, read side: drains it (it also receives the
/// broadcasts) and reports a refusal or an early end. Hands the stream back
/// on shutdown so the socket can be closed cleanly.
async fn drain_teacher<S>(
    mut stream: S,
    protocol: Protocol,
    reports: mpsc::UnboundedSender<Report>,
    mut shutdown: watch::Receiver<bool>,
) -> Option<S>
where
    S: futures_util::Stream<Item = tokio_tungstenite::tungstenite::Result<Message>> + Unpin,
{
    loop {
        let msg = tokio::select! {
            msg = stream.next() => msg,
            _ = shutdown.changed() => return Some(stream),
        };
        let why = match msg {
            Some(Ok(Message::Text(t))) => {
                if protocol == Protocol::Dropple {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                    if v["type"] == "error" {
                        let hint = if v["code"] == "invalid_cursor" {
                            " (the lesson has fewer steps than the rounds: pass --max-step)"
                        } else {
                            ""
                        };
                        let _ =
                            reports.send(Report::TeacherFailed(format!("the server refused: {}{hint}", t.as_str())));
                    }
                }
                continue;
            }
            Some(Ok(Message::Close(frame))) => format!("closed by the server: {frame:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => e.to_string(),
            None => "ended".to_string(),
        };
        let _ = reports.send(Report::TeacherFailed(why));
        return None;
    }
}

/// User and system CPU time of this process so far.
fn cpu_time() -> (Duration, Duration) {
    // SAFETY: getrusage only writes the struct we pass; zeroed is a valid rusage.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    (tv(usage.ru_utime), tv(usage.ru_stime))
}

/// Raises the open-files soft limit to the hard limit; returns the new soft limit.
fn raise_nofile_limit() -> Result<libc::rlim_t, String> {
    // SAFETY: plain libc calls on a struct we own.
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(format!("getrlimit: {}", std::io::Error::last_os_error()));
    }
    // Linux refuses an infinite soft limit for open files: cap it.
    let target = if lim.rlim_max == libc::RLIM_INFINITY { 1 << 20 } else { lim.rlim_max };
    if lim.rlim_cur < target {
        let raised = libc::rlimit { rlim_cur: target, rlim_max: lim.rlim_max };
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = target;
        }
    }
    Ok(lim.rlim_cur)
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// The teacher's message of a round: `{"type":"cursor","step":K}`, padded
/// to `pad_to` bytes when asked (never cut: a shorter target leaves it as is).
fn round_message(step: u64, pad_to: Option<usize>) -> String {
    let head = format!(r#"{{"type":"cursor","step":{step},"pad":""#);
    match pad_to {
        Some(b) if b >= head.len() + 2 => format!("{head}{}\"}}", "x".repeat(b - head.len() - 2)),
        _ => json!({"type": "cursor", "step": step}).to_string(),
    }
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted.get(rank - 1).copied()
}

async fn run(args: Args) -> Result<Value, String> {
    let limit = raise_nofile_limit()?;
    // Sockets plus stdio, the epoll and timer descriptors and some slack.
    if args.observers as libc::rlim_t + 64 > limit {
        return Err(format!("{} observers need more open files than the limit allows ({limit})", args.observers));
    }
    let protocol = args.protocol;
    let (reports_tx, mut reports) = mpsc::unbounded_channel::<Report>();
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (teacher_shutdown_tx, teacher_shutdown_rx) = watch::channel(false);

    // Connect: observers first (bounded handshakes), then the teacher. Each
    // observer starts reading as soon as it is ready, so the presence messages
    // the product sends while the others join never pile up unread.
    let connect_start = Instant::now();
    let permits = Semaphore::new(MAX_HANDSHAKES_IN_FLIGHT);
    let urls = args.observer_urls.iter().cycle().take(args.observers).enumerate();
    let observers: Vec<JoinHandle<bool>> = stream::iter(urls)
        .map(|(index, url)| {
            let (permits, reports, shutdown) = (&permits, reports_tx.clone(), shutdown_rx.clone());
            async move {
                let _permit = permits.acquire().await.map_err(|e| e.to_string())?;
                let ws = timeout(HANDSHAKE_TIMEOUT, handshake(url, protocol))
                    .await
                    .map_err(|_| format!("observer {index} ({}): handshake timed out", redact(url)))?
                    .map_err(|e| format!("observer {index} ({}): {e}", redact(url)))?;
                Ok::<_, String>(tokio::spawn(observe(index, ws, protocol, reports, shutdown)))
            }
        })
        .buffer_unordered(MAX_HANDSHAKES_IN_FLIGHT)
        .try_collect()
        .await?;
    let teacher = timeout(HANDSHAKE_TIMEOUT, handshake(&args.teacher, protocol))
        .await
        .map_err(|_| format!("teacher ({}): handshake timed out", redact(&args.teacher)))?
        .map_err(|e| format!("teacher ({}): {e}", redact(&args.teacher)))?;
    let (mut teacher_tx, teacher_rx) = teacher.split();
    let teacher_reader = tokio::spawn(drain_teacher(teacher_rx, protocol, reports_tx.clone(), teacher_shutdown_rx));
    drop(reports_tx);
    let connect_time = connect_start.elapsed();

    let n = args.observers;
    let mut alive = vec![true; n];
    let mut samples: Vec<Duration> = Vec::with_capacity(n * (args.rounds - args.warmup) as usize);
    let mut missing: u64 = 0;
    let mut round_bytes: Vec<usize> = Vec::new();
    let mut measured_start: Option<(Instant, (Duration, Duration))> = None;
    let trace = std::env::var_os("LOADGEN_TRACE").is_some();
    let began = Instant::now();
    for round in 0..args.rounds {
        let recorded = round >= args.warmup;
        if recorded && measured_start.is_none() {
            measured_start = Some((Instant::now(), cpu_time()));
        }
        let step = match args.max_step {
            Some(max) => round % max + 1,
            None => round + 1,
        };
        let text = round_message(step, args.pad_to);
        let sent = Instant::now();
        teacher_tx.send(Message::text(text)).await.map_err(|e| format!("teacher send: {e}"))?;

        let deadline = tokio::time::Instant::from_std(sent + ROUND_TIMEOUT);
        let mut got = vec![false; n];
        let mut waiting = alive.iter().filter(|a| **a).count();
        while waiting > 0 {
            let report = match timeout_at(deadline, reports.recv()).await {
                Ok(Some(report)) => report,
                Ok(None) => return Err("every socket task ended".into()),
                Err(_) => break, // round timeout: the rest count as missing
            };
            match report {
                Report::Hit { observer, step: s, at, bytes } if s == step && alive[observer] && !got[observer] => {
                    got[observer] = true;
                    waiting -= 1;
                    if recorded {
                        if observer == 0 {
                            round_bytes.push(bytes);
                        }
                        samples.push(at.duration_since(sent));
                    }
                }
                Report::Hit { .. } => {} // a late message of an earlier round
                Report::Gone { observer, why } => {
                    eprintln!("loadgen: observer {observer} lost in round {}: {why}", round + 1);
                    if alive[observer] && !got[observer] {
                        waiting -= 1;
                    }
                    alive[observer] = false;
                }
                Report::TeacherFailed(why) => return Err(format!("teacher, round {}: {why}", round + 1)),
            }
        }
        if recorded {
            missing += (n - got.iter().filter(|g| **g).count()) as u64;
        }
        if trace {
            // LOADGEN_TRACE=1: when each round went out and how long its slowest observer took.
            let slowest = samples.iter().rev().take(n).max().copied().unwrap_or_default();
            eprintln!("round {round} at {:.1} ms: slowest {:.2} ms", ms(sent.duration_since(began)), ms(slowest));
        }
        if round + 1 < args.rounds {
            sleep(args.interval).await;
        }
    }
    let (start, (user0, sys0)) = measured_start.ok_or("no measured round")?;
    let wall = start.elapsed();
    let (user1, sys1) = cpu_time();
    let (user, sys) = (user1.saturating_sub(user0), sys1.saturating_sub(sys0));

    // Close everything: observers first (in the product the teacher leaving
    // pauses the session, which would be one more broadcast to them).
    let close_start = Instant::now();
    // Cannot fail: `shutdown_rx` is still alive here.
    let _ = shutdown_tx.send(true);
    let mut unclean = 0usize;
    for handle in observers {
        if !handle.await.unwrap_or(false) {
            unclean += 1;
        }
    }
    // An error here means the teacher's reader already ended (the server
    // closed or broke that socket): then there is nothing left to close.
    let _ = teacher_shutdown_tx.send(true);
    let teacher_clean = match teacher_reader.await.ok().flatten().map(|rx| rx.reunite(teacher_tx)) {
        Some(Ok(mut ws)) => close_cleanly(&mut ws).await,
        _ => false,
    };
    let close_time = close_start.elapsed();
    if unclean > 0 || !teacher_clean {
        let teacher = if teacher_clean { "closed cleanly" } else { "did not close cleanly" };
        eprintln!("loadgen: {unclean} observer socket(s) did not close cleanly; the teacher's {teacher}");
    }

    samples.sort_unstable();
    let stat = |d: Option<Duration>| d.map(ms);
    let mean = (!samples.is_empty()).then(|| samples.iter().sum::<Duration>() / samples.len() as u32);
    let round_bytes = (!round_bytes.is_empty()).then(|| round_bytes.iter().sum::<usize>() / round_bytes.len());
    Ok(json!({
        "protocol": protocol.name(),
        "round_bytes": round_bytes,
        "observers": n,
        "rounds": args.rounds - args.warmup,
        "warmup": args.warmup,
        "samples": samples.len(),
        "missing": missing,
        "p50_ms": stat(percentile(&samples, 50.0)),
        "p99_ms": stat(percentile(&samples, 99.0)),
        "max_ms": stat(samples.last().copied()),
        "mean_ms": stat(mean),
        "connect_ms": ms(connect_time),
        "close_ms": ms(close_time),
        "unclean_closes": unclean + usize::from(!teacher_clean),
        "wall_ms": ms(wall),
        "cpu_user_ms": ms(user),
        "cpu_sys_ms": ms(sys),
        "cpu_percent": ((user + sys).as_secs_f64() / wall.as_secs_f64() * 1e4).round() / 1e2,
    }))
}

// One thread: the machine has two cores and the runtime under test (workerd,
// plus wrangler's proxy) needs them more than we do. All our work is socket
// I/O and tiny JSON parses, which one thread keeps up with at 1,000 sockets,
// and a single thread cannot add cross-thread wake-up jitter to the samples.
// The cost: arrivals that become ready together are stamped one after the
// other, a few microseconds apart each (stamped before parsing to keep it so).
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("learners") {
        let config = match (std::env::args().nth(2).as_deref(), std::env::args().nth(3)) {
            (Some("--config"), Some(path)) => path,
            _ => {
                eprintln!("loadgen: usage: loadgen learners --config <file.json>");
                return ExitCode::from(2);
            }
        };
        return report(learners::run(&config).await);
    }
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    report(run(args).await)
}

/// The result as one JSON line on stdout, or the error on stderr.
fn report(outcome: Result<serde_json::Value, String>) -> ExitCode {
    match outcome {
        Ok(result) => {
            println!("{result}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_round_messages_have_the_asked_length_and_still_count() {
        for (step, b) in [(7u64, 330usize), (1234, 64), (3, 35)] {
            let text = round_message(step, Some(b));
            assert_eq!(text.len(), b, "{text}");
            assert_eq!(round_step(Protocol::Relay, &text), Some(step));
        }
        // A target shorter than the message leaves it as it is.
        assert_eq!(round_message(7, Some(10)), r#"{"type":"cursor","step":7}"#);
        assert_eq!(round_message(7, None), r#"{"type":"cursor","step":7}"#);
    }

    #[test]
    fn round_messages_are_recognised_per_protocol() {
        let relay = r#"{"type":"cursor","step":7}"#;
        assert_eq!(round_step(Protocol::Relay, relay), Some(7));
        assert_eq!(round_step(Protocol::Dropple, relay), None);
        // The shape the product broadcasts (crate::classroom::ServerMsg::Event).
        let event = r#"{"type":"event","seq":9,"event":{"id":"x","run_id":"r","seq":9,"type":"cursor.moved",
            "payload":{"step":7,"x":null,"y":null},"timestamp":1,"author_id":"t"}}"#;
        assert_eq!(round_step(Protocol::Dropple, event), Some(7));
        assert_eq!(round_step(Protocol::Relay, event), None);
        for other in [
            r#"{"type":"presence","count":3}"#,
            r#"{"type":"event","seq":1,"event":{"type":"session.started","payload":{}}}"#,
            r#"{"type":"error","code":"invalid_cursor","message":"step must be within 0..=12"}"#,
            "not json, cursor",
        ] {
            assert_eq!(round_step(Protocol::Dropple, other), None, "{other}");
        }
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&samples, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&samples[..1], 99.0), Some(Duration::from_millis(1)));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
