// Teacher console: open a session for a lesson version, show the join code,
// drive the cursor (buttons, arrow keys), pause / resume / end, see presence,
// questions (answer them) and quiz responses. The cursor shown is always the
// server's (what learners see), never a local guess.

import { api, claims, describeError, getToken } from "./api.js?v=f3c5674699";
import { ClassroomClient } from "./classroom-client.js?v=9100f94108";
import { renderCanvas } from "./canvas.js?v=cc346232db";
import { describeItems, lessonFrames } from "./core.js?v=ce2217a5f0";
import { shell, $, h, say, params, icon } from "./ui.js?v=f44cea9744";

const SAVED = "dropple.teach.sessions";
let client = null;
let session = null; // {session_id, join_code, run_id, lesson_id, version}
let artifact = null;
let localFrames = null;
let stepCount = 0;
let frameReq = 0;
const frames = new Map();
let answerKey = {}; // question id → correct choice (from `answer_key`, or the artifact when it carries it)
let roster = null; // {count, learners} of the last `roster`
let openOnContent = false; // a session just opened moves to its first step by itself
const CONN_TEXT = {
  connecting: "connecting", waiting: "waiting", live: "live", paused: "paused",
  reconnecting: "reconnecting", ended: "ended", failed: "disconnected",
};

function saved() {
  try { return JSON.parse(localStorage.getItem(SAVED) || "{}"); } catch { return {}; }
}
function remember(s) {
  const all = saved();
  all[s.session_id] = { ...all[s.session_id], ...s, at: Date.now() };
  try { localStorage.setItem(SAVED, JSON.stringify(all)); } catch {}
}

let inited = false;
async function init(c) {
  const teacher = !!c && c.roles.includes("teacher");
  $("#need-role").hidden = teacher;
  if (!teacher) {
    $("#setup").hidden = true;
    $("#console").hidden = true;
    if (client) { client.stop(); client = null; }
    return;
  }
  if (inited) return;
  inited = true;
  const sid = params().get("session");
  if (sid) {
    attach({ ...saved()[sid], session_id: sid, join_code: params().get("code") || saved()[sid]?.join_code });
  } else {
    $("#setup").hidden = false;
    loadLessons();
  }
}

async function loadLessons() {
  const sel = $("#lesson");
  const status = $("#setup-status");
  try {
    const { lessons } = await api("/v1/lessons");
    sel.replaceChildren(...lessons.map((l) => h("option", { value: l.lesson_id }, `${l.title} (v${l.latest_version}, ${l.step_count} steps)`)));
    if (!lessons.length) say(status, "Your org has no lessons yet: publish one in the author studio.", "warn");
    const want = params().get("lesson");
    if (want && lessons.some((l) => l.lesson_id === want)) sel.value = want;
    await loadVersions();
  } catch (e) {
    say(status, describeError(e), "error");
  }
  const mine = Object.values(saved()).filter((s) => Date.now() - (s.at || 0) < 12 * 3600e3).sort((a, b) => b.at - a.at)[0];
  if (mine) {
    const hint = $("#resume-hint");
    hint.hidden = false;
    hint.replaceChildren("Recently opened: ", h("a", { href: `/teach?session=${encodeURIComponent(mine.session_id)}&code=${encodeURIComponent(mine.join_code || "")}` }, `session ${mine.join_code || mine.session_id}`));
  }
}

// Only the versions of the lesson picked last are shown: an answer for a
// lesson picked before (still on its way) is dropped.
let versionLoads = 0;
async function loadVersions() {
  const mine = ++versionLoads;
  const id = $("#lesson").value;
  const vsel = $("#version");
  vsel.replaceChildren();
  if (!id) return;
  try {
    const meta = await api(`/v1/lessons/${encodeURIComponent(id)}`);
    if (mine !== versionLoads) return;
    const versions = (meta.versions || []).map((v) => (typeof v === "object" ? v : { version: v }));
    vsel.replaceChildren(...versions.map((v) => h("option", { value: v.version }, `v${v.version}${v.steps !== undefined ? ` · ${v.steps} steps` : ""}`)));
    vsel.value = String(params().get("version") || meta.latest_version || versions.at(-1)?.version);
  } catch (e) {
    if (mine === versionLoads) say($("#setup-status"), describeError(e), "error");
  }
}
$("#lesson").addEventListener("change", loadVersions);

