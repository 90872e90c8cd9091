// Replay: scrub a run to any seq (or moment). The run's events are loaded
// once and folded here by the core (the server's fold in the browser: a
// canvas run like GET /v1/runs/{id}/state?at_seq=, a live session's run like
// the classroom object); a session's canvas is the lesson frame at the
// cursor, computed locally from the lesson artifact. Scrubbing asks nothing
// of the network. The page opens on "my past sessions" (GET /v1/me/sessions):
// the classes the person taught or attended and the runs they wrote.

import { api, describeError, getToken } from "./api.js?v=f3c5674699";
import { ClassroomClient } from "./classroom-client.js?v=9100f94108";
import { Replay, describeItems, lessonFrames } from "./core.js?v=ce2217a5f0";
import { renderCanvas } from "./canvas.js?v=cc346232db";
import { shell, $, h, say, params } from "./ui.js?v=f44cea9744";

let events = [];
let runId = null;
let lesson = null; // {id, version} for session runs
let isSession = false;
let isAttempt = false; // a quiz attempt: answers and a grade, nothing drawn
let replay = null; // the core's Replay over `events`
let frames = null; // lessonFrames of the session's lesson, once loaded

// A canvas run longer than this is loaded as a server checkpoint (the state
// at last − WINDOW, `GET /v1/runs/{id}/state?at_seq=`) plus the events after
// it, folded here: the last WINDOW events scrub locally without loading the
// whole run.
const WINDOW = 20_000;
let from = 0; // the first seq the scrubber reaches
let mine = null; // GET /v1/me/sessions, once signed in
let title = ""; // the lesson's title, when known

// ---------------------------------------------------------------- my past sessions

const STATUS_WORD = { waiting: "not started", live: "live", paused: "paused", ended: "ended" };
const day = (iso) => {
  const d = new Date(iso);
  return isNaN(d) ? "" : d.toLocaleString("en-GB", { day: "numeric", month: "long", year: "numeric", hour: "2-digit", minute: "2-digit" });
};
const sessionHref = (s) => `/replay?run=${encodeURIComponent(s.run_id)}&lesson=${encodeURIComponent(s.lesson_id)}&version=${s.version}`;

async function loadMine() {
  const status = $("#mine-status");
  if (!getToken()) {
    mine = null;
    $("#my-sessions").replaceChildren();
    $("#my-runs").replaceChildren();
    say(status, "Sign in (top right) to see the classes you taught or attended.", "info");
    return;
  }
  try {
    mine = await api("/v1/me/sessions");
  } catch (e) {
    say(status, describeError(e), "error");
    return;
  }
  say(status, "");
  $("#my-sessions").replaceChildren(...(mine.sessions.length ? mine.sessions.map((s) => h("li", { "data-session": s.session_id, "data-run": s.run_id },
    h("a", { href: sessionHref(s) }, s.title || "Untitled lesson"),
    h("span", { class: "badge" }, s.role === "teacher" ? "You taught" : "You attended"),
    h("span", { class: "muted" }, `${day(s.created_at)} · ${STATUS_WORD[s.status] ?? s.status} · code ${s.join_code}`)))
    : [h("li", { class: "hint" }, "No classes yet: the ones you teach or join appear here.")]));
  $("#my-runs").replaceChildren(...(mine.runs.length ? mine.runs.map((r) => h("li", { "data-run": r.run_id },
    h("a", { href: r.lesson_id ? `/replay?run=${encodeURIComponent(r.run_id)}&lesson=${encodeURIComponent(r.lesson_id)}&version=${r.version}` : `/replay?run=${encodeURIComponent(r.run_id)}` },
      r.kind === "attempt" ? `Quiz attempt: ${r.title ?? "a lesson"}` : r.kind === "recording" ? "Canvas recording" : `Run (${r.kind})`),
    h("span", { class: "muted" }, day(r.created_at))))
    : [h("li", { class: "hint" }, "No recordings or attempts yet.")]));
}

async function loadEvents(id, after = 0) {
  const out = [];
  for (;;) {
    const r = await api(`/v1/runs/${encodeURIComponent(id)}/events?after=${after}&limit=1000`);
    out.push(...r.events);
    if (!r.events.length || r.events.at(-1).seq >= r.last_seq) break;
    after = r.events.at(-1).seq;
  }
  return out;
}

/** A session's config (run and lesson), read from one snapshot over the socket. */
function sessionConfig(sessionId) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { c.stop(); reject(new Error("the session did not answer")); }, 10_000);
    const c = new ClassroomClient({
      sessionId,
      token: getToken,
      onSnapshot: (state) => { clearTimeout(timer); c.stop(); resolve(state.config); },
      onError: (e) => { if (e.code?.startsWith("http_") || c.terminal) { clearTimeout(timer); c.stop(); reject(new Error(e.message)); } },
    }).start();
  });
}

