// The live classroom client: one WebSocket to /v1/sessions/{id}/ws.
//
// - says `hello` (with `last_seq` when it already holds state, so the server
//   sends exactly the missed events), then keeps a local copy of the session
//   state by folding `event`s in seq order with the server's own fold (the
//   core in the browser, core.js: `SessionState::apply` of src/classroom.rs);
// - drops duplicates (seq already applied) and, on a gap, resyncs by
//   reconnecting with `last_seq` (the server never sends gaps; this is a guard);
// - pings every 20 s and treats a silent socket as dead;
// - reconnects with exponential backoff and full jitter; gives up only on
//   answers that cannot change by retrying (401/403/404, unsupported version);
// - reports through callbacks: onSnapshot(state), onEvent(event, state),
//   onPresence(count), onRoster({count, learners}) and onAnswerKey(answers)
//   (the teacher only), onQuizFeedback({question_id, choice, correct, answer})
//   (after one's own quiz response), onError({code, message}), onStatus(status, detail) where
//   status is 'connecting' | 'waiting' | 'live' | 'paused' | 'reconnecting' |
//   'ended' | 'failed' ('waiting': the teacher has not started the session).
//
// Authority is the server's: the client only mirrors it (e.g. `isTeacher`).

import { SessionFold } from "./core.js?v=ce2217a5f0";

export const PROTOCOL_VERSION = 1;
const CLOSE_UNSUPPORTED_VERSION = 4426;
const CLOSE_ROOM_FULL = 4429;

export class ClassroomClient {
  /**
   * @param {object} o
   * @param {string} o.sessionId
   * @param {string|() => string} o.token bearer token (or a function returning it)
   * @param {string} [o.base] origin, defaults to the page's
   */
  constructor(o) {
    this.sessionId = o.sessionId;
    this.tokenSource = o.token;
    this.base = o.base || location.origin;
    this.userId = o.userId;
    this.cb = {
      onSnapshot: o.onSnapshot || (() => {}),
      onEvent: o.onEvent || (() => {}),
      onPresence: o.onPresence || (() => {}),
      onError: o.onError || (() => {}),
      onStatus: o.onStatus || (() => {}),
      onPong: o.onPong || (() => {}),
      onRoster: o.onRoster || (() => {}),
      onAnswerKey: o.onAnswerKey || (() => {}),
      onQuizFeedback: o.onQuizFeedback || (() => {}),
    };
    this.pingMs = o.pingMs ?? 20_000;
    this.minDelay = o.minDelayMs ?? 500;
    this.maxDelay = o.maxDelayMs ?? 15_000;
    this.WS = o.WebSocket || globalThis.WebSocket;
    this.ws = null;
    this.fold = null;
    this.state = null;
    this.presence = null;
    this.attempt = 0;
    this.everOpened = false;
    this.open = false;
    this.stopped = false;
    this.terminal = null;
    this.status = null;
    this.timers = { retry: null, ping: null };
    this.lastHeard = 0;
    this.onOnline = () => { if (!this.open && !this.stopped) this.reconnectNow(); };
  }

  get seq() { return this.state ? this.state.seq : 0; }
  get isTeacher() { return !!this.state && !!this.userId && this.state.config?.teacher_id === this.userId; }

  start() {
    this.stopped = false;
    globalThis.addEventListener?.("online", this.onOnline);
    this.connect();
    return this;
  }

  /** Close for good (leaving the page or the session). */
  stop() {
    this.stopped = true;
    globalThis.removeEventListener?.("online", this.onOnline);
    clearTimeout(this.timers.retry);
    clearInterval(this.timers.ping);
    if (this.ws) { try { this.ws.close(1000, "bye"); } catch {} }
    this.ws = null;
    this.open = false;
  }

