// Author studio: build a lesson on the canvas. Every change (add, move,
// remove, connect, narration, chapter) is appended to the timeline — the
// lesson's steps — and the canvas is the fold of that timeline, the same fold
// the server uses for frames. Publish creates a lesson or a new version;
// "Record as a run" appends the steps as events of a new run (replayable);
// a published version can be submitted to the marketplace.

import { api, claims, describeError, uuid } from "./api.js?v=f3c5674699";
import { renderCanvas, svgPoint } from "./canvas.js?v=cc346232db";
import { describeItems, foldTimeline } from "./core.js?v=ce2217a5f0";
import { shell, $, $$, h, say } from "./ui.js?v=f44cea9744";

const DRAFT_KEY = "dropple.author.draft";
let timeline = [];
let quiz = [];
let tool = "select";
let selected = null;
let connectFrom = null;
let preview = null; // step being previewed, null = the end
let drag = null; // {id, dx, dy, x, y, moved, pointerId}
let published = null; // {lesson_id, version}
const canvas = $("#canvas");

// ---------------------------------------------------------------- draft

function saveDraft() {
  const draft = { timeline, quiz, title: $("#title").value, summary: $("#summary").value, tags: $("#tags").value, threshold: $("#threshold").value, base: $("#base").value };
  try { localStorage.setItem(DRAFT_KEY, JSON.stringify(draft)); } catch {}
}
function loadDraft() {
  try {
    const d = JSON.parse(localStorage.getItem(DRAFT_KEY) || "null");
    if (!d) return;
    timeline = Array.isArray(d.timeline) ? d.timeline : [];
    quiz = Array.isArray(d.quiz) ? d.quiz : [];
    $("#title").value = d.title || "";
    $("#summary").value = d.summary || "";
    $("#tags").value = d.tags || "";
    $("#threshold").value = d.threshold || "70";
  } catch {}
}
for (const id of ["title", "summary", "tags", "threshold"]) $(`#${id}`).addEventListener("input", saveDraft);

// ---------------------------------------------------------------- lessons

let lessonsLoaded = false;
async function loadLessons() {
  if (lessonsLoaded) return;
  lessonsLoaded = true;
  try {
    const { lessons } = await api("/v1/lessons");
    const me = claims()?.sub;
    const mine = lessons.filter((l) => l.author_id === me);
    $("#base").replaceChildren(h("option", { value: "" }, "A new lesson"),
      ...mine.map((l) => h("option", { value: l.lesson_id }, `New version of “${l.title}” (now v${l.latest_version})`)));
  } catch { /* a fresh org: only "new lesson" */ }
}

$("#base").addEventListener("change", async () => {
  const id = $("#base").value;
  saveDraft();
  if (!id) return;
  if (timeline.length && !confirm("Load this lesson's latest version into the studio? Your current steps are replaced.")) return;
  try {
    const meta = await api(`/v1/lessons/${encodeURIComponent(id)}`);
    const a = await api(`/v1/lessons/${encodeURIComponent(id)}/versions/${meta.latest_version}`);
    timeline = a.timeline || [];
    quiz = (a.quiz || []).filter((q) => q.answer !== undefined);
    $("#title").value = a.title || "";
    $("#summary").value = a.summary || "";
    $("#tags").value = (a.tags || []).join(", ");
    $("#threshold").value = String(Math.round((a.pass_threshold ?? 0.7) * 100));
    preview = null;
    changed();
  } catch (e) {
    say($("#canvas-status"), describeError(e), "error");
  }
});

// ---------------------------------------------------------------- timeline

function push(type, payload) {
  if (preview !== null && preview < timeline.length) {
    say($("#canvas-status"), "Back at the end of the timeline: new steps are always appended.", "info");
  }
  timeline.push({ type, payload });
  preview = null;
  changed();
}

function currentState() {
  return foldTimeline(timeline, preview ?? timeline.length);
}

function changed() {
  const n = timeline.length;
  $("#tl-count").textContent = String(n);
  const range = $("#preview");
  range.max = String(n);
  range.value = String(preview ?? n);
  $("#preview-out").textContent = `${preview ?? n} / ${n}`;
  $("#undo").disabled = n === 0;
  renderTimeline();
  renderQuiz();
  draw();
  saveDraft();
}

function renderTimeline() {
  const words = describeItems(timeline); // "Box “Leaf” added": the core's words
  $("#timeline").replaceChildren(...timeline.map((it, i) =>
    h("li", { "data-type": it.type }, h("span", { class: "n" }, `${i + 1}.`), h("span", {}, words[i]))));
}

function draw() {
  const state = currentState();
  const hadFocus = canvas.contains(document.activeElement);
  renderCanvas(canvas, state, { step: preview ?? timeline.length, selected: selected ?? connectFrom, focusable: true, label: "Lesson canvas" });
  if (hadFocus && selected) canvas.querySelector(`[data-id="${CSS.escape(selected)}"]`)?.focus();
  renderInspector(state);
}

