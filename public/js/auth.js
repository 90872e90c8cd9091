// Development sign-in: pick a user, an org and roles; the API mints a token
// (POST /v1/dev/tokens, development only). Outside development that endpoint
// answers 404 and the picker is hidden; a token can still be pasted.

import { api, claims, setToken, describeError } from "./api.js?v=f3c5674699";

const ROLES = ["author", "teacher", "reviewer", "learner", "governor"];
const PRESETS = [
  ["ada", "author", "Ada"],
  ["tom", "teacher", "Tom"],
  ["lea", "learner", "Lea"],
  ["rex", "reviewer", "Rex"],
  ["gil", "governor", "Gil"],
];

let devProbe = null;
/** Whether POST /v1/dev/tokens exists here (a 404 means: not development). */
export function devTokensAvailable() {
  if (!devProbe) {
    devProbe = fetch("/v1/dev/tokens", { method: "POST", headers: { "content-type": "application/json" }, body: "{}" })
      .then((r) => r.status !== 404)
      .catch(() => false);
  }
  return devProbe;
}

/** Ask for a development token and store it. */
export async function devSignIn(sub, org, roles, display_name) {
  const body = { sub, org, roles };
  if (display_name) body.display_name = display_name;
  const r = await api("/v1/dev/tokens", { method: "POST", body, auth: false });
  setToken(r.token);
  return r.token;
}

function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v === true) e.setAttribute(k, "");
    else if (v !== false && v != null) e.setAttribute(k, v);
  }
  e.append(...kids);
  return e;
}

/** The identity badge and sign-in panel, in the page header. */
export function mountSignIn(container) {
  const render = async () => {
    const c = claims();
    const details = el("details", { class: "signin", "data-testid": "signin" });
    const summary = el("summary", {}, c ? `${c.sub} · ${c.org} · ${c.roles.join(", ") || "no roles"}` : "Sign in");
    summary.setAttribute("data-testid", "whoami");
    details.append(summary);
    const panel = el("div", { class: "signin-panel" });
    details.append(panel);
    const msg = el("p", { class: "status", role: "status", "aria-live": "polite" });

    const dev = await devTokensAvailable();
    if (dev) {
      const form = el("form", { class: "stack", "data-testid": "dev-signin" });
      const user = el("input", { id: "si-user", name: "user", required: true, value: c?.sub || "tom", autocomplete: "username", pattern: "[A-Za-z0-9._\\-]{1,64}" });
      const org = el("input", { id: "si-org", name: "org", required: true, value: c?.org || "demo", pattern: "[A-Za-z0-9._\\-]{1,64}" });
      const roles = el("fieldset", { class: "roles" }, el("legend", {}, "Roles"));
      for (const r of ROLES) {
        const box = el("input", { type: "checkbox", name: "role", value: r, id: `si-role-${r}` });
        box.checked = c ? c.roles.includes(r) : r === "teacher";
        roles.append(el("label", { for: `si-role-${r}`, class: "check" }, box, ` ${r}`));
      }
      const presets = el("div", { class: "presets", role: "group", "aria-label": "Demo users" });
      for (const [sub, role, name] of PRESETS) {
        presets.append(el("button", {
          type: "button", class: "chip",
          onclick: () => {
            user.value = sub;
            for (const b of roles.querySelectorAll("input")) b.checked = b.value === role;
          },
        }, `${name} (${role})`));
      }
      form.append(
        el("p", { class: "hint" }, "Development sign-in: the server mints a token for any user, org and roles."),
        presets,
        el("label", { for: "si-user" }, "User id"), user,
        el("label", { for: "si-org" }, "Org"), org,
        roles,
        el("button", { type: "submit", class: "primary" }, "Get token"),
      );
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        const picked = [...roles.querySelectorAll("input:checked")].map((b) => b.value);
        try {
          await devSignIn(user.value.trim(), org.value.trim(), picked);
          details.open = false;
        } catch (e) {
          msg.textContent = describeError(e);
        }
      });
      panel.append(form);
    }
    const paste = el("form", { class: "stack paste-token" });
    const tok = el("input", { id: "si-token", name: "token", placeholder: "eyJ…", autocomplete: "off" });
    paste.append(el("label", { for: "si-token" }, "Or paste a token"), tok, el("button", { type: "submit" }, "Use token"));
    paste.addEventListener("submit", (ev) => {
      ev.preventDefault();
      if (claims(tok.value.trim())) setToken(tok.value.trim());
      else msg.textContent = "That is not a valid, unexpired token.";
    });
    panel.append(paste, msg);
    if (c) panel.append(el("button", { type: "button", class: "link", "data-testid": "signout", onclick: () => setToken("") }, "Sign out"));
    container.replaceChildren(details);
  };
  render();
  window.addEventListener("dropple:auth", render);
}