$("#open").addEventListener("click", async () => {
  const status = $("#setup-status");
  const lesson_id = $("#lesson").value;
  const version = Number($("#version").value);
  if (!lesson_id || !version) return say(status, "Pick a lesson and a version.", "warn");
  $("#open").disabled = true;
  say(status, "Opening…");
  try {
    const r = await api("/v1/sessions", { method: "POST", body: { lesson_id, version } });
    const s = { session_id: r.session_id, join_code: r.join_code, run_id: r.run_id, lesson_id, version };
    remember(s);
    history.replaceState(null, "", `/teach?session=${encodeURIComponent(s.session_id)}&code=${encodeURIComponent(s.join_code)}`);
    $("#setup").hidden = true;
    openOnContent = true;
    attach(s);
  } catch (e) {
    say(status, e.status === 402 ? `Plan limit: ${e.message}` : describeError(e), "error");
  } finally {
    $("#open").disabled = false;
  }
});

function attach(s) {
  session = s;
  $("#console").hidden = false;
  $("#join-code").textContent = s.join_code || "——————";
  $("#join-url").textContent = s.join_code ? `${location.origin}/learn?code=${s.join_code}` : "";
  const me = claims();
  client = new ClassroomClient({
    sessionId: s.session_id,
    token: getToken,
    userId: me?.sub,
    onSnapshot: (state) => {
      movesInFlight = [];
      adoptConfig(state.config);
      render(state);
      // Learners see content from the start, not an empty canvas: a session
      // just opened goes to its first step.
      if (openOnContent && client.isTeacher && state.cursor.step === 0 && state.config.step_count > 0) client.send({ type: "cursor", step: 1 });
      openOnContent = false;
    },
    onEvent: (ev, state) => { settleMoves(ev); render(state); },
    // `presence` counts everyone, the teacher too; the roster counts learners.
    onPresence: () => {},
    onRoster: (r) => {
      roster = r;
      $("#presence").textContent = String(r.count);
      $("#presence-label").textContent = r.count === 1 ? "learner connected" : "learners connected";
      if (client?.state) renderStudents();
    },
    onAnswerKey: (answers) => {
      answerKey = answers;
      if (client?.state) { const summary = classSummary(); renderQuiz(summary); renderStudents(summary); }
    },
    onStatus: (st, detail) => {
      if (st !== "live" && st !== "paused") movesInFlight = []; // a dropped socket loses what it had not sent back
      const el = $("#conn-state");
      el.dataset.state = st;
      el.textContent = st === "paused" && detail?.reason === "teacher" ? "paused" : CONN_TEXT[st] || st;
      if (client?.state) render(client.state);
    },
    onError: (e) => { movesInFlight = []; say($("#live-status"), `${e.message} (${e.code})`, "error"); },
  }).start();
  window.dropple = { client };
}

async function adoptConfig(config) {
  if (!config) return;
  if (config.teacher_id && config.teacher_id !== claims()?.sub) {
    say($("#live-status"), "You are not this session's teacher: you can watch, not drive.", "warn");
  }
  const changed = !session.lesson_id || session.lesson_id !== config.lesson_id || Number(session.version) !== config.version;
  session = { ...session, lesson_id: config.lesson_id, version: config.version, run_id: config.run_id };
  remember(session);
  stepCount = config.step_count ?? stepCount;
  $("#replay-link").href = `/replay?run=${encodeURIComponent(config.run_id)}&lesson=${encodeURIComponent(config.lesson_id)}&version=${config.version}`;
  if (!artifact || changed) {
    try {
      artifact = await api(`/v1/lessons/${encodeURIComponent(config.lesson_id)}/versions/${config.version}`);
      localFrames?.free();
      localFrames = lessonFrames(artifact); // frames folded here, by the server's fold
      $("#lesson-title").textContent = `${artifact.title} · v${config.version}`;
      for (const q of artifact.quiz || []) if (Number.isInteger(q.answer) && !(q.id in answerKey)) answerKey[q.id] = q.answer;
      renderThumbs();
      if (client?.state) render(client.state);
    } catch (e) {
      say($("#live-status"), describeError(e), "error");
    }
  }
}

