// The accessibility audit the browser scenarios run in a page (page.evaluate):
// every visible control has an accessible name, and text meets WCAG AA contrast.
// Shared by tests/web.test.mjs and tests/web-pages.test.mjs.

/** In the page: problems with labels (every visible control has a name) and text contrast (WCAG AA). */
export function auditPage() {
  const visible = (el) => {
    const r = el.getBoundingClientRect();
    const cs = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && cs.visibility !== "hidden" && !el.closest("[hidden], details:not([open]) > :not(summary)");
  };
  const problems = [];
  const nameOf = (el) => {
    if (el.getAttribute("aria-label")) return el.getAttribute("aria-label");
    const by = el.getAttribute("aria-labelledby");
    if (by) return by.split(/\s+/).map((id) => document.getElementById(id)?.textContent || "").join(" ");
    if (el.labels?.length) return [...el.labels].map((l) => l.textContent).join(" ");
    if (el.matches("button, summary, a")) return el.textContent;
    return el.getAttribute("title") || "";
  };
  for (const el of document.querySelectorAll("input:not([type=hidden]), select, textarea, button, summary, a[href]")) {
    if (!visible(el) && !el.matches("input[type=radio], input[type=checkbox]")) continue;
    if (!nameOf(el).trim()) problems.push(`no accessible name: ${el.outerHTML.slice(0, 90)}`);
  }
  const rgba = (s) => { const m = s.match(/[\d.]+/g)?.map(Number) || [0, 0, 0, 0]; return [m[0], m[1], m[2], m[3] ?? 1]; };
  const over = (top, bottom) => [0, 1, 2].map((i) => top[i] * top[3] + bottom[i] * (1 - top[3])).concat(1);
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c[3] > 0) layers.push(c);
      if (c[3] >= 1) break;
    }
    return layers.reduceRight((acc, c) => over(c, acc), [255, 255, 255, 1]);
  };
  const lum = (c) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; }; return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); };
  const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((m, n) => n - m); return (x + 0.05) / (y + 0.05); };
  let checked = 0;
  for (const el of document.querySelectorAll("body *:not(svg *):not(script):not(style):not(option)")) {
    if (![...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
    if (!visible(el) || el.closest("button:disabled, [aria-hidden=true], .sr-only") || el.matches(":disabled")) continue;
    const cs = getComputedStyle(el);
    if (Number(cs.opacity) < 1) continue;
    const bg = background(el);
    const fg = over(rgba(cs.color), bg);
    const size = parseFloat(cs.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(cs.fontWeight) >= 700);
    const r = ratio(fg, bg);
    checked++;
    if (r < (large ? 3 : 4.5)) problems.push(`contrast ${r.toFixed(2)} < ${large ? 3 : 4.5}: "${el.textContent.trim().slice(0, 40)}" (${cs.color} on rgb(${bg.slice(0, 3).map(Math.round)}))`);
  }
  return { problems, checked };
}