async function load() {
  const status = $("#status");
  const p = params();
  runId = p.get("run");
  lesson = p.get("lesson") ? { id: p.get("lesson"), version: Number(p.get("version")) } : null;
  try {
    await minePromise;
    const known = !runId && mine?.sessions.find((s) => s.session_id === p.get("session"));
    if (known) {
      runId = known.run_id;
      lesson = { id: known.lesson_id, version: known.version };
    }
    if (!runId && p.get("session")) {
      say(status, "Looking up the session…");
      const cfg = await sessionConfig(p.get("session"));
      runId = cfg.run_id;
      lesson = { id: cfg.lesson_id, version: cfg.version };
    }
    if (!runId) return;
    say(status, "Loading events…");
    let head;
    try {
      head = await api(`/v1/runs/${encodeURIComponent(runId)}/events?after=0&limit=1000`);
    } catch (e) {
      // A session id typed in the box: its run is found through the session.
      if (e.status !== 404 || lesson || p.get("session")) throw e;
      location.replace(`/replay?session=${encodeURIComponent(runId)}`);
      return;
    }
    isSession = head.events.some((e) => e.type.startsWith("session.") || e.type === "cursor.moved");
    isAttempt = head.events.length > 0 && head.events.every((e) => e.type.startsWith("attempt."));
    replay = new Replay(isSession ? "session" : "canvas");
    if (!isSession && head.last_seq > WINDOW) {
      const cp = await api(`/v1/runs/${encodeURIComponent(runId)}/state?at_seq=${head.last_seq - WINDOW}`);
      replay.fromCheckpoint(cp);
      from = cp.seq;
      say(status, `Loading the last ${WINDOW.toLocaleString()} events…`);
      events = await loadEvents(runId, from);
    } else {
      events = await loadEvents(runId);
    }
    replay.push(events);
    if (lesson) {
      try {
        const artifact = await api(`/v1/lessons/${encodeURIComponent(lesson.id)}/versions/${lesson.version}`);
        title = artifact.title || "";
        if (isSession) frames = lessonFrames(artifact);
      } catch (e) {
        say(status, `The lesson cannot be loaded: ${describeError(e)}`, "error");
      }
    }
    $("#player").hidden = false;
    $("#qa-panel").hidden = !isSession;
    // Once a run is open, the pick list moves below it.
    $("#main").append($("#mine"));
    const kind = isSession ? "Class" : isAttempt ? "Quiz attempt" : "Recording";
    $("#title").textContent = title ? `${kind}: ${title}` : isSession ? "Class replay" : isAttempt ? "Quiz attempt" : "Canvas recording";
    $("#canvas").hidden = isAttempt;
    document.title = `${$("#title").textContent} · Replay · Dropple`;
    const last = events.at(-1)?.seq ?? 0;
    $("#seq").max = String(last);
    $("#seq").min = String(from);
    $("#last").textContent = String(last);
    const words = describeItems(events); // what happened, as a person says it (the core's words)
    $("#events").replaceChildren(...events.map((e, n) => h("li", { "data-seq": e.seq, "data-type": e.type },
      h("button", { type: "button", class: "link", onclick: () => show(e.seq), "aria-label": `Go to event ${e.seq}: ${words[n]}` }, `#${e.seq}`),
      h("span", { class: "what" }, words[n]), h("span", { class: "muted" }, new Date(e.timestamp).toLocaleTimeString("en-GB")))));
    wordsBySeq = new Map(events.map((e, n) => [e.seq, words[n]]));
    say(status, events.length ? "" : "This run has no events yet.", "info");
    await show(Number(p.get("seq") ?? last));
  } catch (e) {
    say(status, e.status === 403 ? "You can replay the classes you taught or attended and your own runs; this one is not among them." : e.status === 404 ? "Nothing with this id: pick one of your sessions below, or check the id." : describeError(e), "error");
  }
}

let wordsBySeq = new Map();

/** Scroll the event list (only the list, never the page) so `li` shows. */
function keepInList(list, li) {
  const top = li.offsetTop - list.offsetTop;
  if (top < list.scrollTop) list.scrollTop = top;
  else if (top + li.offsetHeight > list.scrollTop + list.clientHeight) list.scrollTop = top + li.offsetHeight - list.clientHeight;
}

