// Learner player. Three modes from the URL:
//   /learn?code=ABC234 (or ?session=ID)  follow a live session: the canvas
//       shows the frame at the teacher's cursor; ask questions; answer quiz items.
//   /learn?lesson=ID&version=V           self-paced: timeline scrubber, quiz
//       through attempts, certificate when passed; "save for offline".
//   /learn                               join form and the org's lessons.

import { api, claims, describeError, getToken } from "./api.js?v=f3c5674699";
import { ClassroomClient } from "./classroom-client.js?v=9100f94108";
import { renderCanvas } from "./canvas.js?v=cc346232db";
import { lessonFrames, gradePreview } from "./core.js?v=ce2217a5f0";
import { shell, $, h, say, params, fmtPct, onFirstControl, icon } from "./ui.js?v=f44cea9744";

/** The step at which a quiz item is asked: its `step`, else the lesson's end. */
const askedAt = (q, steps) => (Number.isInteger(q.step) ? Math.min(q.step, steps) : steps);
const choicesOf = (q) => (Array.isArray(q.choices) ? q.choices : Array.from({ length: q.choices || 0 }, (_, i) => `Choice ${i + 1}`));

const frames = new Map();
const frameUrl = (lesson, version, step) =>
  `/v1/lessons/${encodeURIComponent(lesson)}/versions/${version}/frames/${step}`;
async function frame(lesson, version, step) {
  const key = `${lesson}/${version}/${step}`;
  if (!frames.has(key)) {
    const p = api(frameUrl(lesson, version, step));
    frames.set(key, p);
    p.catch(() => frames.delete(key));
  }
  return frames.get(key);
}

// ------------------------------------------------------------------ chooser

async function startChooser() {
  $("#chooser").hidden = false;
  $("#join-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const code = $("#code").value.trim().toUpperCase().replace(/[^A-Z0-9]/g, "");
    location.href = `/learn?code=${encodeURIComponent(code)}`;
  });
  const list = $("#lesson-list");
  try {
    const { lessons } = await api("/v1/lessons");
    list.replaceChildren(...lessons.map((l) => h("li", {},
      h("a", { href: `/learn?lesson=${encodeURIComponent(l.lesson_id)}&version=${l.latest_version}` }, l.title),
      h("span", { class: "muted" }, ` · v${l.latest_version} · ${l.step_count} steps`))));
    if (!lessons.length) list.replaceChildren(h("li", { class: "hint" }, "No lessons in your org yet."));
  } catch (e) {
    list.replaceChildren(h("li", { class: "hint" }, describeError(e)));
  }
}

// ------------------------------------------------------------------ live

const CONN_TEXT = {
  connecting: "connecting", waiting: "waiting for the teacher", live: "live", paused: "paused by teacher",
  reconnecting: "reconnecting", ended: "ended", failed: "cannot join",
};

