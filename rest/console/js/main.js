// The console's entry: the login screen, the navigation each role sees, and the screens by
// address (`#/players/7`). The navigation only hides what a role cannot use; the API is the
// judge of every request.

import { login, logout, onSession, refresh, role, signedIn } from "./api.js";
import { el, field, form, notice, showError } from "./ui.js";
import { player, players } from "./players.js";
import { trace, transactions } from "./transactions.js";
import { providers } from "./providers.js";
import { adjustments, withdrawals } from "./queues.js";
import { reports } from "./reports.js";
import { audit, live, reconciliation } from "./ops.js";

const STAFF = ["admin", "manager", "support"];
const MANAGERS = ["admin", "manager"];

/** Screens: address, title, the roles the API lets use it, and how it is drawn. */
const SCREENS = [
  ["players", "Players", STAFF, players],
  ["adjustments", "Adjustments", MANAGERS, adjustments],
  ["transactions", "Transactions", STAFF, transactions],
  ["providers", "Providers", STAFF, providers],
  ["reports", "Reports", MANAGERS, reports],
  ["reconciliation", "Reconciliation", MANAGERS, reconciliation],
  ["withdrawals", "Withdrawals", MANAGERS, withdrawals],
  ["audit", "Audit log", ["admin"], audit],
  ["live", "Live", STAFF, live],
];

const main = document.getElementById("main");

function nav() {
  const links = SCREENS.filter(([, , roles]) => roles.includes(role())).map(([path, title]) =>
    el("a", { href: `#/${path}`, "data-screen": path }, title),
  );
  document.getElementById("nav").replaceChildren(...links);
  document.getElementById("who").textContent = role() ? `signed in as ${role()}` : "";
  document.getElementById("logout").hidden = !signedIn();
}

function loginScreen() {
  main.replaceChildren(
    form(
      "Log in",
      [
        field("Username", "username", { required: true }),
        field("Password", "password", { type: "password", required: true }),
        field("Authenticator code", "totp_code", { type: "text" }),
      ],
      "Log in",
      async (v, node) => {
        const answer = await login(v);
        if (!answer.success) return showError(node, answer);
        if (!STAFF.includes(answer.data.role)) {
          await logout();
          return notice("This console is for operator staff; players use the operator's site.", "error");
        }
        notice("");
        location.hash = "#/players";
      },
      { id: "login", class: "card narrow" },
    ),
  );
  main.querySelector("input").focus();
}

async function show() {
  const [, path = "", id] = location.hash.split("/");
  if (path === "login" || (!signedIn() && !(await refresh()))) {
    if (path !== "login") location.hash = "#/login";
    else loginScreen();
    return;
  }
  const screen = SCREENS.find(([p]) => p === path);
  if (!screen) {
    location.hash = "#/players";
    return;
  }
  document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("current", a.dataset.screen === path));
  notice("");
  main.replaceChildren(el("p", {}, "Loading…"));
  if (path === "players" && id) await player(main, id);
  else if (path === "transactions" && id) await trace(main, id);
  else await screen[3](main);
  main.focus();
}

onSession(nav);
window.addEventListener("session-ended", (event) => {
  location.hash = "#/login";
  notice(event.detail);
});
window.addEventListener("hashchange", show);
document.getElementById("logout").addEventListener("click", logout);
nav();
show();
