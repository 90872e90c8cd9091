import { api, describeError, getToken } from "./api.js?v=f3c5674699";
import { shell, $, $$, say } from "./ui.js?v=832f5b707d";

shell({
  onAuth(c) {
    for (const card of $$("[data-role]")) card.hidden = !!c && !c.roles.includes(card.dataset.role);
  },
});

$("#join-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const code = $("#join-code").value.trim().toUpperCase().replace(/[^A-Z0-9]/g, "");
  const status = $("#join-status");
  if (!getToken()) {
    say(status, "Sign in first (top right), then join.", "warn");
    return;
  }
  say(status, "Looking up the session…");
  try {
    await api(`/v1/join/${encodeURIComponent(code)}`);
    location.href = `/learn?code=${encodeURIComponent(code)}`;
  } catch (e) {
    say(status, e.status === 404 ? "No open session has that code." : describeError(e), "error");
  }
});
