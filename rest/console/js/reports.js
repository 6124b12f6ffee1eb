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
        if (rows) out.replaceChildren(...render(report, v.group_by || "day", rows, [v.from, v.to]));
      },
      { id: "report-form" },
    ),
    out,
  );
}

function render(report, groupBy, rows, days) {
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
  requestAnimationFrame(() => draw(chart, report, groupBy, rows, key, days));
  return parts;
}

/** Every day from `from` to `to` (YYYY-MM-DD, both included) as Unix seconds. */
function daysOf(from, to) {
  const out = [];
  for (let t = Date.parse(`${from}T00:00:00Z`); t <= Date.parse(`${to}T00:00:00Z`); t += 86_400_000) out.push(t / 1000);
  return out;
}

function draw(holder, report, groupBy, rows, key, [from, to]) {
  if (!rows.length) {
    holder.textContent = "No rows in this range.";
    return;
  }
  const width = Math.max(320, holder.clientWidth || 800);
  // One series per currency (amounts of different currencies are never added up).
  const currencies = [...new Set(rows.map((r) => r.currency ?? ""))];
  const colours = ["#2f6fdb", "#d9480f", "#2b8a3e", "#7048e8", "#e8590c"];
  const label = (c, i) => ({ label: c ? `${report} ${c}` : report, stroke: colours[i % colours.length], width: 2, points: { size: 6 } });
  if (groupBy === "day") {
    // Every day of the range, so the axis is the range asked for; a day without rows is a gap.
    const xs = daysOf(from || rows[0].group, to || rows[rows.length - 1].group);
    const at = (c, x) => rows.find((r) => (r.currency ?? "") === c && Date.parse(`${r.group}T00:00:00Z`) / 1000 === x);
    const series = currencies.map((c) => xs.map((x) => (at(c, x) ? Number(at(c, x)[key] ?? 0) : null)));
    new uPlot({ width, height: 260, series: [{}, ...currencies.map(label)] }, [xs, ...series], holder);
  } else {
    // Categories: bars at 0, 1, 2 ... labelled by group.
    const groups = [...new Set(rows.map((r) => r.group))];
    const xs = groups.map((_, i) => i);
    const series = currencies.map((c) => groups.map((g) => Number(rows.find((r) => r.group === g && (r.currency ?? "") === c)?.[key] ?? 0)));
    new uPlot(
      {
        width,
        height: 260,
        scales: { x: { time: false, range: (_, min, max) => [min - 0.5, max + 0.5] } },
        axes: [{ values: (_, ticks) => ticks.map((t) => groups[t] ?? "") }, {}],
        series: [{}, ...currencies.map((c, i) => ({ ...label(c, i), fill: "rgba(47,111,219,.3)", paths: uPlot.paths.bars({ size: [0.6] }) }))],
      },
      [xs, ...series],
      holder,
    );
  }
}