function render(state) {
  const step = state.cursor?.step ?? 0;
  const isTeacher = client?.isTeacher;
  const open = client?.open;
  const st = state.status;
  $("#step-out").textContent = `Step ${step} / ${stepCount}`;
  const canDrive = isTeacher && open && (st === "live" || st === "waiting");
  $("#first").disabled = $("#prev").disabled = !canDrive || step <= 0;
  $("#next").disabled = $("#last").disabled = !canDrive || step >= stepCount;
  $("#pause").disabled = !(isTeacher && open && st === "live");
  $("#resume").disabled = !(isTeacher && open && st === "paused");
  $("#end").disabled = !(isTeacher && open && st !== "ended");
  if (st === "ended") say($("#live-status"), "The session has ended. Its run stays replayable.", "info");
  showFrame(step, state);
  markThumb(step);
  renderQuestions(state);
  const summary = classSummary(); // one fold call per render for both panels
  renderQuiz(summary);
  renderStudents(summary);
}

// Slide thumbnails: each step's frame, folded by the core and drawn small
// when it scrolls into view; a click moves the cursor there.
let thumbObserver = null;
function renderThumbs() {
  const list = $("#thumbs");
  thumbObserver?.disconnect();
  if (!localFrames) return;
  const title = artifact?.title;
  const draw = (li) => {
    if (li.dataset.drawn) return;
    li.dataset.drawn = "1";
    const k = Number(li.dataset.step);
    try {
      const box = li.querySelector(".thumb-canvas");
      renderCanvas(box, localFrames.frame(k), { step: k, titleSlide: { subtitle: title }, label: `Step ${k}` });
      for (const el of box.querySelectorAll("[data-testid]")) el.removeAttribute("data-testid"); // the console's canvas is the one
    } catch { /* a thumbnail is an extra */ }
  };
  thumbObserver = "IntersectionObserver" in window
    ? new IntersectionObserver((entries) => { for (const e of entries) if (e.isIntersecting) draw(e.target); }, { root: list, rootMargin: "200px" })
    : null;
  const items = [];
  const words = describeItems(artifact.timeline || []); // each step in words, by the core
  for (let k = 1; k <= stepCount; k++) {
    const what = words[k - 1] ?? "";
    const li = h("li", { "data-step": k },
      h("button", { type: "button", class: "thumb", "aria-label": `Go to step ${k}: ${what}`, "data-testid": `thumb-${k}`, onclick: () => move(k) },
        h("div", { class: "thumb-canvas canvas", "aria-hidden": "true" }),
        h("span", { class: "thumb-n" }, String(k))));
    items.push(li);
  }
  list.replaceChildren(...items);
  for (const li of items) thumbObserver ? thumbObserver.observe(li) : draw(li);
  if (client?.state) markThumb(client.state.cursor.step);
}

function markThumb(step) {
  const list = $("#thumbs");
  for (const b of list.querySelectorAll("button[aria-current]")) b.removeAttribute("aria-current");
  const li = list.querySelector(`li[data-step="${step}"]`);
  const b = li?.querySelector("button");
  if (!b) return;
  b.setAttribute("aria-current", "step");
  const lb = list.getBoundingClientRect();
  const r = li.getBoundingClientRect();
  if (r.left < lb.left || r.right > lb.right) list.scrollLeft += r.left - lb.left - (lb.width - r.width) / 2;
}

// The class as the core sums it up from the session's state (who is here,
// who answered what and whether it is right, questions asked, the count of
// each choice): the teacher's answer key and the roster's learners go in.
function classSummary() {
  return client.fold.classSummary(answerKey, roster?.learners);
}

