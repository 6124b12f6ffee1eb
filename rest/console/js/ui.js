// Small building blocks of the screens: elements, form fields with their error slots, tables,
// lists paged by the API's cursors, money, CSV. No HTML is built from strings, so nothing the
// server sends is ever parsed as markup.

import { api } from "./api.js";

/** `tag` with attributes (`on*` keys become listeners) and children (strings are text). */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null) node.append(child);
  }
  return node;
}

export function notice(text, kind = "info") {
  const slot = document.getElementById("notice");
  slot.textContent = text || "";
  slot.dataset.kind = kind;
}

/** A labelled input (or select, when `options` is given) with the slot for its field error. */
export function field(label, name, { type = "text", options, value, required } = {}) {
  const id = `f-${name}-${Math.random().toString(36).slice(2, 8)}`;
  const input = options
    ? el("select", { id, name }, options.map((o) => el("option", { value: o }, o || "—")))
    : el("input", { id, name, type, value, required, autocomplete: type === "password" ? "current-password" : "off" });
  if (options && value !== undefined) input.value = value;
  return el(
    "div",
    { class: "field" },
    el("label", { for: id }, label),
    input,
    el("span", { class: "field-error", "data-for": name, role: "alert" }),
  );
}

/** A form: fields, a submit button, and `submit(values)` called with its values. */
export function form(title, fields, submitLabel, submit, attributes = {}) {
  const node = el("form", { class: "card", ...attributes }, title ? el("h2", {}, title) : null, fields, el("button", { type: "submit" }, submitLabel));
  node.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(node);
    const button = node.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      await submit(values(node), node);
    } finally {
      button.disabled = false;
    }
  });
  return node;
}

/** A form's non-empty values. */
export function values(formNode) {
  return Object.fromEntries([...new FormData(formNode)].filter(([, v]) => v !== ""));
}

function clearErrors(formNode) {
  formNode.querySelectorAll(".field-error").forEach((e) => (e.textContent = ""));
}

/** Shows an error answer: each field error beside its field, the rest as a notice. */
export function showError(formNode, answer) {
  if (formNode) clearErrors(formNode);
  const unplaced = [];
  for (const error of answer.errors || []) {
    const slot = formNode?.querySelector(`.field-error[data-for="${CSS.escape(error.field)}"]`);
    if (slot) slot.textContent = error.message;
    else unplaced.push(`${error.field}: ${error.message}`);
  }
  notice([`${answer.code || "ERROR"}: ${answer.message || ""}`, ...unplaced].join(" — "), "error");
}

/** Calls the API and answers its data, or shows the error (beside `formNode`'s fields) and answers null. */
export async function load(method, path, body, formNode) {
  const answer = await api(method, path, body);
  if (!answer.success) {
    showError(formNode, answer);
    return null;
  }
  return answer.data;
}

/** An amount the API sent as decimal text, formatted for the reader in its currency (exact: the text is never turned into a float). */
export function money(amount, currency) {
  if (amount === null || amount === undefined) return "";
  if (!currency) return amount;
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(amount);
  } catch {
    return `${amount} ${currency}`;
  }
}

/** A table of `rows` by `columns` ([title, row => text or node, {money: true}]). */
export function table(columns, rows, attributes = {}) {
  const head = el("tr", {}, columns.map(([title]) => el("th", { scope: "col" }, title)));
  const body = rows.map((row) =>
    el("tr", {}, columns.map(([, cell, options = {}]) => el("td", { class: options.money ? "money" : null }, cell(row) ?? ""))),
  );
  return el("table", attributes, el("thead", {}, head), el("tbody", {}, body));
}

/**
 * A list read page by page with the API's cursors: `path` (with its query) answers
 * `{items, next_cursor}`; "More" reads the next page into the same table.
 */
export function pagedTable(columns, path, attributes = {}) {
  const holder = el("div", { class: "paged" });
  const more = el("button", { type: "button", class: "more" }, "More");
  let cursor = null;
  let shown = [];
  async function next() {
    const separator = path.includes("?") ? "&" : "?";
    const page = await load("GET", cursor ? `${path}${separator}cursor=${encodeURIComponent(cursor)}` : path);
    if (!page) return;
    shown = shown.concat(page.items);
    cursor = page.next_cursor;
    holder.replaceChildren(table(columns, shown, attributes), cursor ? more : el("p", { class: "end" }, `${shown.length} shown, no more`));
  }
  more.addEventListener("click", next);
  next();
  return holder;
}

/** Offers `rows` (objects) as a CSV file named `name`. */
export function downloadCsv(name, rows) {
  if (!rows.length) return;
  const keys = Object.keys(rows[0]);
  const quote = (v) => `"${String(v ?? "").replaceAll('"', '""')}"`;
  const text = [keys.map(quote).join(","), ...rows.map((r) => keys.map((k) => quote(r[k])).join(","))].join("\r\n");
  const link = el("a", { href: URL.createObjectURL(new Blob([text], { type: "text/csv" })), download: name });
  document.body.append(link);
  link.click();
  link.remove();
}

/** A query string of the non-empty values. */
export function query(values) {
  return new URLSearchParams(Object.entries(values).filter(([, v]) => v !== "" && v !== undefined && v !== null)).toString();
}

/** A fresh idempotency key. */
export function freshKey() {
  return crypto.randomUUID();
}

/** A local datetime input's value as RFC 3339 UTC, or undefined. */
export function rfc3339(local) {
  return local ? new Date(local).toISOString() : undefined;
}

/** Minor units (an integer from the API) as the decimal text of `currency`'s units, exactly. */
export function fromMinor(minor, currency) {
  let digits = 2;
  try {
    digits = new Intl.NumberFormat(undefined, { style: "currency", currency }).resolvedOptions().maximumFractionDigits;
  } catch {
    // An unknown code: two decimals.
  }
  const negative = String(minor).startsWith("-");
  const text = String(minor).replace("-", "").padStart(digits + 1, "0");
  const whole = digits ? `${text.slice(0, -digits)}.${text.slice(-digits)}` : text;
  return `${negative ? "-" : ""}${whole}`;
}

