// The canvas renderer, shared by every page: SVG and caption from a canvas
// state. The state itself is always folded by the core (the server's code in
// the browser: core.js, src/browser.rs), never here.
//
// State shape: {elements: {id: {kind, x, y, text?, label?, w?, h?, color?}},
//               edges: {id: {from, to, label?}}, narration: [{step, text}],
//               chapters: [{step, text}], applied}

const SVG = "http://www.w3.org/2000/svg";
export const WIDTH = 640;
export const HEIGHT = 400;

/** Normalize what the API returns (frame body, run state, raw canvas). */
export function canvasOf(data) {
  const s = data?.state && data.state.elements ? data.state : data;
  return {
    elements: s?.elements || {},
    edges: s?.edges || {},
    narration: s?.narration || [],
    chapters: s?.chapters || [],
    applied: s?.applied ?? 0,
  };
}

const num = (v, d) => (typeof v === "number" && isFinite(v) ? v : d);
const SAFE_COLOR = /^(#[0-9a-fA-F]{3,8}|[a-zA-Z]{3,20})$/;
const KIND_COLORS = { box: "#1d4ed8", dot: "#b91c1c", label: "#111827", line: "#374151" };

function node(tag, attrs = {}, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

function kindOf(el) {
  const k = String(el.kind || "box").toLowerCase();
  if (["dot", "point", "circle"].includes(k)) return "dot";
  if (["label", "text"].includes(k)) return "label";
  if (["line", "axis"].includes(k)) return "line";
  return "box";
}

/** Where edges attach: the middle of the element. */
export function anchor(el) {
  const x = num(el.x, 0);
  const y = num(el.y, 0);
  switch (kindOf(el)) {
    case "box": return [x + num(el.w, 120) / 2, y + num(el.h, 56) / 2];
    case "line": return [x + num(el.w, 200) / 2, y];
    default: return [x, y];
  }
}

/** Bounding box of an element (for the viewBox and hit tests). */
function bounds(el) {
  const x = num(el.x, 0);
  const y = num(el.y, 0);
  switch (kindOf(el)) {
    case "box": return [x, y, x + num(el.w, 120), y + num(el.h, 56)];
    case "line": return [x, y - 20, x + num(el.w, 200), y + 30];
    case "dot": return [x - 20, y - 34, x + 20, y + 12];
    default: {
      const t = String(el.text ?? el.label ?? "");
      return [x, y - 20, x + Math.max(10, t.length * 10), y + 8];
    }
  }
}

function drawElement(id, el, selected, focusable) {
  const kind = kindOf(el);
  const color = SAFE_COLOR.test(el.color || "") ? el.color : KIND_COLORS[kind];
  const text = el.label ?? el.text;
  const g = node("g", { class: `el el-${kind}${selected ? " selected" : ""}`, "data-id": id, "data-kind": el.kind ?? kind });
  if (focusable) {
    g.setAttribute("tabindex", "0");
    g.setAttribute("role", "button");
    g.setAttribute("aria-label", `${el.kind ?? kind} ${text ?? id} at ${Math.round(num(el.x, 0))}, ${Math.round(num(el.y, 0))}`);
  }
  const x = num(el.x, 0);
  const y = num(el.y, 0);
  if (kind === "box") {
    const w = num(el.w, 120);
    const hh = num(el.h, 56);
    g.append(node("rect", { x, y, width: w, height: hh, rx: 8, fill: "#eff6ff", stroke: color, "stroke-width": 2 }));
    if (text != null) g.append(node("text", { x: x + w / 2, y: y + hh / 2 + 6, "text-anchor": "middle", class: "el-text" }, String(text)));
  } else if (kind === "dot") {
    g.append(node("circle", { cx: x, cy: y, r: num(el.r, 8), fill: color }));
    if (text != null) g.append(node("text", { x, y: y - 16, "text-anchor": "middle", class: "el-text" }, String(text)));
  } else if (kind === "line") {
    const w = num(el.w, 200);
    g.append(node("line", { x1: x, y1: y, x2: x + w, y2: y, stroke: color, "stroke-width": 3, "stroke-linecap": "round" }));
    g.append(node("line", { x1: x, y1: y - 8, x2: x, y2: y + 8, stroke: color, "stroke-width": 2 }));
    g.append(node("line", { x1: x + w, y1: y - 8, x2: x + w, y2: y + 8, stroke: color, "stroke-width": 2 }));
    if (el.label != null) g.append(node("text", { x: x + w / 2, y: y + 26, "text-anchor": "middle", class: "el-text muted" }, String(el.label)));
  } else {
    g.append(node("text", { x, y, class: "el-text label", fill: color }, String(text ?? "")));
  }
  if (selected) {
    const [x1, y1, x2, y2] = bounds(el);
    g.append(node("rect", { x: x1 - 4, y: y1 - 4, width: x2 - x1 + 8, height: y2 - y1 + 8, class: "sel-box", fill: "none" }));
  }
  return g;
}

/**
 * Render `state` into `container` as an SVG figure with a caption (current
 * chapter and latest narration). Options: step (shown as data-step),
 * selected (element id), annotations (live session drawings), pointer {x,y},
 * label (accessible name prefix), focusable (elements take keyboard focus),
 * titleSlide ({subtitle?}: a step that opens a chapter shows as a title slide).
 */
export function renderCanvas(container, state, opts = {}) {
  const s = canvasOf(state);
  const els = Object.entries(s.elements);
  let [minX, minY, maxX, maxY] = [0, 0, WIDTH, HEIGHT];
  for (const [, el] of els) {
    const [a, b, c, d] = bounds(el);
    minX = Math.min(minX, a - 10); minY = Math.min(minY, b - 10);
    maxX = Math.max(maxX, c + 10); maxY = Math.max(maxY, d + 10);
  }
  const step = opts.step ?? s.applied;
  const chapter = s.chapters.at(-1)?.text;
  const narration = s.narration.at(-1)?.text;
  const svg = node("svg", {
    viewBox: `${minX} ${minY} ${maxX - minX} ${maxY - minY}`,
    class: "canvas-svg",
    role: opts.focusable ? "group" : "img",
    "data-testid": "canvas-svg",
    preserveAspectRatio: "xMidYMid meet",
  });
  const summary = `${opts.label || "Canvas"} at step ${step}: ${els.length} element${els.length === 1 ? "" : "s"}` +
    (els.length ? ` (${els.map(([, e]) => e.label ?? e.text ?? e.kind).slice(0, 12).join(", ")})` : "") +
    (chapter ? `. Chapter: ${chapter}` : "");
  svg.append(node("title", {}, summary));
  if (opts.focusable) svg.setAttribute("aria-label", summary);
  const defs = node("defs");
  const marker = node("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
  marker.append(node("path", { d: "M0,0 L10,5 L0,10 z", fill: "#6b7280" }));
  defs.append(marker);
  svg.append(defs);
  svg.append(node("rect", { x: minX, y: minY, width: maxX - minX, height: maxY - minY, class: "canvas-bg" }));
  for (const [id, e] of Object.entries(s.edges)) {
    const a = s.elements[e.from];
    const b = s.elements[e.to];
    if (!a || !b) continue;
    const [x1, y1] = anchor(a);
    const [x2, y2] = anchor(b);
    svg.append(node("line", { x1, y1, x2, y2, class: "edge", "data-id": id, "marker-end": "url(#arrow)" }));
  }
  for (const [id, el] of els) svg.append(drawElement(id, el, opts.selected === id, !!opts.focusable));
  for (const a of opts.annotations || []) {
    const pts = (a.points || []).filter((p) => Array.isArray(p) && p.length === 2);
    const color = SAFE_COLOR.test(a.color || "") ? a.color : "#d97706";
    if (pts.length > 1) svg.append(node("polyline", { points: pts.map((p) => p.join(",")).join(" "), fill: "none", stroke: color, "stroke-width": 3, class: "annotation" }));
    if (a.text) {
      const [x, y] = pts[0] || [minX + 12, maxY - 12];
      svg.append(node("text", { x, y, fill: color, class: "annotation-text" }, a.text));
    }
  }
  // A step that only opens a chapter reads as a title slide (opt-in: the
  // players; the studio and the replay show the canvas as it is).
  const titleStep = opts.titleSlide && chapter && s.chapters.at(-1).step === s.applied;
  if (titleStep) {
    const [cx, cy, w, hh] = [(minX + maxX) / 2, (minY + maxY) / 2, maxX - minX, maxY - minY];
    svg.append(node("rect", { x: minX, y: minY, width: w, height: hh, class: "title-slide" }));
    svg.append(node("text", { x: cx, y: cy - 6, "text-anchor": "middle", class: "title-slide-text" }, chapter));
    if (opts.titleSlide.subtitle) {
      svg.append(node("text", { x: cx, y: cy + 40, "text-anchor": "middle", class: "title-slide-sub" }, opts.titleSlide.subtitle));
    }
    svg.append(node("text", { x: cx, y: cy - 64, "text-anchor": "middle", class: "title-slide-kicker" }, `Chapter ${s.chapters.length}`));
  }
  if (opts.pointer && typeof opts.pointer.x === "number" && typeof opts.pointer.y === "number") {
    svg.append(node("circle", { cx: opts.pointer.x, cy: opts.pointer.y, r: 9, class: "pointer" }));
  }
  const caption = document.createElement("figcaption");
  caption.className = "canvas-caption";
  if (chapter) {
    const c = document.createElement("strong");
    c.className = "chapter";
    c.textContent = chapter;
    caption.append(c);
  }
  const n = document.createElement("span");
  n.className = "narration";
  n.setAttribute("data-testid", "narration");
  n.textContent = titleStep ? "" : narration || (els.length ? "" : "Empty canvas");
  caption.append(n);
  container.replaceChildren(svg, caption);
  container.dataset.step = String(step);
  container.dataset.elements = String(els.length);
  if (titleStep) container.dataset.title = "true";
  else delete container.dataset.title;
  return svg;
}

/** Client coordinates → canvas coordinates of `svg`. */
export function svgPoint(svg, clientX, clientY) {
  const pt = svg.createSVGPoint();
  pt.x = clientX;
  pt.y = clientY;
  const m = svg.getScreenCTM();
  if (!m) return { x: clientX, y: clientY };
  const p = pt.matrixTransform(m.inverse());
  return { x: Math.round(p.x), y: Math.round(p.y) };
}
