// Learner player. Three modes from the URL:
//   /learn?code=ABC234 (or ?session=ID)  follow a live session: the canvas
//       shows the frame at the teacher's cursor; ask questions; answer quiz items.
//   /learn?lesson=ID&version=V           self-paced: timeline scrubber, quiz
//       through attempts, certificate when passed; "save for offline".
//   /learn                               join form and the org's lessons.

import { api, claims, describeError, getToken } from "./api.js?v=f3c5674699";
import { ClassroomClient } from "./classroom-client.js?v=8d7c799209";
import { renderCanvas } from "./canvas.js?v=15e5547fca";
import { lessonFrames, gradePreview } from "./core.js?v=063f59dfaf";
import { shell, $, h, say, params, fmtPct, onFirstControl } from "./ui.js?v=832f5b707d";

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
    $("#live-step").textContent = String(step);
    renderQuestions(state);
    renderQuiz(state);
    if (!lesson) return;
    const req = ++frameReq;
    try {
      const data = local ? local.frame(step) : await frame(lesson, version, step);
      if (req !== frameReq) return;
      renderCanvas($("#live-canvas"), data, { step, annotations: state.annotations, pointer: state.cursor, label: "Teacher's canvas" });
    } catch (e) {
      if (req === frameReq) say(err, describeError(e), "error");
    }
  };

  function setConn(st, detail) {
    const el = $("#conn-state");
    el.dataset.state = st;
    el.textContent = CONN_TEXT[st] || st;
    $("#conn-detail").textContent =
      st === "paused" && detail?.reason === "teacher_disconnected" ? "The teacher's connection dropped; the lesson resumes when they are back."
      : st === "reconnecting" ? "Connection lost: reconnecting and catching up automatically."
      : st === "ended" ? "The session has ended. Thanks for joining!"
      : "";
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
    box.replaceChildren(...quiz.map((q) => {
      const mine = state.quiz_responses?.[q.id]?.[me];
      const choices = q.choices && Array.isArray(q.choices) ? q.choices : Array.from({ length: q.choices || 0 }, (_, i) => `Choice ${i + 1}`);
      return h("fieldset", { class: "stack", "data-quiz": q.id },
        h("legend", {}, q.prompt || q.id),
        mine !== undefined
          ? h("p", { class: "answered" }, `You answered: ${choices[mine] ?? mine}`)
          : h("div", { class: "row" }, ...choices.map((c, i) => h("button", {
            type: "button",
            disabled: state.status === "ended",
            onclick: () => { if (!client.send({ type: "respond", question_id: q.id, choice: i })) say(err, "Not connected right now.", "warn"); },
          }, c))));
    }));
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
  const chapters = artifact.timeline.map((it, i) => (it.type === "chapter" ? `${i + 1}: ${it.payload.title}` : null)).filter(Boolean);
  $("#chapters").textContent = chapters.length ? `Chapters — ${chapters.join(" · ")}` : "";

  const show = (step) => {
    step = Math.max(0, Math.min(steps, step));
    scrub.value = String(step);
    $("#scrub-out").textContent = String(step);
    renderCanvas($("#self-canvas"), local.frame(step), { step, label: "Lesson canvas" });
    say(status, "");
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
  show(Number(params().get("step")) || 0);

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

  renderSelfQuiz(lesson, version, artifact);
}

function renderSelfQuiz(lesson, version, artifact) {
  const form = $("#quiz-form");
  const status = $("#quiz-status");
  const quiz = artifact.quiz || [];
  if (!quiz.length) {
    form.replaceChildren(h("p", { class: "hint" }, "This lesson has no quiz."));
    return;
  }
  const learner = claims()?.roles.includes("learner");
  form.replaceChildren(
    ...quiz.map((q, qi) => h("fieldset", { class: "stack", "data-quiz": q.id },
      h("legend", {}, `${qi + 1}. ${q.prompt}`),
      ...q.choices.map((c, i) => h("label", { class: "check" },
        h("input", { type: "radio", name: `q-${q.id}`, value: String(i), required: true }), ` ${c}`)))),
    h("button", { type: "submit", class: "primary", "data-testid": "submit-quiz", disabled: !learner }, "Submit answers"),
    learner ? null : h("p", { class: "hint" }, "Sign in with the learner role to take the quiz and earn a certificate."),
    h("p", { class: "hint", id: "score-preview", "data-testid": "score-preview", hidden: true }),
  );
  // The score preview runs the server's grading in the browser, and only
  // where the rules allow it: a copy with the answer key (an author's).
  // Learners never receive the key, so for them the server grades on submit.
  form.onchange = () => {
    const answers = {};
    for (const q of quiz) {
      const picked = form.querySelector(`input[name="q-${CSS.escape(q.id)}"]:checked`);
      if (picked) answers[q.id] = Number(picked.value);
    }
    const g = gradePreview(quiz, answers, artifact.pass_threshold);
    const out = $("#score-preview");
    out.hidden = !g;
    if (g) out.textContent = `Preview (graded in your browser): ${fmtPct(g.score)}, ${g.passed ? "would pass" : "would not pass"}.`;
  };
  form.onsubmit = async (ev) => {
    ev.preventDefault();
    const btn = form.querySelector("button[type=submit]");
    btn.disabled = true;
    say(status, "Grading…");
    try {
      const attempt = await api("/v1/attempts", { method: "POST", body: { lesson_id: lesson, version } });
      for (const q of quiz) {
        const picked = form.querySelector(`input[name="q-${CSS.escape(q.id)}"]:checked`);
        if (picked) {
          await api(`/v1/attempts/${encodeURIComponent(attempt.attempt_id)}/answers`, { method: "POST", body: { question_id: q.id, answer: Number(picked.value) } });
        }
      }
      const result = await api(`/v1/attempts/${encodeURIComponent(attempt.attempt_id)}/submit`, { method: "POST", body: {} });
      say(status, `Score ${fmtPct(result.score)} — ${result.passed ? "passed" : "not passed"}.`, result.passed ? "ok" : "warn");
      status.dataset.passed = String(!!result.passed);
      const cert = $("#certificate");
      if (result.certificate_id) {
        cert.hidden = false;
        cert.dataset.certificateId = result.certificate_id;
        cert.replaceChildren(
          h("p", {}, "🎓 You earned a certificate."),
          h("p", { class: "row" },
            h("a", { class: "button primary", href: `/verify?id=${encodeURIComponent(result.certificate_id)}`, "data-testid": "certificate-link" }, "View and verify"),
            h("a", { href: `/v1/certificates/${encodeURIComponent(result.certificate_id)}` }, "Credential JSON")),
        );
      }
    } catch (e) {
      say(status, describeError(e), "error");
    } finally {
      btn.disabled = false;
    }
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