// Who is here and who answered what: the roster (connected learners) and
// everyone the session's state names (responders, askers), present or not.
function renderStudents(summary = classSummary()) {
  const { learners } = summary;
  const quiz = artifact?.quiz || [];
  const number = new Map(quiz.map((q, i) => [q.id, i]));
  const list = $("#students");
  $("#no-students").hidden = learners.length > 0;
  list.replaceChildren(...learners.map((l) => {
    const answers = l.answers.filter((a) => number.has(a.question_id)).map(({ question_id, choice, correct: right }) => {
      const i = number.get(question_id);
      return h("span", { class: `answer-chip${right === true ? " right" : right === false ? " wrong" : ""}`, "data-question": question_id },
        right === null ? "" : icon(right ? "check" : "cross"),
        ` Q${i + 1}: ${quiz[i].choices?.[choice] ?? choice}`, right === null ? "" : h("span", { class: "sr-only" }, right ? " (right)" : " (wrong)"));
    });
    return h("li", { "data-student": l.id },
      h("div", { class: "row" },
        h("strong", {}, l.id),
        h("span", { class: `badge ${l.here ? "ok" : ""}` }, l.here ? "here" : "left"),
        l.asked ? h("span", { class: "muted" }, `asked ${l.asked}`) : ""),
      answers.length ? h("div", { class: "row answers" }, ...answers) : h("p", { class: "hint" }, quiz.length ? "No answers yet" : ""));
  }));
}

async function showFrame(step, state) {
  const req = ++frameReq;
  const canvas = $("#canvas");
  if (!session?.lesson_id) return;
  const key = `${session.lesson_id}/${session.version}/${step}`;
  try {
    let data = localFrames ? localFrames.frame(step) : frames.get(key);
    if (!data) {
      data = await api(`/v1/lessons/${encodeURIComponent(session.lesson_id)}/versions/${session.version}/frames/${step}`);
      frames.set(key, data);
    }
    if (req !== frameReq) return;
    renderCanvas(canvas, data, { step, annotations: state.annotations, pointer: state.cursor, label: "Lesson canvas", titleSlide: { subtitle: artifact?.title } });
  } catch (e) {
    if (req === frameReq) say($("#live-status"), describeError(e), "error");
  }
}

// Moves sent but not yet seen back as `cursor.moved`: a key pressed before the
// last move comes back counts from where the teacher asked to be, not from the
// older confirmed step (two quick presses go two steps, never back and forth).
let movesInFlight = [];
function move(step) {
  if (!client?.state) return;
  const target = Math.max(0, Math.min(stepCount, step));
  if (target === cur()) return;
  if (client.send({ type: "cursor", step: target })) movesInFlight.push(target);
  else say($("#live-status"), "Not connected: the cursor will move once the connection is back.", "warn");
}
function settleMoves(ev) {
  if (ev?.type !== "cursor.moved") return;
  const i = movesInFlight.indexOf(ev.payload?.step);
  if (i >= 0) movesInFlight = movesInFlight.slice(i + 1);
}
const cur = () => movesInFlight.at(-1) ?? client?.state?.cursor?.step ?? 0;
$("#first").addEventListener("click", () => move(0));
$("#prev").addEventListener("click", () => move(cur() - 1));
$("#next").addEventListener("click", () => move(cur() + 1));
$("#last").addEventListener("click", () => move(stepCount));
$("#pause").addEventListener("click", () => client?.send({ type: "pause" }));
$("#resume").addEventListener("click", () => client?.send({ type: "resume" }));
$("#end").addEventListener("click", () => {
  if (confirm("End the session for everyone?")) client?.send({ type: "end" });
});

document.addEventListener("keydown", (ev) => {
  if (!client || $("#console").hidden) return;
  const t = ev.target;
  if (t.closest?.("input, textarea, select, [contenteditable]") || ev.altKey || ev.ctrlKey || ev.metaKey) return;
  const keys = { ArrowRight: 1, ArrowDown: 1, PageDown: 1, " ": 1, ArrowLeft: -1, ArrowUp: -1, PageUp: -1 };
  if (ev.key in keys) {
    if (ev.key === " " && t.closest?.("button, a")) return;
    ev.preventDefault();
    move(cur() + keys[ev.key]);
  } else if (ev.key === "Home") { ev.preventDefault(); move(0); }
  else if (ev.key === "End") { ev.preventDefault(); move(stepCount); }
});

