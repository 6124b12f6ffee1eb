// Transactions: search by player (and round) or by provider and its transaction id; a
// transaction's trace (the bytes as received, the decoded command, the answer, its batch and
// timings) and its replay with a reason.

import { role } from "./api.js";
import { el, field, form, load, money, notice, pagedTable, query, table } from "./ui.js";

/** The columns of the search's results. */
const COLUMNS = [
  ["Id", (t) => el("a", { href: `#/transactions/${t.id}` }, String(t.id))],
  ["Kind", (t) => t.kind],
  ["Outcome", (t) => t.outcome],
  ["State", (t) => t.state],
  ["Provider", (t) => t.provider],
  ["Provider tx", (t) => t.provider_tx_id],
  ["Amount", (t) => money(t.amount, t.currency), { money: true }],
  ["At", (t) => t.created_at],
];

export function transactions(main) {
  const results = el("div", { id: "transaction-results" });
  const search = form(
    "Transactions",
    [
      field("Player id", "player", { type: "number" }),
      field("Round", "round"),
      field("Provider", "provider"),
      field("Provider transaction id", "provider_tx_id"),
      field("Kind", "kind", { options: ["", "bet", "win", "rollback", "deposit", "adjustment", "withdrawal"] }),
    ],
    "Search",
    async (v, node) => {
      const path = `/api/admin/transactions?${query({ ...v, limit: 50 })}`;
      // Asked once here so a bad search shows its field errors beside the form.
      if (!(await load("GET", path, undefined, node))) return;
      results.replaceChildren(pagedTable(COLUMNS, path, { id: "transactions" }));
    },
    { id: "transaction-search", role: "search" },
  );
  main.replaceChildren(search, results);
}

export async function trace(main, id) {
  const t = await load("GET", `/api/admin/transactions/${encodeURIComponent(id)}/trace`);
  if (!t) return;
  const x = t.transaction;
  const parts = [
    el("h2", {}, `Transaction #${x.id}: ${x.kind} ${money(x.amount, x.currency)}`),
    el(
      "section",
      { class: "card", id: "trace-summary" },
      el("p", {}, `Outcome ${x.outcome}${x.state ? `, state ${x.state}` : ""} · ${x.provider || "back office"} ${x.provider_tx_id || ""}`),
      el("p", {}, `Balance ${money(t.balance_before, x.currency)} → ${money(x.balance_after, x.currency)} · round ${x.round_id || "—"} · ${x.created_at}`),
    ),
    el("h3", {}, `Requests (${t.requests.length})`),
  ];
  if (!t.requests.length) parts.push(el("p", {}, "No callback was kept for this transaction (a back-office row, or tracing was off)."));
  t.requests.forEach((r, i) => parts.push(request(r, i)));
  if (role() === "admin" || role() === "manager") parts.push(replayForm(x.id));
  main.replaceChildren(...parts);
}

function request(r, i) {
  return el(
    "section",
    { class: "card request", id: `request-${i}` },
    el("h4", {}, `${r.received_at} · ${r.origin} · ${r.method} ${r.target}`),
    el("p", {}, `From ${r.peer} (caller ${r.caller_ip}) · signature ${r.signature.scheme}: ${r.signature.verified ? "verified" : "not verified"}`),
    el("details", {}, el("summary", {}, "Headers"), el("pre", {}, r.headers.join("\n"))),
    el("h5", {}, "Body as received"),
    el("pre", { class: "bytes" }, r.body ?? `(not UTF-8) base64: ${r.body_base64}`),
    el("h5", {}, "Decoded command"),
    el("pre", {}, r.decoded ?? `does not decode now: ${r.decode_error}`),
    el("h5", {}, `Answer: HTTP ${r.status} ${r.outcome} (${r.answered_by}${r.duplicate ? ", duplicate" : ""})`),
    el("pre", {}, r.answer),
    table(
      [
        ["Batch", () => (r.batch ? `lane ${r.batch.lane} #${r.batch.batch} (${r.batch.len} commands)` : "—")],
        ["Read body µs", () => String(r.timings_us.read_body)],
        ["Verify µs", () => String(r.timings_us.verify)],
        ["Queued µs", () => String(r.timings_us.queued ?? "—")],
        ["Commit µs", () => String(r.timings_us.commit ?? "—")],
        ["Total µs", () => String(r.timings_us.total)],
      ],
      [r],
      { class: "timings" },
    ),
  );
}

function replayForm(id) {
  const outcome = el("pre", { id: "replay-outcome", role: "status" });
  const node = form(
    "Replay",
    [field("Reason", "reason", { required: true })],
    "Replay through the pipeline",
    async (v, formNode) => {
      const r = await load("POST", `/api/admin/transactions/${id}/replay`, v, formNode);
      if (!r) return;
      notice(r.same_answer ? "Replayed: the same answer as the original." : "Replayed: the answer differs from the original.");
      outcome.textContent = `HTTP ${r.status} ${r.outcome} (${r.answered_by}${r.duplicate ? ", duplicate" : ""}; same answer: ${r.same_answer})\n${r.answer}`;
    },
    { id: "replay-form" },
  );
  node.append(outcome);
  return node;
}
