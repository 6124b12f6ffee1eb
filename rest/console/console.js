// The back-office console: a client of the public REST API only (`/api/...`), the server stays
// the judge of every right. The access token lives in this module's memory; the refresh token
// in sessionStorage (this origin only, gone with the tab), so a reload does not log out.

const state = { access: null, role: null };
const main = () => document.getElementById("main");

function notice(text) {
  document.getElementById("notice").textContent = text || "";
}

/** Calls the API; refreshes the access token once on TOKEN_EXPIRED. */
async function api(method, path, body, retried) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (state.access) headers.Authorization = `Bearer ${state.access}`;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({ success: false, code: "BAD_ANSWER" }));
  if (!retried && answer.code === "TOKEN_EXPIRED" && (await refresh())) {
    return api(method, path, body, true);
  }
  if (answer.code === "SESSION_REVOKED" || answer.code === "TOKEN_INVALID") {
    ended("Your session ended; log in again.");
  }
  return answer;
}

async function refresh() {
  const token = sessionStorage.getItem("refresh");
  if (!token) return false;
  const answer = await fetch("/api/auth/refresh", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ refresh_token: token }),
  }).then((r) => r.json());
  if (!answer.success) return false;
  signedIn(answer.data);
  return true;
}

function signedIn(tokens) {
  state.access = tokens.access_token;
  state.role = tokens.role;
  sessionStorage.setItem("refresh", tokens.refresh_token);
  document.getElementById("nav").hidden = false;
  document.getElementById("logout").hidden = false;
  document.getElementById("who").textContent = tokens.role;
}

function ended(text) {
  state.access = null;
  sessionStorage.removeItem("refresh");
  document.getElementById("nav").hidden = true;
  document.getElementById("logout").hidden = true;
  document.getElementById("who").textContent = "";
  location.hash = "#/login";
  notice(text);
}

/** Shows an answer's field errors beside their fields, and its message otherwise. */
function showErrors(form, answer) {
  form.querySelectorAll(".field-error").forEach((e) => (e.textContent = ""));
  const unplaced = [];
  for (const error of answer.errors || []) {
    const slot = form.querySelector(`.field-error[data-for="${error.field}"]`);
    if (slot) slot.textContent = error.message;
    else unplaced.push(`${error.field}: ${error.message}`);
  }
  notice([answer.message, ...unplaced].filter(Boolean).join(" — "));
}

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  for (const child of children) node.append(child);
  return node;
}

function field(label, name, type = "text") {
  return element(
    "label",
    {},
    label,
    " ",
    element("input", { name, type, autocomplete: "off" }),
    element("span", { class: "field-error", "data-for": name }),
  );
}

function loginScreen() {
  const form = element(
    "form",
    { class: "card", id: "login" },
    element("h1", {}, "Log in"),
    field("Username", "username"),
    field("Password", "password", "password"),
    field("Authenticator code", "totp_code"),
    element("button", { type: "submit" }, "Log in"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    if (!data.totp_code) delete data.totp_code;
    const answer = await api("POST", "/api/auth/login", data);
    if (!answer.success) return showErrors(form, answer);
    signedIn(answer.data);
    notice("");
    location.hash = "#/players";
  });
  main().replaceChildren(form);
  form.querySelector("input").focus();
}

async function playersScreen() {
  const form = element(
    "form",
    { class: "card", id: "player-search" },
    element("h1", {}, "Players"),
    field("Username starts with", "username"),
    field("Email", "email"),
    element("button", { type: "submit" }, "Search"),
  );
  const table = element("table", { id: "players" });
  const more = element("button", { type: "button", hidden: "" }, "More");
  let cursor = null;
  let query = "";
  async function load(append) {
    const path = `/api/admin/players?${query}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
    const answer = await api("GET", path);
    if (!answer.success) return showErrors(form, answer);
    if (!append) {
      table.replaceChildren(
        element("tr", {}, ...["Id", "Username", "Status", "Email", "Created"].map((h) => element("th", {}, h))),
      );
    }
    for (const p of answer.data.items) {
      table.append(
        element(
          "tr",
          {},
          element("td", {}, String(p.id)),
          element("td", {}, p.username),
          element("td", {}, p.status),
          element("td", {}, p.email || ""),
          element("td", {}, p.created_at),
        ),
      );
    }
    cursor = answer.data.next_cursor;
    more.hidden = !cursor;
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    query = new URLSearchParams(Object.entries(data).filter(([, v]) => v)).toString();
    cursor = null;
    load(false);
  });
  more.addEventListener("click", () => load(true));
  main().replaceChildren(form, table, more);
  await load(false);
}

const screens = { "#/login": loginScreen, "#/players": playersScreen };

async function show() {
  if (!state.access && location.hash !== "#/login" && !(await refresh())) {
    location.hash = "#/login";
    return;
  }
  const screen = screens[location.hash] || (state.access ? playersScreen : loginScreen);
  await screen();
}

document.getElementById("logout").addEventListener("click", async () => {
  await api("POST", "/api/auth/logout", {});
  ended("Logged out.");
});
window.addEventListener("hashchange", show);
show();

