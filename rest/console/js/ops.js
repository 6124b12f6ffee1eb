// For finance and the on-call engineer: the reconciliation report with its mismatches
// highlighted, the audit log with filters, and a live view of the gateway's own metrics.

import { el, field, form, fromMinor, load, money, pagedTable, query, rfc3339, table } from "./ui.js";

export async function reconciliation(main) {
  const r = await load("GET", "/api/admin/reconciliation");
  if (!r) return;
  const minor = (amount, currency) => money(fromMinor(amount, currency), currency);
  main.replaceChildren(
    el("h2", {}, "Reconciliation"),
    el("p", { id: "reconciliation-verdict", class: r.balanced ? "good" : "bad" }, r.balanced ? "Every wallet equals its ledger." : `${r.wallet_mismatches.length} wallet(s) differ from their ledger.`),
    el("h3", {}, "Wallets that differ from their ledger"),
    r.wallet_mismatches.length
      ? table(
          [
            ["Player", (m) => el("a", { href: `#/players/${m.player_id}` }, String(m.player_id))],
            ["Currency", (m) => m.currency],
            ["Balance", (m) => minor(m.balance, m.currency), { money: true }],
            ["Ledger", (m) => minor(m.ledger_sum, m.currency), { money: true }],
          ],
          r.wallet_mismatches,
          { class: "mismatch" },
        )
      : el("p", {}, "None."),
    el("h3", {}, `Rounds open for over an hour: ${r.open_rounds}`),
    table(
      [
        ["Provider", (o) => o.provider],
        ["Player", (o) => String(o.player_id)],
        ["Round", (o) => o.round_id],
        ["Started", (o) => o.created_at],
      ],
      r.open_round_samples,
    ),
    el("h3", {}, `Rollbacks of transactions never seen: ${r.unmatched_tombstones}`),
    el("h3", {}, "Wallets flagged for reconciliation"),
    r.flagged_wallets.length
      ? table(
          [
            ["Player", (f) => String(f.player_id)],
            ["Currency", (f) => f.currency],
            ["Balance", (f) => minor(f.balance, f.currency), { money: true }],
          ],
          r.flagged_wallets,
          { class: "mismatch" },
        )
      : el("p", {}, "None."),
    el("h3", {}, `Provider totals, ${r.from} to ${r.to}`),
    table(
      [
        ["Provider", (p) => p.provider],
        ["Currency", (p) => p.currency],
        ["Transactions", (p) => String(p.transactions)],
        ["Bets", (p) => minor(p.bets, p.currency), { money: true }],
        ["Wins", (p) => minor(p.wins, p.currency), { money: true }],
        ["Rollbacks", (p) => minor(p.rollbacks, p.currency), { money: true }],
        ["Net", (p) => minor(p.net, p.currency), { money: true }],
      ],
      r.provider_totals,
      { id: "provider-totals" },
    ),
  );
}

export function audit(main) {
  const results = el("div");
  const show = (v) =>
    results.replaceChildren(
      pagedTable(
        [
          ["At", (a) => a.at],
          ["Actor", (a) => `${a.actor_id ?? "—"} (${a.actor_role ?? ""})`],
          ["Action", (a) => a.action],
          ["Target", (a) => `${a.target_kind ?? ""} ${a.target_id ?? ""}`],
          ["Reason", (a) => a.reason],
          ["Change", (a) => el("details", {}, el("summary", {}, "before / after"), el("pre", {}, JSON.stringify({ before: a.before, after: a.after }, null, 1)))],
        ],
        `/api/admin/audit-log?${query({ ...v, limit: 50 })}`,
        { id: "audit-log" },
      ),
    );
  main.replaceChildren(
    form(
      "Audit log",
      [
        field("Actor id", "actor", { type: "number" }),
        field("Action", "action"),
        field("Target kind", "target_kind"),
        field("Target id", "target_id"),
        field("From", "from", { type: "datetime-local" }),
        field("Before", "to", { type: "datetime-local" }),
      ],
      "Filter",
      (v) => show({ ...v, from: rfc3339(v.from), to: rfc3339(v.to) }),
      { id: "audit-search", role: "search" },
    ),
    results,
  );
  show({});
}

/** Samples kept for the live charts (two seconds apart: two minutes). */
const SAMPLES = 60;

export function live(main) {
  const figures = el("p", { id: "live-figures", role: "status" }, "Waiting for the first two samples…");
  const holder = el("div", { class: "chart", id: "live-chart" });
  main.replaceChildren(el("h2", {}, "Live"), figures, holder);
  const points = { t: [], rate: [], p99: [], batch: [] };
  let previous = null;
  let chart = null;
  const tick = async () => {
    if (!document.body.contains(holder)) return clearInterval(timer);
    const now = await load("GET", "/api/admin/live");
    if (!now) return;
    if (previous) {
      const seconds = (now.at_ms - previous.at_ms) / 1000;
      const callbacks = now.callbacks - previous.callbacks;
      const sample = {
        rate: callbacks / seconds,
        p99: quantile(previous.latency_buckets, now.latency_buckets, 0.99) * 1000,
        batch: (now.batched_commands - previous.batched_commands) / Math.max(1, now.batches - previous.batches),
      };
      points.t.push(now.at_ms / 1000);
      for (const k of ["rate", "p99", "batch"]) points[k].push(sample[k]);
      if (points.t.length > SAMPLES) for (const k of Object.keys(points)) points[k].shift();
      figures.textContent = `${sample.rate.toFixed(0)} callbacks/s · p99 ${sample.p99.toFixed(1)} ms · ${sample.batch.toFixed(1)} commands a batch`;
      const data = [points.t, points.rate, points.p99, points.batch];
      if (!chart) {
        chart = new uPlot(
          {
            width: Math.max(320, holder.clientWidth || 800),
            height: 260,
            scales: { x: { time: true }, ms: {}, n: {} },
            axes: [{}, { scale: "n", label: "callbacks/s, batch" }, { scale: "ms", side: 1, label: "p99 ms" }],
            series: [
              {},
              { label: "callbacks/s", scale: "n", stroke: "#2f6fdb" },
              { label: "p99 ms", scale: "ms", stroke: "#d9480f" },
              { label: "commands a batch", scale: "n", stroke: "#2b8a3e" },
            ],
          },
          data,
          holder,
        );
      } else {
        chart.setData(data);
      }
    }
    previous = now;
  };
  const timer = setInterval(tick, 2000);
  tick();
}

/** The `q` quantile, in seconds, of the observations between two cumulative histograms. */
function quantile(before, after, q) {
  const counts = after.map((b, i) => ({ le: b.le, n: b.count - (before[i]?.count ?? 0) }));
  const total = counts.length ? counts[counts.length - 1].n : 0;
  if (!total) return 0;
  const want = q * total;
  const hit = counts.find((c) => c.n >= want);
  return hit && Number.isFinite(hit.le) ? hit.le : counts[counts.length - 2]?.le ?? 0;
}
