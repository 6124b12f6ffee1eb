// The four-eyes queue of adjustments and the withdrawals queue: what waits for a decision,
// and the decision (approval with TOTP step-up; a withdrawal's approval or rejection with a
// reason).

import { role } from "./api.js";
import { el, field, load, money, notice, pagedTable } from "./ui.js";

export function adjustments(main) {
  const again = () => adjustments(main);
  const approve = async (a) => {
    const totp_code = document.querySelector("input[name=approve_totp]").value;
    const done = await load("POST", `/api/admin/adjustments/${a.id}/approve`, { totp_code });
    if (done) {
      await again();
      notice(`Adjustment #${done.id} applied: balance ${money(done.balance_after, done.currency)}.`);
    }
  };
  main.replaceChildren(
    el("h2", {}, "Adjustments waiting for a second admin"),
    el("p", {}, "New adjustments are made from a player's page. One above the approval threshold waits here; the admin who requested it cannot approve it."),
    role() === "admin" ? field("Your authenticator code (to approve)", "approve_totp") : null,
    pagedTable(
      [
        ["Id", (a) => String(a.id)],
        ["Player", (a) => el("a", { href: `#/players/${a.player_id}` }, String(a.player_id))],
        ["Change", (a) => money(a.delta, a.currency), { money: true }],
        ["Reason", (a) => a.reason],
        ["Requested by", (a) => String(a.requested_by)],
        ["", (a) => (role() === "admin" ? el("button", { type: "button", "data-approve": a.id, onclick: () => approve(a) }, "Approve") : null)],
      ],
      "/api/admin/adjustments?state=pending_approval",
      { id: "adjustment-queue" },
    ),
  );
}

export function withdrawals(main) {
  const again = () => withdrawals(main);
  const decide = async (w, verdict) => {
    const reason = document.querySelector("input[name=decision_reason]").value;
    const done = await load("POST", `/api/admin/withdrawals/${w.id}/${verdict}`, { reason });
    if (done) {
      await again();
      notice(`Withdrawal #${w.id} ${done.state}.`);
    }
  };
  main.replaceChildren(
    el("h2", {}, "Withdrawals waiting for a decision"),
    field("Reason (kept in the audit log)", "decision_reason"),
    pagedTable(
      [
        ["Id", (w) => String(w.id)],
        ["Player", (w) => el("a", { href: `#/players/${w.player_id}` }, String(w.player_id))],
        ["Amount", (w) => money(w.amount, w.currency), { money: true }],
        ["Requested", (w) => w.created_at],
        ["", (w) => el("span", {}, el("button", { type: "button", onclick: () => decide(w, "approve") }, "Approve"), " ", el("button", { type: "button", onclick: () => decide(w, "reject") }, "Reject"))],
      ],
      "/api/admin/withdrawals?state=pending",
      { id: "withdrawal-queue" },
    ),
  );
}
