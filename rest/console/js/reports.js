// Reports: GGR, RTP, rounds and active players by day, provider or game over a range of days,
// as a chart (uPlot) and a table, with CSV export. The table shows the API's exact decimals;
// the chart plots them as numbers, which is only a picture.

import { el, downloadCsv, field, form, load, money, query, table } from "./ui.js";

const SERIES = { ggr: "ggr", rtp: "rtp_percent", rounds: "rounds", players: "players" };

export function reports(main) {
  const out = el("div", { id: "report-out" });
  const today = new Date().toISOString().slice(0, 10);
  const monthAgo = new Date(Date.now() - 30 * 86_400_000).toISOString().slice(0, 10);
  main.replaceChildren(
    form(
      "Reports",
      [
        field("Report", "report", { options: ["ggr", "rtp", "rounds", "players"] }),
        field("From day", "from", { type: "date", value: monthAgo }),
        field("To day", "to", { type: "date", value: today }),
        field("Group by", "group_by", { options: ["day", "provider", "game"] }),
        field("Provider", "provider"),
        field("Currency", "currency"),
      ],
      "Show",
      async (v, node) => {
        const { report, ...rest } = v;
        const rows = await load("GET", `/api/admin/reports/${report}?${query(rest)}`, undefined, node);
        if (rows) out.replaceChildren(...render(report, v.group_by || "day", rows));
      },
      { id: "report-form" },
    ),
    out,
  );
}

function render(report, groupBy, rows) {
  const key = SERIES[report];
  const chart = el("div", { class: "chart", id: "report-chart", role: "img", "aria-label": `${report} by ${groupBy}` });
  const parts = [
    el("button", { type: "button", id: "report-csv", onclick: () => downloadCsv(`${report}-${groupBy}.csv`, rows) }, "Export CSV"),
    chart,
    table(
      [
        ["Group", (r) => r.group],
        ["Currency", (r) => r.currency],
        ["Bets", (r) => money(r.bets, r.currency), { money: true }],
        ["Wins", (r) => money(r.wins, r.currency), { money: true }],
        ["GGR", (r) => money(r.ggr, r.currency), { money: true }],
        ["RTP %", (r) => r.rtp_percent],
        ["Rounds", (r) => r.rounds],
        ["Players", (r) => r.players],
      ],
      rows,
      { id: "report-table" },
    ),
  ];
  // Drawn once the holder is in the page (uPlot measures it).
  requestAnimationFrame(() => draw(chart, report, groupBy, rows, key));
  return parts;
}

function draw(holder, report, groupBy, rows, key) {
  if (!rows.length) {
    holder.textContent = "No rows in this range.";
    return;
  }
  const width = Math.max(320, holder.clientWidth || 800);
  const values = rows.map((r) => Number(r[key] ?? 0));
  if (groupBy === "day") {
    const xs = rows.map((r) => Date.parse(`${r.group}T00:00:00Z`) / 1000);
    new uPlot({ width, height: 260, series: [{}, { label: report, stroke: "#2f6fdb", width: 2 }] }, [xs, values], holder);
  } else {
    // Categories: bars at 0, 1, 2 ... labelled by group.
    const xs = rows.map((_, i) => i);
    const labels = rows.map((r) => r.group);
    new uPlot(
      {
        width,
        height: 260,
        scales: { x: { time: false } },
        axes: [{ values: (_, ticks) => ticks.map((t) => labels[t] ?? "") }, {}],
        series: [{}, { label: report, stroke: "#2f6fdb", fill: "rgba(47,111,219,.3)", paths: uPlot.paths.bars({ size: [0.6] }) }],
      },
      [xs, values],
      holder,
    );
  }
}
