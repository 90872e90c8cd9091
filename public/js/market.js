// Market: search and browse public listings with their trust signals, a
// listing's detail with reviews (learners write one), and the decision queue
// for reviewers and governors. The UI only mirrors who may do what; the API
// decides (an illegal transition answers 409 and is shown as such).

import { api, claims, describeError } from "./api.js?v=f3c5674699";
import { shell, $, h, say, params, fmtPct } from "./ui.js?v=832f5b707d";

const arr = (r, ...keys) => (Array.isArray(r) ? r : keys.map((k) => r?.[k]).find(Array.isArray) || []);
const idOf = (l) => l.listing_id ?? l.id;

function stars(avg) {
  if (typeof avg !== "number") return "no ratings";
  const full = Math.round(avg);
  return `${"★".repeat(full)}${"☆".repeat(Math.max(0, 5 - full))} ${avg.toFixed(1)}`;
}

function signals(l) {
  const item = (label, value, testid) => h("div", {}, h("dt", {}, label), h("dd", { "data-testid": testid }, value));
  return h("dl", { class: "signals" },
    item("Rating", h("span", { class: "stars", "aria-label": typeof l.rating_avg === "number" ? `${l.rating_avg.toFixed(1)} out of 5` : "no ratings" }, stars(l.rating_avg)), "rating"),
    item("Reviews", String(l.rating_count ?? 0), "rating-count"),
    item("Completion", fmtPct(l.completion_rate), "completion"),
    item("Cert. pass rate", fmtPct(l.certificate_pass_rate), "pass-rate"),
    item("Author", l.author_verified ? h("span", { class: "badge ok" }, "✔ verified") : h("span", { class: "badge" }, "unverified"), "author-verified"));
}

function card(l) {
  const id = idOf(l);
  return h("article", { class: "panel card", "data-listing": id },
    h("h3", {}, h("a", { href: `/market?listing=${encodeURIComponent(id)}` }, l.title || l.lesson_id)),
    l.summary ? h("p", { class: "muted" }, l.summary) : null,
    h("p", { class: "row" }, ...(l.tags || []).map((t) => h("span", { class: "badge" }, t)),
      l.price_cents ? h("span", { class: "badge warn" }, `$${(l.price_cents / 100).toFixed(2)}`) : h("span", { class: "badge ok" }, "free")),
    signals(l));
}

let cursor = null;
async function search(append = false) {
  const box = $("#listings");
  const q = new URLSearchParams();
  for (const k of ["q", "tag", "sort"]) if ($(`#${k}`).value) q.set(k, $(`#${k}`).value);
  if (append && cursor) q.set("cursor", cursor);
  try {
    const r = await api(`/v1/marketplace/listings?${q}`, { auth: false });
    const items = arr(r, "listings", "items", "data");
    cursor = r?.next_cursor ?? r?.cursor ?? null;
    $("#more").hidden = !cursor;
    const cards = items.map(card);
    if (append) box.append(...cards);
    else box.replaceChildren(...(cards.length ? cards : [h("p", { class: "hint" }, "No listings match.")]));
  } catch (e) {
    box.replaceChildren(h("p", { class: "status", "data-kind": "error" }, describeError(e)));
  }
}

$("#search").addEventListener("submit", (ev) => {
  ev.preventDefault();
  search(false);
});
$("#more").addEventListener("click", () => search(true));

