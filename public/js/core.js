// The server's pure core, compiled for the browser (src/browser.rs, built by
// scripts/build.sh with wasm-bindgen --target web into /core/). Every fold,
// frame, state hash and credential check of the web app runs this code;
// JavaScript only renders. The stamp on both files below is a hash of the
// Rust sources they are built from (scripts/version-assets.mjs), so a name
// never changes meaning and both are cached for a year and by the service
// worker: the core works offline after one visit.
//
// Values cross as JSON text (big integers and odd floats arrive exactly as
// the server wrote them); the helpers below parse what the pages render.

import init, * as wasm from "/core/dropple_core.js?v=f3faad27b1";

await init({ module_or_path: "/core/dropple_core_bg.wasm?v=f3faad27b1" });

export const core = wasm;

/** Frames of one lesson version, computed locally from its artifact. */
export function lessonFrames(artifact) {
  const lesson = new wasm.Lesson(JSON.stringify(artifact));
  return {
    steps: lesson.steps(),
    frame: (k) => JSON.parse(lesson.frame(k)),
    free: () => lesson.free(),
  };
}

/** A canvas fold (the studio's preview): apply items, read the state. */
export function foldTimeline(items, k = items.length) {
  const f = new wasm.CanvasFold();
  try {
    f.apply_all(JSON.stringify(items.slice(0, k)));
    return JSON.parse(f.state());
  } finally {
    f.free();
  }
}

/** The session fold of the live player: snapshot state in, events folded. */
export class SessionFold {
  constructor(snapshotState) {
    this.fold = new wasm.SessionFold(snapshotState ? JSON.stringify(snapshotState) : "");
  }
  /** True when the event was new (seq above the state's). */
  apply(event) { return this.fold.apply(JSON.stringify(event)); }
  get seq() { return this.fold.seq(); }
  state() { return JSON.parse(this.fold.state()); }
  /** The teacher's view: {learners: [{id, here, asked, answers: [{question_id, choice, correct}]}],
   *  quiz: {id: {counts, responses, answer}}}, with the answer key and the roster's learners. */
  classSummary(answerKey, present) {
    return JSON.parse(this.fold.class_summary(JSON.stringify(answerKey || {}), JSON.stringify(present || [])));
  }
  free() { this.fold.free(); }
}

/** Scrub a run: hold its events once, state at any seq. kind: canvas | session. */
export class Replay {
  constructor(kind) { this.r = new wasm.Replay(kind); }
  fromCheckpoint(cp) { this.r.from_checkpoint(JSON.stringify(cp)); }
  push(events) { return this.r.push(typeof events === "string" ? events : JSON.stringify(events)); }
  get lastSeq() { return this.r.last_seq(); }
  get firstSeq() { return this.r.first_seq(); }
  stateAt(seq) { return JSON.parse(this.r.state_at(seq)); }
  free() { this.r.free(); }
}

/** One sentence per item ({type, payload}: timeline items or event envelopes), in order. */
export function describeItems(items) {
  return JSON.parse(wasm.describe_items(typeof items === "string" ? items : JSON.stringify(items)));
}

/** A promise of {valid, checks} for a credential, with the issuer profile and status list at hand
 * (the signature is checked by the browser's Web Crypto). */
export async function verifyCredential(credential, profile, statusList, now = new Date().toISOString()) {
  const text = (v) => (v == null ? "" : typeof v === "string" ? v : JSON.stringify(v));
  return JSON.parse(await wasm.verify_credential(text(credential), text(profile), text(statusList), now));
}

/** [url, index] of a credential's status list entry, or null. */
export function statusEntry(credential) {
  return JSON.parse(wasm.status_entry(typeof credential === "string" ? credential : JSON.stringify(credential)));
}

/** A grade preview when the quiz carries its key (never for learners), else null. */
export function gradePreview(quiz, answers, passThreshold) {
  return JSON.parse(wasm.grade_preview(JSON.stringify(quiz || []), JSON.stringify(answers || {}), passThreshold ?? 0.7));
}

export const canonicalHash = (value) => wasm.canonical_hash(typeof value === "string" ? value : JSON.stringify(value));
export const canonicalize = (value) => wasm.canonicalize(typeof value === "string" ? value : JSON.stringify(value));