  /** Send a client message; false when not connected (nothing is queued). */
  send(msg) {
    if (!this.ws || !this.open || this.ws.readyState !== 1) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  token() {
    return typeof this.tokenSource === "function" ? this.tokenSource() : this.tokenSource;
  }

  url() {
    const u = new URL(`/v1/sessions/${encodeURIComponent(this.sessionId)}/ws`, this.base);
    u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    u.searchParams.set("token", this.token() || "");
    return u.toString();
  }

  emitStatus() {
    let s;
    if (this.terminal) s = this.terminal;
    else if (this.state?.status === "ended") s = "ended";
    else if (!this.open || !this.state) s = this.everOpened ? "reconnecting" : "connecting";
    else s = { waiting: "waiting", live: "live", paused: "paused" }[this.state.status] || "live";
    const detail = s === "paused" ? { reason: this.state?.paused_reason } : undefined;
    const key = `${s}:${detail?.reason ?? ""}`;
    if (key !== this.status) {
      this.status = key;
      this.cb.onStatus(s, detail);
    }
  }

  connect() {
    if (this.stopped) return;
    clearTimeout(this.timers.retry);
    let ws;
    try {
      ws = new this.WS(this.url());
    } catch (e) {
      this.scheduleRetry();
      return;
    }
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      if (ws !== this.ws) return;
      opened = true;
      this.open = true;
      this.everOpened = true;
      this.lastHeard = Date.now();
      const hello = { type: "hello", version: PROTOCOL_VERSION };
      if (this.state) hello.last_seq = this.state.seq;
      ws.send(JSON.stringify(hello));
      clearInterval(this.timers.ping);
      this.timers.ping = setInterval(() => this.heartbeat(), this.pingMs);
      this.emitStatus();
    };
    ws.onmessage = (ev) => {
      if (ws !== this.ws) return;
      this.lastHeard = Date.now();
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      this.handle(msg);
    };
    ws.onclose = (ev) => {
      if (ws !== this.ws) return;
      this.ws = null;
      this.open = false;
      clearInterval(this.timers.ping);
      if (this.stopped) return;
      if (ev.code === CLOSE_UNSUPPORTED_VERSION) {
        this.fail({ code: "unsupported_version", message: ev.reason || "This app is out of date: reload the page." });
        return;
      }
      if (ev.code === CLOSE_ROOM_FULL) {
        this.cb.onError({ code: "room_full", message: "The session is full; retrying shortly." });
        this.attempt = Math.max(this.attempt, 6);
      }
      if (this.state?.status === "ended") { this.emitStatus(); return; }
      this.emitStatus();
      if (!opened) this.probe();
      else this.scheduleRetry();
    };
    ws.onerror = () => { /* onclose follows */ };
  }

  /** The socket never opened: ask over HTTP whether retrying can help. */
  async probe() {
    try {
      const r = await fetch(`${this.base}/v1/sessions/${encodeURIComponent(this.sessionId)}`, {
        headers: { authorization: `Bearer ${this.token() || ""}` },
      });
      if ([401, 403, 404].includes(r.status)) {
        let err = { code: `http_${r.status}`, message: "Cannot join this session." };
        try { err = (await r.json()).error || err; } catch {}
        this.fail(err);
        return;
      }
    } catch { /* offline: keep trying */ }
    this.scheduleRetry();
  }

  fail(err) {
    this.terminal = "failed";
    this.stopped = true;
    this.cb.onError(err);
    this.emitStatus();
  }

  scheduleRetry() {
    if (this.stopped) return;
    clearTimeout(this.timers.retry);
    const cap = Math.min(this.maxDelay, this.minDelay * 2 ** this.attempt);
    const delay = this.minDelay / 2 + Math.random() * (cap - this.minDelay / 2);
    this.attempt += 1;
    this.timers.retry = setTimeout(() => this.connect(), delay);
  }

  reconnectNow() {
    clearTimeout(this.timers.retry);
    if (this.ws) {
      const old = this.ws;
      this.ws = null;
      this.open = false;
      try { old.close(4000, "resync"); } catch {}
    }
    this.emitStatus();
    this.connect();
  }

  heartbeat() {
    if (Date.now() - this.lastHeard > this.pingMs * 2.5) {
      // Nothing heard for two pings: the socket is dead even if it looks open.
      this.reconnectNow();
      return;
    }
    this.send({ type: "ping" });
  }

  handle(msg) {
    switch (msg.type) {
      case "snapshot": {
        let fold;
        try {
          fold = new SessionFold(msg.state);
        } catch (e) {
          this.cb.onError({ code: "invalid_snapshot", message: String(e.message || e) });
          return;
        }
        this.fold?.free();
        this.fold = fold;
        this.state = fold.state();
        this.attempt = 0;
        if (typeof msg.presence === "number") {
          this.presence = msg.presence;
          this.cb.onPresence(msg.presence);
        }
        this.cb.onSnapshot(this.state);
        this.emitStatus();
        break;
      }
      case "event": {
        if (!this.state) return; // events only follow a snapshot or a resumed hello
        const seq = msg.seq ?? msg.event?.seq;
        if (seq <= this.state.seq) return; // duplicate
        if (seq !== this.state.seq + 1) { this.reconnectNow(); return; } // gap: resync from last_seq
        this.attempt = 0;
        this.fold.apply({ ...msg.event, seq });
        this.state = this.fold.state();
        this.cb.onEvent(msg.event, this.state);
        this.emitStatus();
        break;
      }
      case "presence":
        this.attempt = 0;
        this.presence = msg.count;
        this.cb.onPresence(msg.count);
        break;
      case "error":
        this.cb.onError({ code: msg.code, message: msg.message });
        if (msg.code === "unsupported_version") this.fail(msg);
        break;
      case "pong":
        this.cb.onPong();
        break;
      case "roster":
        this.cb.onRoster({ count: msg.count, learners: msg.learners || [] });
        break;
      case "answer_key":
        this.cb.onAnswerKey(msg.answers || {});
        break;
      case "quiz_feedback":
        this.cb.onQuizFeedback(msg);
        break;
      default:
        break;
    }
  }
}