async function showDetail(id) {
  $("#browse").hidden = true;
  $("#detail").hidden = false;
  const body = $("#detail-body");
  try {
    const l = await api(`/v1/marketplace/listings/${encodeURIComponent(id)}`);
    document.title = `${l.title} · Market · Dropple`;
    $("#detail-h").textContent = l.title || l.lesson_id;
    body.replaceChildren(
      l.summary ? h("p", {}, l.summary) : null,
      h("p", { class: "row" }, h("span", { class: "badge" }, `status: ${l.status}`), h("span", { class: "badge" }, `v${l.version}`),
        l.visibility === "org" ? h("span", { class: "badge warn" }, "org only") : null),
      signals(l),
      h("p", { class: "row", style: "margin-top:.6rem" },
        h("a", { class: "button primary", href: `/learn?lesson=${encodeURIComponent(l.lesson_id)}&version=${l.version}` }, "Play this lesson")),
    );
    const reviews = arr(await api(`/v1/marketplace/listings/${encodeURIComponent(id)}/reviews`), "reviews");
    $("#reviews").replaceChildren(...(reviews.length
      ? reviews.map((r) => h("li", { "data-review": r.learner_id },
        h("p", {}, h("span", { class: "stars", "aria-label": `${r.rating} out of 5` }, "★".repeat(r.rating || 0)), " ", h("strong", {}, r.learner_id),
          r.completed ? h("span", { class: "badge ok" }, "completed the lesson") : null),
        h("p", {}, r.text || "")))
      : [h("li", { class: "hint" }, "No reviews yet.")]));
    const c = claims();
    // Only learners review, and only published listings take reviews.
    $("#review-form").hidden = !(c && c.roles.includes("learner") && l.status === "published");
  } catch (e) {
    body.replaceChildren(h("p", { class: "status", "data-kind": "error" }, describeError(e)));
  }
}

$("#review-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const id = params().get("listing");
  const rating = Number(new FormData($("#review-form")).get("rating"));
  try {
    await api(`/v1/marketplace/listings/${encodeURIComponent(id)}/reviews`, { method: "POST", body: { rating, text: $("#review-text").value.trim() } });
    say($("#review-status"), "Thanks — your review is posted.", "ok");
    $("#review-text").value = "";
    showDetail(id);
  } catch (e) {
    say($("#review-status"), e.status === 409 ? "You already reviewed this listing." : describeError(e), "error");
  }
});

// ---------------------------------------------------------------- queue

async function loadQueue(c) {
  const section = $("#queue");
  const canDecide = c && (c.roles.includes("reviewer") || c.roles.includes("governor"));
  section.hidden = !canDecide;
  if (!canDecide) return;
  const list = $("#queue-list");
  try {
    const r = await api("/v1/marketplace/queue");
    const items = arr(r, "listings", "items", "queue");
    list.replaceChildren(...(items.length ? items.map((l) => queueItem(l, c)) : [h("li", { class: "hint" }, "Nothing waiting for a decision.")]));
  } catch (e) {
    list.replaceChildren();
    say($("#queue-status"), describeError(e), "error");
  }
}

function queueItem(l, c) {
  const id = idOf(l);
  const reason = h("input", { id: `reason-${id}`, placeholder: "Reason (optional)", maxlength: 1000 });
  // The server lists the decisions this person may take now (never on their own listing).
  const buttons = (l.available_decisions || []).map((d) => h("button", {
    type: "button",
    class: d === "reject" || d === "suspend" ? "danger" : d === "approve" || d === "publish" ? "primary" : "",
    "data-decision": d,
    onclick: async () => {
      try {
        const body = { decision: d };
        if (reason.value.trim()) body.reason = reason.value.trim();
        const r = await api(`/v1/marketplace/listings/${encodeURIComponent(id)}/decisions`, { method: "POST", body });
        say($("#queue-status"), `“${l.title}” is now ${r.status}.`, "ok");
        loadQueue(claims());
        search(false);
      } catch (e) {
        say($("#queue-status"), e.status === 409 ? `Not allowed from “${l.status}”: ${e.message}` : describeError(e), "error");
      }
    },
  }, d));
  return h("li", { "data-listing": id },
    h("p", {}, h("a", { href: `/market?listing=${encodeURIComponent(id)}` }, h("strong", {}, l.title || l.lesson_id)), " ",
      h("span", { class: "badge" }, l.status), h("span", { class: "muted" }, ` by ${l.author_id ?? "?"} · v${l.version}`)),
    h("div", { class: "row" }, h("label", { for: `reason-${id}`, class: "sr-only" }, "Reason"), reason, ...buttons));
}

shell({ onAuth: (c) => loadQueue(c) });
const listing = params().get("listing");
if (listing) showDetail(listing);
else search(false);
