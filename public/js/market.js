// Market: search and browse public listings with their trust signals, a
// listing's detail with reviews (learners write one), and the decision queue
// for reviewers and governors. The UI only mirrors who may do what; the API
// decides (an illegal transition answers 409 and is shown as such).

import { api, claims, describeError } from "./api.js?v=f3c5674699";
import { shell, $, h, say, params, fmtPct } from "./ui.js?v=f44cea9744";

const arr = (r, ...keys) => (Array.isArray(r) ? r : keys.map((k) => r?.[k]).find(Array.isArray) || []);
const idOf = (l) => l.listing_id ?? l.id;

// Human words for the API's identifiers (the API keeps the identifiers).
const DECISION_LABEL = {
  approve: "Approve", reject: "Reject", start_review: "Start review", publish: "Publish",
  suspend: "Suspend", reinstate: "Reinstate", resubmit: "Resubmit",
};
const DECIDED = {
  approve: "approved", reject: "rejected", start_review: "review started", publish: "published",
  suspend: "suspended", reinstate: "reinstated", resubmit: "resubmitted",
};
const STATUS_LABEL = {
  submitted: "Submitted", in_review: "In review", approved: "Approved", rejected: "Rejected",
  published: "Published", suspended: "Suspended",
};
const statusLabel = (s) => STATUS_LABEL[s] || s;
const decisionLabel = (d) => DECISION_LABEL[d] || d.replace(/_/g, " ");

function stars(avg, count) {
  if (!count || typeof avg !== "number") return "no ratings";
  const full = Math.round(avg);
  return `${"★".repeat(full)}${"☆".repeat(Math.max(0, 5 - full))} ${avg.toFixed(1)}`;
}

// One component for cards and the detail: a signal shows only when the
// answer carries it, so a card (a search hit) never contradicts the detail.
function signals(l) {
  const item = (label, value, testid) => h("div", {}, h("dt", {}, label), h("dd", { "data-testid": testid }, value));
  const count = l.rating_count ?? 0;
  const rated = count > 0 && typeof l.rating_avg === "number";
  return h("dl", { class: "signals" },
    item("Rating", h("span", { class: "stars", "aria-label": rated ? `${l.rating_avg.toFixed(1)} out of 5` : "no ratings" }, stars(l.rating_avg, count)), "rating"),
    item("Reviews", String(count), "rating-count"),
    "completed_rating_count" in l ? item("By learners who finished", String(l.completed_rating_count), "completed-count") : null,
    "completion_rate" in l ? item("Completion", fmtPct(l.completion_rate), "completion") : null,
    "certificate_pass_rate" in l ? item("Cert. pass rate", fmtPct(l.certificate_pass_rate), "pass-rate") : null,
    "author_verified" in l
      ? item("Author", l.author_verified ? h("span", { class: "badge ok" }, "✔ verified") : h("span", { class: "badge" }, "unverified"), "author-verified")
      : null);
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
// The answer to the last search asked is the one shown: an older answer
// still on its way (the list the page opened with) is dropped, not drawn
// over it. The list is aria-busy while a search is on its way.
let searches = 0;
async function search(append = false) {
  const box = $("#listings");
  const mine = ++searches;
  box.setAttribute("aria-busy", "true");
  const q = new URLSearchParams();
  for (const k of ["q", "tag", "sort"]) if ($(`#${k}`).value) q.set(k, $(`#${k}`).value);
  if (append && cursor) q.set("cursor", cursor);
  try {
    const r = await api(`/v1/marketplace/listings?${q}`, { auth: false });
    if (mine !== searches) return;
    const items = arr(r, "listings", "items", "data");
    cursor = r?.next_cursor ?? r?.cursor ?? null;
    $("#more").hidden = !cursor;
    const cards = items.map(card);
    if (append) box.append(...cards);
    else box.replaceChildren(...(cards.length ? cards : [h("p", { class: "hint" }, "No listings match.")]));
  } catch (e) {
    if (mine === searches) box.replaceChildren(h("p", { class: "status", "data-kind": "error" }, describeError(e)));
  } finally {
    if (mine === searches) box.removeAttribute("aria-busy");
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
      h("p", { class: "row" }, h("span", { class: "badge" }, statusLabel(l.status)), h("span", { class: "badge" }, `v${l.version}`),
        l.visibility === "org" ? h("span", { class: "badge warn" }, "org only") : null),
      signals(l),
      h("p", { class: "row", style: "margin-top:.6rem" },
        h("a", { class: "button primary", href: `/learn?lesson=${encodeURIComponent(l.lesson_id)}&version=${l.version}` }, "Play this lesson")),
    );
    // Reviews from learners who finished the lesson come first (the API orders them).
    const reviews = arr(await api(`/v1/marketplace/listings/${encodeURIComponent(id)}/reviews`), "reviews");
    $("#reviews").replaceChildren(...(reviews.length
      ? reviews.map((r) => h("li", { "data-review": r.learner_id, "data-completed": r.completed ? "true" : "false" },
        h("p", { class: "row" }, h("span", { class: "stars", "aria-label": `${r.rating} out of 5` }, "★".repeat(r.rating || 0)), h("strong", {}, r.learner_id),
          r.completed
            ? h("span", { class: "badge ok", "data-testid": "review-completed" }, "✔ completed the lesson")
            : h("span", { class: "badge" }, "has not completed the lesson")),
        r.text ? h("p", {}, r.text) : null))
      : [h("li", { class: "hint" }, "No reviews yet.")]));
    const c = claims();
    const mine = !!c && reviews.some((r) => r.learner_id === c.sub);
    // Only learners review, once, and only published listings take reviews.
    $("#review-form").hidden = mine || !(c && c.roles.includes("learner") && l.status === "published");
    if (mine && $("#review-status").dataset.kind !== "ok") say($("#review-status"), "You have reviewed this lesson — thank you.", "ok");
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
    $("#review-form").hidden = true;
    $("#review-text").value = "";
    say($("#review-status"), "Thank you — your review is posted.", "ok");
    showDetail(id);
  } catch (e) {
    say($("#review-status"), e.status === 409 ? "You already reviewed this listing." : describeError(e), "error");
  }
});