async function startLive(code, sessionId) {
  $("#live").hidden = false;
  $("#live-canvas").dataset.testid = "canvas";
  $("#live-step").dataset.testid = "step";
  const err = $("#last-error");
  let lesson = null;
  let version = null;
  let artifact = null;
  let local = null;
  if (code) {
    try {
      const j = await api(`/v1/join/${encodeURIComponent(code.toUpperCase())}`);
      sessionId = j.session_id;
      lesson = j.lesson_id ?? null;
      version = j.version ?? null;
    } catch (e) {
      say(err, e.status === 404 ? "No open session has that code. Check it and try again." : describeError(e), "error");
      setConn("failed");
      return;
    }
  }
  const me = claims()?.sub;
  let frameReq = 0;
  let reached = 0; // the furthest step the teacher has shown: questions up to it are open
  const feedback = {}; // question id → {correct, answer}, from `quiz_feedback`
  const shown = new Set();

  const loadArtifact = async () => {
    if (artifact || !lesson) return;
    try {
      artifact = await api(`/v1/lessons/${encodeURIComponent(lesson)}/versions/${version}`);
      local = lessonFrames(artifact); // from now on frames are folded here
      $("#live-title").textContent = artifact.title;
      $("#live-steps").textContent = String(artifact.timeline?.length ?? "?");
      if (client.state) renderQuiz(client.state);
    } catch { /* quiz and title are extras; the canvas still follows */ }
  };

  const render = async (state) => {
    const step = state.cursor?.step ?? 0;
    reached = Math.max(reached, step);
    $("#live-step").textContent = String(step);
    renderQuestions(state);
    renderQuiz(state);
    if (!lesson) return;
    const req = ++frameReq;
    try {
      const data = local ? local.frame(step) : await frame(lesson, version, step);
      if (req !== frameReq) return;
      renderCanvas($("#live-canvas"), data, { step, annotations: state.annotations, pointer: state.cursor, label: "Teacher's canvas", titleSlide: { subtitle: artifact?.title } });
    } catch (e) {
      if (req === frameReq) say(err, describeError(e), "error");
    }
  };

  function setConn(st, detail) {
    const el = $("#conn-state");
    el.dataset.state = st;
    el.textContent = CONN_TEXT[st] || st;
    const words =
      st === "paused" && detail?.reason === "teacher_disconnected" ? "The teacher's connection dropped; the lesson resumes when they are back."
      : st === "paused" ? "The teacher paused the class. Stay here: the lesson goes on when they resume."
      : st === "waiting" ? "The teacher has not started yet: the lesson appears here when they do."
      : st === "reconnecting" ? "Connection lost: reconnecting and catching up automatically."
      : st === "ended" ? "The session has ended. Thanks for joining!"
      : "";
    say($("#conn-detail"), words, st === "paused" || st === "reconnecting" ? "warn" : "info");
    $("#ask-form").querySelector("button").disabled = st === "ended" || st === "failed";
  }

  const client = new ClassroomClient({
    sessionId,
    token: getToken,
    userId: me,
    onSnapshot: (state) => {
      lesson = state.config?.lesson_id ?? lesson;
      version = state.config?.version ?? version;
      if (state.config?.step_count !== undefined) $("#live-steps").textContent = String(state.config.step_count);
      loadArtifact();
      render(state);
    },
    onEvent: (_ev, state) => render(state),
    onPresence: (n) => { $("#live-presence").textContent = String(n); },
    onQuizFeedback: (f) => {
      feedback[f.question_id] = f;
      if (client.state) renderQuiz(client.state);
    },
    onStatus: setConn,
    onError: (e) => {
      say(err, `${e.message} (${e.code})`, "error");
      err.dataset.code = e.code;
    },
  });
  window.dropple = { client };
  client.start();
  if (lesson) loadArtifact();

  $("#ask-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = $("#ask-text");
    const text = t.value.trim();
    if (!text) return;
    if (client.send({ type: "ask", text })) t.value = "";
    else say(err, "Not connected right now; try again in a moment.", "warn");
  });

  function renderQuestions(state) {
    $("#live-questions").replaceChildren(...[...state.questions].reverse().map((q) =>
      h("li", { "data-question": q.id },
        h("p", {}, h("strong", {}, q.asker_id === me ? "You" : q.asker_id), ": ", q.text),
        q.answer ? h("p", { class: "answered" }, `Teacher: ${q.answer}`) : h("p", { class: "hint" }, "Not answered yet"))));
  }

  function renderQuiz(state) {
    const box = $("#live-quiz");
    const quiz = artifact?.quiz || state.config?.quiz || [];
    if (!quiz.length) {
      box.replaceChildren(h("p", { class: "hint" }, "No quiz in this lesson."));
      return;
    }
    const steps = state.config?.step_count ?? artifact?.timeline?.length ?? 0;
    const open = quiz.filter((q) => askedAt(q, steps) <= reached || state.quiz_responses?.[q.id]?.[me] !== undefined);
    const fresh = open.filter((q) => !shown.has(q.id));
    for (const q of open) shown.add(q.id);
    const waiting = quiz.length - open.length;
    box.replaceChildren(
      ...open.map((q) => {
        const mine = state.quiz_responses?.[q.id]?.[me];
        const choices = choicesOf(q);
        const fb = feedback[q.id];
        return h("fieldset", { class: "stack quiz-item", "data-quiz": q.id },
          h("legend", {}, q.prompt || q.id),
          mine !== undefined
            ? h("div", { class: "stack" },
              h("p", {}, `You answered: ${choices[mine] ?? mine}`),
              fb ? h("p", { class: `feedback ${fb.correct ? "right" : "wrong"}`, "data-testid": "live-feedback", "data-correct": String(fb.correct) },
                icon(fb.correct ? "check" : "cross"),
                fb.correct ? " Correct!" : ` Not quite: the answer is ${choices[fb.answer] ?? fb.answer}.`)
                : h("p", { class: "hint" }, "Answer received."))
            : h("div", { class: "row" }, ...choices.map((c, i) => h("button", {
              type: "button",
              disabled: state.status === "ended",
              onclick: () => { if (!client.send({ type: "respond", question_id: q.id, choice: i })) say(err, "Not connected right now.", "warn"); },
            }, c))));
      }),
      waiting ? h("p", { class: "hint", "data-testid": "quiz-waiting" },
        open.length ? `${waiting} more question${waiting === 1 ? "" : "s"} later in the lesson.`
          : "Questions appear here when the teacher reaches them.") : "",
    );
    const unanswered = open.filter((q) => state.quiz_responses?.[q.id]?.[me] === undefined);
    if (fresh.length && state.status !== "ended") say($("#quiz-news"), `New question: ${fresh.at(-1).prompt}`, "info");
    else if (!unanswered.length) say($("#quiz-news"), "");
  }
}

