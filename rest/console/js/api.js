// The console's only way to the server: the public REST API of this origin. The access token
// lives in this module's memory; the refresh token in sessionStorage (this origin only, gone
// with the tab), so a reload keeps the login and no other origin's script can read either.

const session = { access: null, role: null, expiresAt: 0 };
const listeners = new Set();

/** Calls `fn(session)` whenever the login starts or ends. */
export function onSession(fn) {
  listeners.add(fn);
}

function changed() {
  for (const fn of listeners) fn(session);
}

export function role() {
  return session.role;
}

export function signedIn() {
  return session.access !== null;
}

function keep(tokens) {
  session.access = tokens.access_token;
  session.role = tokens.role;
  session.expiresAt = Date.now() + tokens.expires_in * 1000;
  sessionStorage.setItem("refresh", tokens.refresh_token);
  changed();
}

/** Forgets the login; `why` is shown to the user. */
export function end(why) {
  session.access = null;
  session.role = null;
  sessionStorage.removeItem("refresh");
  changed();
  window.dispatchEvent(new CustomEvent("session-ended", { detail: why }));
}

async function send(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (session.access) headers.Authorization = `Bearer ${session.access}`;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit",
  });
  const answer = await response
    .json()
    .catch(() => ({ success: false, status: response.status, code: "BAD_ANSWER", message: "the server's answer was not JSON" }));
  answer.httpStatus = response.status;
  return answer;
}

/** Trades the stored refresh token for new tokens; false when there is none or it is refused. */
export async function refresh() {
  const token = sessionStorage.getItem("refresh");
  if (!token) return false;
  const answer = await send("POST", "/api/auth/refresh", { refresh_token: token });
  if (!answer.success) {
    sessionStorage.removeItem("refresh");
    return false;
  }
  keep(answer.data);
  return true;
}

/**
 * Calls the API: `{success, data}` or the error envelope `{success: false, code, message,
 * errors}`. An expired access token is refreshed once; a login that ended sends the user back
 * to the login screen.
 */
export async function api(method, path, body) {
  let answer = await send(method, path, body);
  if (answer.code === "TOKEN_EXPIRED" && (await refresh())) {
    answer = await send(method, path, body);
  }
  if (["SESSION_REVOKED", "TOKEN_INVALID", "TOKEN_EXPIRED"].includes(answer.code)) {
    end("Your session ended; log in again.");
  }
  return answer;
}

export async function login(fields) {
  const answer = await send("POST", "/api/auth/login", fields);
  if (answer.success) keep(answer.data);
  return answer;
}

export async function logout() {
  if (session.access) await send("POST", "/api/auth/logout");
  end("Logged out.");
}

// Refresh a little before the access token expires, so a screen left open keeps working.
setInterval(() => {
  if (session.access && session.expiresAt - Date.now() < 30_000) refresh();
}, 10_000);