// ---------------------------------------------------------------- queue

let queueLoads = 0; // as for searches: only the last load's answer is drawn
async function loadQueue(c) {
  const section = $("#queue");
  const canDecide = c && (c.roles.includes("reviewer") || c.roles.includes("governor"));
  const mine = ++queueLoads;
  section.hidden = !canDecide;
  if (!canDecide) return;
  const list = $("#queue-list");
  try {
    const r = await api("/v1/marketplace/queue");
    if (mine !== queueLoads) return;
    const items = arr(r, "listings", "items", "queue");
    $("#queue-count").textContent = items.length ? String(items.length) : "";
    list.replaceChildren(...(items.length ? items.map((l) => queueItem(l, c)) : [h("li", { class: "hint" }, "Nothing waiting for your decision.")]));
  } catch (e) {
    if (mine !== queueLoads) return;
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
    "aria-label": `${decisionLabel(d)} “${l.title || l.lesson_id}”`,
    onclick: async () => {
      try {
        const body = { decision: d };
        if (reason.value.trim()) body.reason = reason.value.trim();
        const r = await api(`/v1/marketplace/listings/${encodeURIComponent(id)}/decisions`, { method: "POST", body });
        say($("#queue-status"), `“${l.title}” is now ${statusLabel(r.status).toLowerCase()}.`, "ok");
        loadQueue(claims());
        search(false);
      } catch (e) {
        say($("#queue-status"), e.status === 409 ? `Not allowed while “${statusLabel(l.status)}”: ${e.message}` : describeError(e), "error");
      }
    },
  }, decisionLabel(d)));
  // "Approved by rex" names who decided; the author is named as the author.
  const last = l.last_decision;
  const decided = last && DECIDED[last.decision]
    ? h("span", { class: "muted", "data-testid": "decided-by" }, `${DECIDED[last.decision][0].toUpperCase()}${DECIDED[last.decision].slice(1)} by ${last.actor}`)
    : null;
  return h("li", { "data-listing": id },
    h("p", { class: "row" }, h("a", { href: `/market?listing=${encodeURIComponent(id)}` }, h("strong", {}, l.title || l.lesson_id)),
      h("span", { class: "badge", "data-testid": "queue-status-badge" }, statusLabel(l.status)), decided,
      h("span", { class: "muted" }, `${decided ? "· " : ""}author ${l.author_id ?? "?"} · version ${l.version}`)),
    h("div", { class: "row" }, h("label", { for: `reason-${id}`, class: "sr-only" }, "Reason"), reason, ...buttons));
}

shell({ onAuth: (c) => loadQueue(c) });
const listing = params().get("listing");
// On a listing's page the listing comes first; the queue follows it.
if (listing) $("#main").append($("#queue"));
if (listing) showDetail(listing);
else search(false);
