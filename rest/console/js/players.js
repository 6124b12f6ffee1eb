// Players: search, a player's page (wallets, limits, self-exclusion, recent ledger, logins),
// status changes and forced logout, and a new adjustment (TOTP step-up, idempotency key).

import { role } from "./api.js";
import { el, field, form, freshKey, load, money, notice, pagedTable, query, rfc3339, table } from "./ui.js";

const STATUSES = ["", "active", "suspended", "banned"];

/** The columns of the search's results. */
const COLUMNS = [
  ["Id", (p) => el("a", { href: `#/players/${p.id}` }, String(p.id))],
  ...["username", "status", "email", "created_at"].map((key) => [key.replace("_", " "), (p) => p[key]]),
];

export function players(main) {
  const results = el("div", { id: "player-results" });
  const search = form(
    "Players",
    [
      field("Username starts with", "username"),
      field("Email", "email", { type: "email" }),
      field("Status", "status", { options: STATUSES }),
      field("Created from", "created_from", { type: "datetime-local" }),
      field("Created before", "created_to", { type: "datetime-local" }),
    ],
    "Search",
    (v) => show({ ...v, created_from: rfc3339(v.created_from), created_to: rfc3339(v.created_to) }),
    { id: "player-search", role: "search" },
  );
  const show = (v) => results.replaceChildren(pagedTable(COLUMNS, `/api/admin/players?${query({ ...v, limit: 25 })}`, { id: "players" }));
  main.replaceChildren(search, results);
  show({});
}

export async function player(main, id) {
  const p = await load("GET", `/api/admin/players/${encodeURIComponent(id)}`);
  if (!p) return;
  const s = p; // the summary is flattened into the detail
  main.replaceChildren(
    el("h2", {}, `Player ${s.username} (#${s.id})`),
    el(
      "section",
      { class: "card", id: "player-summary" },
      el("p", {}, `Status: `, el("strong", { id: "player-status" }, s.status), s.status_reason ? ` — ${s.status_reason}` : ""),
      el("p", {}, `Email: ${s.email || "—"} · created ${s.created_at}`),
      el("p", {}, `Self-excluded until: ${s.self_excluded_until || "not excluded"}`),
    ),
    el("h3", {}, "Wallets"),
    table(
      [
        ["Currency", (w) => w.currency],
        ["Balance", (w) => money(w.balance, w.currency), { money: true }],
        ["Bonus", (w) => money(w.bonus, w.currency), { money: true }],
      ],
      p.wallets,
      { id: "wallets" },
    ),
    el("h3", {}, "Limits"),
    p.limits.length
      ? table(
          [
            ["Kind", (l) => l.kind],
            ["Period", (l) => l.period],
            ["Amount", (l) => money(l.amount, l.currency), { money: true }],
            ["Used", (l) => money(l.used, l.currency), { money: true }],
            ["Pending", (l) => (l.pending ? `${money(l.pending.amount, l.currency)} from ${l.pending.from}` : "")],
          ],
          p.limits,
        )
      : el("p", {}, "No limits."),
    el("h3", {}, "Recent ledger"),
    table(
      [
        ["Id", (t) => el("a", { href: `#/transactions/${t.id}` }, String(t.id))],
        ["Kind", (t) => t.kind],
        ["Outcome", (t) => t.outcome],
        ["Amount", (t) => money(t.amount, t.currency), { money: true }],
        ["Balance after", (t) => money(t.balance_after, t.currency), { money: true }],
        ["Round", (t) => t.round_id],
        ["At", (t) => t.created_at],
      ],
      p.recent_transactions,
      { id: "recent-ledger" },
    ),
    el("h3", {}, "Logins"),
    table(
      [
        ["At", (l) => l.at],
        ["Address", (l) => l.ip],
        ["2FA", (l) => (l.second_factor ? "yes" : "no")],
        ["Ended", (l) => (l.revoked_at ? `${l.revoked_at} (${l.revoked_reason || ""})` : "")],
      ],
      p.logins,
    ),
    actions(s, p.wallets),
  );
}

function actions(s, wallets) {
  const forms = [];
  if (role() === "admin" || role() === "manager") {
    forms.push(
      form(
        "Change status",
        [field("Status", "status", { options: STATUSES.slice(1), value: s.status }), field("Reason", "reason", { required: true })],
        "Change status",
        async (v, node) => {
          const done = await load("PUT", `/api/admin/players/${s.id}/status`, v, node);
          if (done) {
            notice(`Status ${done.previous} → ${done.status}; ${done.sessions_revoked} login(s) ended.`);
            document.getElementById("player-status").textContent = done.status;
          }
        },
        { id: "status-form" },
      ),
      adjustmentForm(s, wallets),
    );
  }
  forms.push(
    form(
      "Force logout",
      [field("Reason", "reason", { required: true })],
      "End every login",
      async (v, node) => {
        const done = await load("POST", `/api/admin/players/${s.id}/logout`, v, node);
        if (done) notice(`${done.sessions_revoked} login(s) ended.`);
      },
      { id: "logout-form" },
    ),
  );
  return el("div", { class: "actions" }, forms);
}

function adjustmentForm(s, wallets) {
  // One key per intended adjustment: a resubmission after a lost answer is the same request.
  let key = freshKey();
  const outcome = el("p", { id: "adjustment-outcome", role: "status" });
  const node = form(
    "New adjustment",
    [
      field("Currency", "currency", { options: wallets.map((w) => w.currency) }),
      field("Amount", "amount", { required: true }),
      field("Direction", "direction", { options: ["credit", "debit"] }),
      field("Reason", "reason", { required: true }),
      field("Your authenticator code", "totp_code", { required: true }),
    ],
    "Request adjustment",
    async (v, formNode) => {
      const done = await load("POST", `/api/admin/players/${s.id}/adjustments`, { ...v, idempotency_key: key }, formNode);
      if (!done) return;
      key = freshKey();
      outcome.textContent =
        done.state === "applied"
          ? `Applied: ${money(done.delta, done.currency)}, balance ${money(done.balance_after, done.currency)}.`
          : `Adjustment #${done.id} waits for a second admin's approval.`;
    },
    { id: "adjustment-form" },
  );
  node.append(outcome);
  return node;
}