// ---------------------------------------------------------------- edit a placed element

// The selected element's text, position and size, edited as a new step
// (element.updated: the fold merges the changed fields) or deleted
// (element.removed). The timeline stays append-only.
let inspecting = null;
function renderInspector(state) {
  const box = $("#inspector");
  const el = preview === null && selected ? state.elements[selected] : null;
  box.hidden = !el;
  if (!el) { inspecting = null; return; }
  if (inspecting === selected && box.contains(document.activeElement)) return; // do not clobber typing
  inspecting = selected;
  const hasSize = el.kind === "box" || el.kind === "image";
  $("#insp-title").textContent = `Edit ${el.kind ?? "element"} “${el.label ?? el.text ?? selected}”`;
  $("#insp-text").value = String(el.label ?? el.text ?? "");
  $("#insp-x").value = String(Math.round(el.x ?? 0));
  $("#insp-y").value = String(Math.round(el.y ?? 0));
  $("#insp-w").value = String(Math.round(el.w ?? 120));
  $("#insp-h").value = String(Math.round(el.h ?? 56));
  for (const f of $$(".insp-size")) f.hidden = !hasSize;
}

$("#inspector").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const el = foldTimeline(timeline).elements[selected];
  if (!el) return;
  const change = { id: selected };
  const textKey = el.label !== undefined || el.kind === "box" ? "label" : "text";
  const text = $("#insp-text").value.trim();
  if (text && text !== (el[textKey] ?? "")) change[textKey] = text;
  const fields = ["x", "y"].concat(el.kind === "box" || el.kind === "image" ? ["w", "h"] : []);
  for (const k of fields) {
    const v = Math.round(Number($(`#insp-${k}`).value));
    const min = k === "w" || k === "h" ? 10 : -2000;
    if (isFinite(v) && v >= min && v <= 4000 && v !== Math.round(el[k] ?? (k === "w" ? 120 : k === "h" ? 56 : 0))) change[k] = v;
  }
  if (Object.keys(change).length === 1) { say($("#canvas-status"), "Nothing changed.", "info"); return; }
  inspecting = null;
  push("element.updated", change);
  say($("#canvas-status"), "Saved as a new step.", "ok");
});
$("#insp-delete").addEventListener("click", () => {
  if (!selected) return;
  const id = selected;
  selected = null;
  push("element.removed", { id });
});

$("#preview").addEventListener("input", () => {
  const v = Number($("#preview").value);
  preview = v >= timeline.length ? null : v;
  $("#preview-out").textContent = `${v} / ${timeline.length}`;
  draw();
});

$("#undo").addEventListener("click", () => {
  timeline.pop();
  preview = null;
  selected = null;
  changed();
});
$("#clear").addEventListener("click", () => {
  if (!confirm("Remove every step and quiz question?")) return;
  timeline = [];
  quiz = [];
  selected = connectFrom = preview = null;
  published = null;
  changed();
});

// ---------------------------------------------------------------- tools

for (const b of $$("#tools [data-tool]")) {
  b.addEventListener("click", () => setTool(b.dataset.tool));
}
function setTool(t) {
  tool = t;
  connectFrom = null;
  canvas.dataset.tool = t;
  for (const b of $$("#tools [data-tool]")) b.setAttribute("aria-pressed", String(b.dataset.tool === t));
  const help = { select: "Drag elements to move them.", box: "Click to add a box.", label: "Click to add a label.", dot: "Click to add a dot.", connect: "Click two elements to connect them.", remove: "Click an element to remove it." };
  say($("#canvas-status"), help[t]);
  draw();
}

function freshId(prefix) {
  const used = new Set(timeline.filter((it) => it.payload?.id).map((it) => it.payload.id));
  let n = 1;
  while (used.has(`${prefix}${n}`)) n += 1;
  return `${prefix}${n}`;
}

function addElement(kind, x, y) {
  const text = $("#el-text").value.trim() || kind;
  const id = freshId(kind);
  if (kind === "box") push("element.added", { id, kind, x: x - 60, y: y - 28, w: 120, h: 56, label: text });
  else push("element.added", { id, kind, x, y, text });
  selected = id;
  draw();
}

function elementAt(target) {
  const g = target.closest?.("[data-id]");
  return g && g.closest(".el") ? g.dataset.id : null;
}

