import { api, describeError, getToken } from "./api.js?v=f3c5674699";
import { shell, $, $$, say } from "./ui.js?v=f44cea9744";

// A code typed before signing in: the join goes on by itself once signed in.
let pending = null;

shell({
  onAuth(c) {
    for (const card of $$("[data-role]")) card.hidden = !!c && !c.roles.includes(card.dataset.role);
    if (c && pending) {
      const code = pending;
      pending = null;
      join(code);
    } else if (c) {
      say($("#join-status"), "");
    }
  },
});

async function join(code) {
  const status = $("#join-status");
  if (!getToken()) {
    pending = code;
    say(status, "Sign in first (top right): joining continues as soon as you are signed in.", "warn");
    const who = document.querySelector("[data-testid=signin]");
    if (who) who.open = true;
    return;
  }
  say(status, "Looking up the session…");
  try {
    await api(`/v1/join/${encodeURIComponent(code)}`);
    location.href = `/learn?code=${encodeURIComponent(code)}`;
  } catch (e) {
    say(status, e.status === 404 ? "No open session has that code." : describeError(e), "error");
  }
}

$("#join-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  join($("#join-code").value.trim().toUpperCase().replace(/[^A-Z0-9]/g, ""));
});
