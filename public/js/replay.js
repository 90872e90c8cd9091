// Replay: scrub a run to any seq (or moment). The run's events are loaded
// once and folded here by the core (the server's fold in the browser: a
// canvas run like GET /v1/runs/{id}/state?at_seq=, a live session's run like
// the classroom object); a session's canvas is the lesson frame at the
// cursor, computed locally from the lesson artifact. Scrubbing asks nothing
// of the network.

import { api, describeError, getToken } from "./api.js?v=f3c5674699";
import { ClassroomClient } from "./classroom-client.js?v=93725c7ad5";
import { Replay, lessonFrames } from "./core.js?v=1506072a83";
import { renderCanvas } from "./canvas.js?v=cc346232db";
import { shell, $, h, say, params } from "./ui.js?v=f44cea9744";

shell();

let events = [];
let runId = null;
let lesson = null; // {id, version} for session runs
let isSession = false;
let replay = null; // the core's Replay over `events`
let frames = null; // lessonFrames of the session's lesson, once loaded

// A canvas run longer than this is loaded as a server checkpoint (the state
// at last − WINDOW, `GET /v1/runs/{id}/state?at_seq=`) plus the events after
// it, folded here: the last WINDOW events scrub locally without loading the
// whole run.
const WINDOW = 20_000;
let from = 0; // the first seq the scrubber reaches

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
    if (!runId && p.get("session")) {
      say(status, "Looking up the session…");
      const cfg = await sessionConfig(p.get("session"));
      runId = cfg.run_id;
      lesson = { id: cfg.lesson_id, version: cfg.version };
    }
    if (!runId) return;
    $("#run").value = runId;
    say(status, "Loading events…");
    const head = await api(`/v1/runs/${encodeURIComponent(runId)}/events?after=0&limit=1000`);
    isSession = head.events.some((e) => e.type.startsWith("session.") || e.type === "cursor.moved");
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
    if (isSession && lesson) {
      try {
        frames = lessonFrames(await api(`/v1/lessons/${encodeURIComponent(lesson.id)}/versions/${lesson.version}`));
      } catch (e) {
        say(status, `The lesson cannot be loaded: ${describeError(e)}`, "error");
      }
    }
    $("#player").hidden = false;
    $("#title").textContent = isSession ? `Session run ${runId.slice(0, 8)}…` : `Run ${runId.slice(0, 8)}…`;
    const last = events.at(-1)?.seq ?? 0;
    $("#seq").max = String(last);
    $("#seq").min = String(from);
    $("#last").textContent = String(last);
    $("#events").replaceChildren(...events.map((e) => h("li", { "data-seq": e.seq },
      h("button", { type: "button", class: "link", onclick: () => show(e.seq) }, `#${e.seq}`),
      h("span", {}, ` ${e.type} `), h("span", { class: "muted" }, `${summary(e)} · ${new Date(e.timestamp).toLocaleTimeString()}`))));
    say(status, events.length ? "" : "This run has no events yet.", "info");
    await show(Number(p.get("seq") ?? last));
  } catch (e) {
    say(status, e.status === 403 ? "Only the run's org's authors, teachers and governors can replay it." : describeError(e), "error");
  }
}

function summary(e) {
  const p = e.payload || {};
  return p.text ?? p.title ?? p.label ?? (p.step !== undefined ? `step ${p.step}` : p.id ?? "");
}

async function show(seq) {
  const last = events.at(-1)?.seq ?? from;
  seq = Math.max(from, Math.min(last, seq));
  $("#seq").value = String(seq);
  $("#seq-out").textContent = String(seq);
  const ev = events.find((e) => e.seq === seq);
  $("#seq-time").textContent = ev ? `· ${new Date(ev.timestamp).toLocaleString()}` : "";
  for (const li of $("#events").children) li.toggleAttribute("aria-current", Number(li.dataset.seq) === seq);
  if (!replay) return;
  const r = replay.stateAt(seq);
  if (isSession) {
    const state = r.state;
    const badge = $("#session-status");
    badge.hidden = false;
    badge.textContent = `${state.status} · cursor ${state.cursor.step} · ${state.questions.length} questions`;
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
$("#load-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const run = $("#run").value.trim();
  const session = $("#session").value.trim();
  const q = new URLSearchParams();
  if (run) q.set("run", run);
  else if (session) q.set("session", session);
  location.search = q.toString();
});

load();