// ------------------------------------------------------------------ self-paced

async function startSelf(lesson, version) {
  $("#self").hidden = false;
  $("#self-canvas").dataset.testid = "canvas";
  $("#scrub-out").dataset.testid = "step";
  const status = $("#self-status");
  let artifact;
  try {
    if (!version) version = (await api(`/v1/lessons/${encodeURIComponent(lesson)}`)).latest_version;
    artifact = await api(`/v1/lessons/${encodeURIComponent(lesson)}/versions/${version}`);
  } catch (e) {
    say(status, describeError(e), "error");
    return;
  }
  // Every frame is folded here from the artifact (the server's fold, in the
  // browser): a lesson opened once plays offline, the artifact being cached.
  const local = lessonFrames(artifact);
  onFirstControl(() => api(`/v1/lessons/${encodeURIComponent(lesson)}/versions/${version}`).catch(() => {}));
  $("#self-title").textContent = `${artifact.title} · v${version}`;
  $("#page-title").textContent = artifact.title;
  const steps = artifact.timeline.length;
  $("#self-steps").textContent = String(steps);
  const scrub = $("#scrub");
  scrub.max = String(steps);
  const quiz = renderSelfQuiz(lesson, version, artifact);
  const chapters = artifact.timeline.map((it, i) => (it.type === "chapter" ? `${i + 1}: ${it.payload.title}` : null)).filter(Boolean);
  $("#chapters").textContent = chapters.length ? `Chapters — ${chapters.join(" · ")}` : "";

  const show = (step) => {
    step = Math.max(0, Math.min(steps, step));
    scrub.value = String(step);
    $("#scrub-out").textContent = String(step);
    renderCanvas($("#self-canvas"), local.frame(step), { step, label: "Lesson canvas", titleSlide: { subtitle: artifact.title } });
    say(status, "");
    quiz.reach(step);
  };
  scrub.addEventListener("input", () => show(Number(scrub.value)));
  $("#s-prev").addEventListener("click", () => show(Number(scrub.value) - 1));
  $("#s-next").addEventListener("click", () => show(Number(scrub.value) + 1));
  let timer = null;
  const play = $("#s-play");
  play.addEventListener("click", () => {
    if (timer) { clearInterval(timer); timer = null; play.textContent = "Play"; play.setAttribute("aria-pressed", "false"); return; }
    if (Number(scrub.value) >= steps) show(0);
    play.textContent = "Pause";
    play.setAttribute("aria-pressed", "true");
    timer = setInterval(() => {
      const next = Number(scrub.value) + 1;
      if (next > steps) { play.click(); return; }
      show(next);
    }, 1200);
  });
  // Opens on the first step (a lesson's step 0 is its empty canvas), or where the link says.
  show(params().has("step") ? Number(params().get("step")) || 0 : Math.min(1, steps));

  $("#offline").addEventListener("click", async () => {
    say(status, "Saving the lesson for offline use…");
    try {
      // The artifact is all it takes: frames are folded here. Fetching it
      // again puts it in the service worker's lesson cache.
      await api(`/v1/lessons/${encodeURIComponent(lesson)}/versions/${version}`);
      say(status, `Saved: ${steps + 1} frames, folded locally from the lesson. This lesson now plays without a network.`, "ok");
    } catch (e) {
      say(status, describeError(e), "error");
    }
  });

}