/** Questions asked up to this point, each with its answer if it had one by then. */
function showQuestions(state) {
  const qs = state.questions || [];
  $("#qa").replaceChildren(...(qs.length ? qs.map((q) => h("li", { "data-question": q.id },
    h("p", { class: "qa-q" }, h("strong", {}, `${q.asker_id}: `), q.text),
    q.answer ? h("p", { class: "qa-a", "data-testid": "qa-answer" }, `Teacher: ${q.answer}`) : h("p", { class: "muted" }, "Not answered yet")))
    : [h("li", { class: "hint" }, "No questions yet at this point.")]));
  const quiz = Object.entries(state.quiz_responses || {});
  $("#quiz-summary").textContent = quiz.length
    ? `Quiz answers so far: ${quiz.map(([id, who]) => `${id} — ${Object.keys(who).length}`).join(", ")}`
    : "";
}

async function show(seq) {
  const last = events.at(-1)?.seq ?? from;
  seq = Math.max(from, Math.min(last, seq));
  $("#seq").value = String(seq);
  $("#seq-out").textContent = String(seq);
  const ev = events.find((e) => e.seq === seq);
  $("#seq-time").textContent = ev ? `· ${day(new Date(ev.timestamp).toISOString())}:${String(new Date(ev.timestamp).getSeconds()).padStart(2, "0")}` : "";
  for (const li of $("#events").children) {
    const here = Number(li.dataset.seq) === seq;
    li.toggleAttribute("aria-current", here);
    if (here) keepInList($("#events"), li);
  }
  $("#now").textContent = ev ? `Now: ${wordsBySeq.get(seq) ?? ev.type}` : seq === 0 ? "The start, before any event" : "";
  if (!replay) return;
  const r = replay.stateAt(seq);
  if (isSession) {
    const state = r.state;
    const badge = $("#session-status");
    badge.hidden = false;
    badge.textContent = `${STATUS_WORD[state.status] ?? state.status} · cursor ${state.cursor.step} · ${state.questions.length} question${state.questions.length === 1 ? "" : "s"}`;
    showQuestions(state);
    if (!frames) { $("#canvas").textContent = "Open this replay from the teacher console to see the lesson frames."; return; }
    renderCanvas($("#canvas"), frames.frame(state.cursor.step), { step: state.cursor.step, annotations: state.annotations, label: `Session at event ${seq}` });
  } else {
    renderCanvas($("#canvas"), r, { step: r.seq, label: `Run at event ${r.seq}` });
  }
}

let debounce = null;
$("#seq").addEventListener("input", () => {
  $("#seq-out").textContent = $("#seq").value;
  clearTimeout(debounce);
  debounce = setTimeout(() => show(Number($("#seq").value)), 60);
});
$("#prev").addEventListener("click", () => show(Number($("#seq").value) - 1));
$("#next").addEventListener("click", () => show(Number($("#seq").value) + 1));
let timer = null;
$("#play").addEventListener("click", () => {
  const b = $("#play");
  if (timer) { clearInterval(timer); timer = null; b.textContent = "Play"; b.setAttribute("aria-pressed", "false"); return; }
  if (Number($("#seq").value) >= Number($("#seq").max)) show(0);
  b.textContent = "Pause";
  b.setAttribute("aria-pressed", "true");
  timer = setInterval(() => {
    const n = Number($("#seq").value) + 1;
    if (n > Number($("#seq").max)) { b.click(); return; }
    show(n);
  }, 700);
});
$("#time-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const v = $("#at").value;
  if (!v || !runId) return;
  try {
    const r = await api(`/v1/runs/${encodeURIComponent(runId)}/state?at=${encodeURIComponent(new Date(v).toISOString())}`);
    show(r.seq);
  } catch (e) {
    say($("#status"), describeError(e), "error");
  }
});
// One box: a join code, a session id or a run id.
$("#load-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const text = $("#run").value.trim();
  if (!text) return;
  const code = text.replace(/[\s-]/g, "").toUpperCase();
  const known = mine?.sessions.find((s) => s.join_code === code || s.session_id === text || s.run_id === text);
  if (known) { location.href = sessionHref(known); return; }
  if (code.length <= 8) {
    // A code of a class still open (an ended one is found in "my past sessions").
    try {
      const { session_id } = await api(`/v1/join/${encodeURIComponent(code)}`);
      location.search = new URLSearchParams({ session: session_id }).toString();
    } catch (e) {
      say($("#status"), e.status === 404 ? `No class with the code ${code}: it may have ended before you joined it, or the code is mistyped.` : describeError(e), "error");
    }
    return;
  }
  location.search = new URLSearchParams({ run: text }).toString();
});

let minePromise = null;
shell({ onAuth: () => { minePromise = loadMine(); } });
load();