const questionEls = new Map();
let questionsSeen = null; // ids present at the first render: older ones are not news
function renderQuestions(state) {
  const list = $("#questions");
  $("#no-questions").hidden = state.questions.length > 0;
  const unanswered = state.questions.filter((q) => !q.answer).length;
  $("#q-open").textContent = unanswered ? `${unanswered} open` : "";
  if (!questionsSeen) questionsSeen = new Set(state.questions.map((q) => q.id));
  const fresh = state.questions.filter((q) => !questionsSeen.has(q.id));
  for (const q of fresh) questionsSeen.add(q.id);
  const toast = $("#q-toast");
  if (fresh.length && client?.isTeacher) {
    const q = fresh.at(-1);
    toast.replaceChildren(icon("hand"), h("strong", {}, ` New question from ${q.asker_id}: `), q.text, " ",
      h("a", { href: "#q-h", onclick: (ev) => { ev.preventDefault(); $("#q-h").focus(); $(`#ans-${CSS.escape(q.id)}`)?.focus(); } }, "Answer it"));
    toast.dataset.kind = "warn";
    toast.hidden = false;
  } else if (!unanswered) {
    toast.hidden = true;
  }
  for (const q of state.questions) {
    let li = questionEls.get(q.id);
    if (!li) {
      const input = h("input", { id: `ans-${q.id}`, "data-testid": "answer-input", placeholder: "Your answer", maxlength: 2000 });
      const form = h("form", { class: "row", "data-testid": "answer-form" },
        h("label", { for: `ans-${q.id}`, class: "sr-only" }, "Answer"), input, h("button", { type: "submit" }, "Answer"));
      form.addEventListener("submit", (ev) => {
        ev.preventDefault();
        const text = input.value.trim();
        if (text && client?.send({ type: "answer", question_id: q.id, text })) input.value = "";
      });
      li = h("li", { "data-question": q.id },
        h("p", {}, h("strong", {}, q.asker_id), ": ", h("span", { class: "q-text" }, q.text)),
        h("p", { class: "answered" }), form);
      questionEls.set(q.id, li);
      list.prepend(li);
    }
    const a = li.querySelector(".answered");
    a.textContent = q.answer ? `Answered: ${q.answer}` : "";
    li.querySelector("form").hidden = !!q.answer || !client?.isTeacher || state.status === "ended";
  }
}

function renderQuiz(summary = classSummary()) {
  const box = $("#quiz");
  const quiz = artifact?.quiz || [];
  if (!quiz.length) {
    box.replaceChildren(h("p", { class: "hint" }, "This lesson has no quiz."));
    return;
  }
  const tally = summary.quiz;
  box.replaceChildren(...quiz.map((q) => {
    const { counts = [], responses: total = 0, answer = null } = tally[q.id] || {};
    const rows = q.choices.flatMap((choice, i) => {
      const n = counts[i] ?? 0;
      const correct = answer === i;
      return [
        h("span", { class: correct ? "correct-choice" : "", "data-correct": correct ? "true" : null },
          correct ? icon("check") : "", choice, correct ? h("span", { class: "sr-only" }, " (correct answer)") : ""),
        h("div", { class: "bar", style: `width:${total ? Math.max(2, (100 * n) / total) : 0}%`, "aria-hidden": "true" }),
        h("span", { "data-testid": `tally-${q.id}-${i}` }, String(n)),
      ];
    });
    return h("div", { class: "stack", "data-quiz": q.id }, h("h3", {}, q.prompt, h("span", { class: "muted" }, ` — ${total} response${total === 1 ? "" : "s"} · asked at step ${Number.isInteger(q.step) ? Math.min(q.step, stepCount) : stepCount}`)), h("div", { class: "tally" }, ...rows));
  }));
}

shell({ onAuth: init });