// The quiz of a self-paced lesson: each question opens once the learner's
// position reaches the step it is asked at (and stays open); answers can be
// submitted once every question is open, that is, when the lesson has been
// gone through. Returns {reach(step)}.
function renderSelfQuiz(lesson, version, artifact) {
  const form = $("#quiz-form");
  const status = $("#quiz-status");
  const quiz = artifact.quiz || [];
  const steps = artifact.timeline.length;
  if (!quiz.length) {
    form.replaceChildren(h("p", { class: "hint" }, "This lesson has no quiz."));
    return { reach() {} };
  }
  const learner = claims()?.roles.includes("learner");
  const items = quiz.map((q, qi) => h("fieldset", { class: "stack quiz-item", "data-quiz": q.id, hidden: true },
    h("legend", {}, `${qi + 1}. ${q.prompt}`),
    ...q.choices.map((c, i) => h("label", { class: "check" },
      h("input", { type: "radio", name: `q-${q.id}`, value: String(i), required: true }), ` ${c}`)),
    h("p", { class: "feedback", "data-testid": "question-feedback", hidden: true })));
  const submit = h("button", { type: "submit", class: "primary", "data-testid": "submit-quiz", disabled: true }, "Submit answers");
  const gate = h("p", { class: "hint", id: "quiz-gate", "data-testid": "quiz-gate" });
  submit.setAttribute("aria-describedby", "quiz-gate");
  const retry = h("button", { type: "button", "data-testid": "retry-quiz", hidden: true }, "Try again");
  form.replaceChildren(
    ...items,
    gate,
    h("div", { class: "row" }, submit, retry),
    learner ? "" : h("p", { class: "hint" }, "Sign in with the learner role to take the quiz and earn a certificate."),
    h("p", { class: "hint" }, `Pass mark: ${fmtPct(artifact.pass_threshold)} of the questions right.`),
    h("p", { class: "hint", id: "score-preview", "data-testid": "score-preview", hidden: true }),
  );
  let reached = 0;
  let graded = false;
  const allOpen = () => quiz.every((q) => askedAt(q, steps) <= reached);
  const update = () => {
    quiz.forEach((q, i) => { items[i].hidden = askedAt(q, steps) > reached; });
    const waiting = quiz.filter((q) => askedAt(q, steps) > reached).length;
    gate.textContent = waiting === quiz.length
      ? `The ${quiz.length === 1 ? "question appears" : `${quiz.length} questions appear`} as you go through the lesson.`
      : waiting ? `${waiting} more question${waiting === 1 ? "" : "s"} later in the lesson; submit once you reach the end.`
      : graded ? "" : "All questions are open: answer them, then submit.";
    submit.disabled = !learner || !allOpen() || graded;
  };
  update();

  // The score preview runs the server's grading in the browser, and only
  // where the rules allow it: a copy with the answer key (an author's).
  // Learners never receive the key, so for them the server grades on submit.
  const picked = (q) => form.querySelector(`input[name="q-${CSS.escape(q.id)}"]:checked`);
  form.onchange = () => {
    const answers = {};
    for (const q of quiz) if (picked(q)) answers[q.id] = Number(picked(q).value);
    const g = gradePreview(quiz, answers, artifact.pass_threshold);
    const out = $("#score-preview");
    out.hidden = !g;
    if (g) out.textContent = `Preview (graded in your browser): ${fmtPct(g.score)}, ${g.passed ? "would pass" : "would not pass"}.`;
  };
  retry.onclick = () => {
    graded = false;
    retry.hidden = true;
    form.reset();
    for (const it of items) {
      it.querySelector(".feedback").hidden = true;
      for (const input of it.querySelectorAll("input")) input.disabled = false;
    }
    say(status, "");
    delete status.dataset.passed;
    update();
    items.find((it) => !it.hidden)?.querySelector("input")?.focus();
  };
  form.onsubmit = async (ev) => {
    ev.preventDefault();
    if (!allOpen()) return;
    submit.disabled = true;
    say(status, "Grading…");
    try {
      const attempt = await api("/v1/attempts", { method: "POST", body: { lesson_id: lesson, version } });
      for (const q of quiz) {
        if (picked(q)) {
          await api(`/v1/attempts/${encodeURIComponent(attempt.attempt_id)}/answers`, { method: "POST", body: { question_id: q.id, answer: Number(picked(q).value) } });
        }
      }
      const result = await api(`/v1/attempts/${encodeURIComponent(attempt.attempt_id)}/submit`, { method: "POST", body: {} });
      graded = true;
      showFeedback(result);
    } catch (e) {
      say(status, describeError(e), "error");
    } finally {
      update();
    }
  };

  function showFeedback(result) {
    const mark = result.pass_threshold ?? artifact.pass_threshold;
    const counts = typeof result.correct === "number" ? ` ${result.correct} of ${result.total} right;` : "";
    say(status, `Score ${fmtPct(result.score)} — ${result.passed ? "passed" : "not passed"}.${counts} the pass mark is ${fmtPct(mark)}.`, result.passed ? "ok" : "warn");
    status.dataset.passed = String(!!result.passed);
    for (const f of result.questions || []) {
      const i = quiz.findIndex((q) => q.id === f.question_id);
      if (i < 0) continue;
      const q = quiz[i];
      const out = items[i].querySelector(".feedback");
      const yours = f.choice == null ? "no answer" : `your answer: ${q.choices[f.choice] ?? f.choice}`;
      const key = f.answer != null && !f.correct ? `; the answer is ${q.choices[f.answer] ?? f.answer}` : "";
      out.replaceChildren(icon(f.correct ? "check" : "cross"), f.correct ? " Right" : ` Not right (${yours}${key})`);
      out.className = `feedback ${f.correct ? "right" : "wrong"}`;
      out.dataset.correct = String(f.correct);
      out.hidden = false;
      for (const input of items[i].querySelectorAll("input")) input.disabled = true;
    }
    retry.hidden = !!result.passed;
    const cert = $("#certificate");
    if (result.certificate_id) {
      cert.hidden = false;
      cert.dataset.certificateId = result.certificate_id;
      cert.replaceChildren(
        h("p", { class: "row cert-earned" }, icon("cap", "icon icon-lg"), h("strong", {}, "You earned a certificate.")),
        h("p", { class: "row" },
          h("a", { class: "button primary", href: `/verify?id=${encodeURIComponent(result.certificate_id)}`, "data-testid": "certificate-link" }, "View and verify"),
          h("a", { href: `/v1/certificates/${encodeURIComponent(result.certificate_id)}` }, "Credential JSON")),
      );
    } else if (!result.passed) {
      status.append(" Look at the questions marked not right, go back over the lesson, then try again.");
    }
  }

  return {
    reach(step) {
      if (step <= reached) return;
      reached = step;
      update();
    },
  };
}

let started = false;
shell({
  onAuth(c) {
    $("#need-signin").hidden = !!c;
    if (!c && !params().get("lesson")) return;
    if (started) return;
    started = true;
    const p = params();
    if (p.get("code") || p.get("session")) startLive(p.get("code"), p.get("session"));
    else if (p.get("lesson")) startSelf(p.get("lesson"), Number(p.get("version")) || null);
    else startChooser();
  },
});