function onElement(id) {
  const state = foldTimeline(timeline);
  if (!state.elements[id]) return;
  if (tool === "remove") {
    push("element.removed", { id });
    if (selected === id) selected = null;
  } else if (tool === "connect") {
    if (!connectFrom) { connectFrom = id; draw(); say($("#canvas-status"), `From “${state.elements[id].label ?? state.elements[id].text ?? id}”: now click the element to connect to.`); }
    else if (connectFrom !== id) {
      push("edge.added", { id: freshId("e"), from: connectFrom, to: id });
      connectFrom = null;
      say($("#canvas-status"), ""); // the "now click…" hint has done its job
    }
  } else {
    selected = id;
    draw();
  }
}

canvas.addEventListener("pointerdown", (ev) => {
  const svg = canvas.querySelector("svg");
  if (!svg || ev.button !== 0) return;
  if (preview !== null) { preview = null; changed(); return; }
  const id = elementAt(ev.target);
  const p = svgPoint(canvas.querySelector("svg"), ev.clientX, ev.clientY);
  if (["box", "label", "dot"].includes(tool)) {
    ev.preventDefault();
    addElement(tool, p.x, p.y);
    return;
  }
  if (!id) { selected = null; connectFrom = null; draw(); return; }
  if (tool !== "select") { ev.preventDefault(); onElement(id); return; }
  const el = foldTimeline(timeline).elements[id];
  selected = id;
  drag = { id, dx: p.x - el.x, dy: p.y - el.y, x: el.x, y: el.y, moved: false, pointerId: ev.pointerId };
  canvas.setPointerCapture(ev.pointerId);
  ev.preventDefault();
  draw();
});

canvas.addEventListener("pointermove", (ev) => {
  if (!drag || ev.pointerId !== drag.pointerId) return;
  const p = svgPoint(canvas.querySelector("svg"), ev.clientX, ev.clientY);
  const x = Math.round(p.x - drag.dx);
  const y = Math.round(p.y - drag.dy);
  if (x === drag.x && y === drag.y) return;
  drag.x = x;
  drag.y = y;
  drag.moved = true;
  // Preview the move without committing a step until the pointer is released.
  const state = foldTimeline([...timeline, { type: "element.moved", payload: { id: drag.id, x, y } }]);
  renderCanvas(canvas, state, { step: timeline.length + 1, selected: drag.id, focusable: true, label: "Lesson canvas" });
});

function endDrag(ev) {
  if (!drag || ev.pointerId !== drag.pointerId) return;
  const d = drag;
  drag = null;
  try { canvas.releasePointerCapture(ev.pointerId); } catch {}
  if (d.moved) push("element.moved", { id: d.id, x: d.x, y: d.y });
  else draw();
}
canvas.addEventListener("pointerup", endDrag);
canvas.addEventListener("pointercancel", endDrag);

canvas.addEventListener("keydown", (ev) => {
  const id = elementAt(ev.target);
  if (!id) return;
  const el = foldTimeline(timeline).elements[id];
  const stepPx = ev.shiftKey ? 50 : 10;
  const moves = { ArrowLeft: [-stepPx, 0], ArrowRight: [stepPx, 0], ArrowUp: [0, -stepPx], ArrowDown: [0, stepPx] };
  if (ev.key in moves) {
    ev.preventDefault();
    selected = id;
    push("element.moved", { id, x: Math.round(el.x + moves[ev.key][0]), y: Math.round(el.y + moves[ev.key][1]) });
  } else if (ev.key === "Delete" || ev.key === "Backspace") {
    ev.preventDefault();
    selected = null;
    push("element.removed", { id });
  } else if (ev.key === "Enter" || ev.key === " ") {
    ev.preventDefault();
    onElement(id);
  }
});

$("#narration-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = $("#narration").value.trim();
  if (!text) return;
  push("narration", { text });
  $("#narration").value = "";
});
$("#chapter-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const title = $("#chapter").value.trim();
  if (!title) return;
  push("chapter", { title });
  $("#chapter").value = "";
});

// ---------------------------------------------------------------- quiz

function renderQuiz() {
  $("#quiz-list").replaceChildren(...quiz.map((q, i) => h("li", { "data-quiz": q.id },
    h("p", {}, h("strong", {}, `${i + 1}. ${q.prompt}`)),
    h("ol", {}, ...q.choices.map((c, k) => h("li", { class: k === q.answer ? "answered" : "" }, k === q.answer ? `${c} ✓` : c))),
    h("button", { type: "button", class: "link", onclick: () => { quiz.splice(i, 1); changed(); } }, "Remove question"))));
}

$("#quiz-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const prompt = $("#qz-prompt").value.trim();
  const choices = $("#qz-choices").value.split("\n").map((c) => c.trim()).filter(Boolean);
  const answer = Number($("#qz-answer").value) - 1;
  if (choices.length < 2) return say($("#canvas-status"), "A question needs at least two choices.", "warn");
  if (!(answer >= 0 && answer < choices.length)) return say($("#canvas-status"), `The correct choice must be 1 to ${choices.length}.`, "warn");
  let n = quiz.length + 1;
  while (quiz.some((q) => q.id === `q${n}`)) n += 1;
  quiz.push({ id: `q${n}`, prompt, choices, answer });
  $("#qz-prompt").value = "";
  $("#qz-choices").value = "";
  $("#qz-answer").value = "1";
  changed();
});

// ---------------------------------------------------------------- publish

function body() {
  const tags = $("#tags").value.split(",").map((t) => t.trim()).filter(Boolean);
  const t = Number($("#threshold").value);
  return {
    title: $("#title").value.trim(),
    summary: $("#summary").value.trim(),
    tags,
    timeline,
    quiz,
    pass_threshold: isFinite(t) ? Math.max(0, Math.min(100, t)) / 100 : 0.7,
  };
}

$("#publish").addEventListener("click", async () => {
  const status = $("#publish-status");
  const b = body();
  if (!b.title) { say(status, "Give the lesson a title first.", "warn"); $("#title").focus(); return; }
  if (!timeline.length) { say(status, "Add at least one step on the canvas first.", "warn"); return; }
  const base = $("#base").value;
  $("#publish").disabled = true;
  say(status, "Publishing…");
  try {
    const r = base
      ? await api(`/v1/lessons/${encodeURIComponent(base)}/versions`, { method: "POST", body: b })
      : await api("/v1/lessons", { method: "POST", body: b });
    published = { lesson_id: r.lesson_id, version: r.version, sha256: r.sha256 };
    say(status, `Published “${b.title}” version ${r.version} (${timeline.length} steps).`, "ok");
    status.dataset.lessonId = r.lesson_id;
    status.dataset.version = String(r.version);
    const box = $("#published");
    box.hidden = false;
    const q = `lesson=${encodeURIComponent(r.lesson_id)}&version=${r.version}`;
    // Only a teacher can open a live session: nobody else is offered one.
    const teacher = !!claims()?.roles.includes("teacher");
    box.replaceChildren(
      h("p", { class: "row" },
        h("a", { class: "button", href: `/learn?${q}`, "data-testid": "play-it" }, "Play it"),
        teacher ? h("a", { class: "button", href: `/teach?${q}`, "data-testid": "teach-it" }, "Teach it") : null),
    );
    $("#market-form").hidden = false;
    // Later publishes of this draft become new versions of the same lesson.
    lessonsLoaded = false;
    await loadLessons();
    $("#base").value = r.lesson_id;
    saveDraft();
  } catch (e) {
    say(status, describeError(e), "error");
  } finally {
    $("#publish").disabled = false;
  }
});

$("#record").addEventListener("click", async () => {
  const status = $("#publish-status");
  if (!timeline.length) { say(status, "Nothing to record yet.", "warn"); return; }
  $("#record").disabled = true;
  say(status, "Recording the steps as a run…");
  try {
    const { run_id } = await api("/v1/runs", { method: "POST", body: { kind: "recording" } });
    for (let i = 0; i < timeline.length; i += 100) {
      const events = timeline.slice(i, i + 100).map((it) => ({ id: uuid(), type: it.type, payload: it.payload }));
      await api(`/v1/runs/${encodeURIComponent(run_id)}/events`, { method: "POST", body: { events } });
    }
    say(status, `Recorded ${timeline.length} steps as a replayable run.`, "ok");
    $("#published").hidden = false;
    $("#published").append(h("p", {}, h("a", { href: `/replay?run=${encodeURIComponent(run_id)}` }, "Replay the recording")));
  } catch (e) {
    say(status, describeError(e), "error");
  } finally {
    $("#record").disabled = false;
  }
});

$("#market-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const status = $("#market-status");
  if (!published) return;
  const body = { lesson_id: published.lesson_id, version: published.version, visibility: $("#visibility").value };
  // The price is typed in currency units (12.50) and sent in cents (1250).
  const price = $("#price").value.trim();
  if (price !== "") {
    const units = Number(price.replace(",", "."));
    if (!(isFinite(units) && units >= 0 && units <= 10000)) { say(status, "The price is an amount such as 4.99 (or leave it empty for free).", "warn"); return; }
    body.price_cents = Math.round(units * 100);
  }
  try {
    const r = await api("/v1/marketplace/listings", { method: "POST", body });
    const id = r.listing_id ?? r.id;
    say(status, "Submitted for review — a reviewer will look at it.", "ok");
    if (id) status.append(" ", h("a", { href: `/market?listing=${encodeURIComponent(id)}` }, "See the listing"));
  } catch (e) {
    say(status, describeError(e), "error");
  }
});

loadDraft();
setTool("select");
changed();

shell({
  onAuth(c) {
    const author = !!c && c.roles.includes("author");
    $("#need-role").hidden = author;
    $("#studio").hidden = !author;
    if (author) loadLessons();
  },
});
