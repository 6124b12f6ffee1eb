// Providers: the list (secrets never shown), a new provider, changes, enable and disable,
// secret rotation, and the second admin's queue of provider changes.

import { role } from "./api.js";
import { el, field, form, load, notice, table } from "./ui.js";

export async function providers(main) {
  const list = await load("GET", "/api/admin/providers");
  if (!list) return;
  const admin = role() === "admin";
  const again = () => providers(main);
  const parts = [
    el("h2", {}, "Providers"),
    admin ? field("Reason for enabling or disabling", "toggle_reason") : null,
    table(
      [
        ["Code", (p) => p.code],
        ["Dialect", (p) => p.dialect],
        ["Enabled", (p) => el("span", { class: p.enabled ? "on" : "off", "data-provider": p.code }, p.enabled ? "enabled" : "disabled")],
        ["Managed", (p) => (p.managed ? "back office" : "configuration file")],
        ["Currency", (p) => p.settings?.currency],
        ["Allowed addresses", (p) => (p.settings ? p.settings.allow_ips.join(", ") || "any" : "")],
        ["Previous secret", (p) => (p.settings?.previous_secret_set ? `until ${new Date(p.settings.previous_until * 1000).toISOString()}` : "")],
        ["", (p) => (admin && p.managed ? toggle(p, again) : null)],
      ],
      list,
      { id: "providers" },
    ),
  ];
  if (admin) {
    const managed = list.filter((p) => p.managed);
    parts.push(createForm(), changeForm(managed), rotateForm(managed), await pendingChanges(again));
  }
  main.replaceChildren(...parts);
}

/** Enables or disables `p`, with the reason typed above the table. */
function toggle(p, again) {
  const next = !p.enabled;
  return el(
    "button",
    {
      type: "button",
      "data-toggle": p.code,
      onclick: async () => {
        const reason = document.querySelector("input[name=toggle_reason]").value;
        const done = await load("PUT", `/api/admin/providers/${p.code}`, { enabled: next, reason });
        if (done) {
          await again();
          notice(`${p.code} ${next ? "enabled" : "disabled"}.`);
        }
      },
    },
    next ? "Enable" : "Disable",
  );
}

function createForm() {
  return form(
    "New provider (waits for a second admin)",
    [
      field("Code", "code", { required: true }),
      field("Dialect", "dialect", { options: ["native", "pragmatic", "evolution", "softswiss"] }),
      field("Secret", "secret", { type: "password", required: true }),
      field("Currency", "currency", { value: "EUR" }),
      field("Allowed addresses (comma-separated)", "allow_ips"),
    ],
    "Request",
    async (v, node) => {
      const body = { ...v, allow_ips: v.allow_ips ? v.allow_ips.split(",").map((s) => s.trim()) : undefined };
      const change = await load("POST", "/api/admin/providers", body, node);
      if (change) notice(`Change #${change.id} waits for a second admin.`);
    },
    { id: "provider-create" },
  );
}

function changeForm(managed) {
  return form(
    "Change a provider",
    [
      field("Provider", "code", { options: managed.map((p) => p.code) }),
      field("Currency", "currency"),
      field("Allowed addresses (comma-separated)", "allow_ips"),
      field("Signature window (s)", "signature_window_s", { type: "number" }),
      field("Reason", "reason", { required: true }),
    ],
    "Change",
    async (v, node) => {
      const { code, ...rest } = v;
      const body = {
        ...rest,
        allow_ips: rest.allow_ips ? rest.allow_ips.split(",").map((s) => s.trim()) : undefined,
        signature_window_s: rest.signature_window_s ? Number(rest.signature_window_s) : undefined,
      };
      if (await load("PUT", `/api/admin/providers/${code}`, body, node)) notice(`${code} changed.`);
    },
    { id: "provider-change" },
  );
}

function rotateForm(managed) {
  return form(
    "Rotate a secret (waits for a second admin)",
    [
      field("Provider", "code", { options: managed.map((p) => p.code) }),
      field("New secret", "secret", { type: "password", required: true }),
      field("Old secret valid for (s)", "previous_valid_for_s", { type: "number", value: "3600" }),
      field("Reason", "reason", { required: true }),
    ],
    "Request rotation",
    async (v, node) => {
      const { code, ...rest } = v;
      const body = { ...rest, previous_valid_for_s: Number(rest.previous_valid_for_s || 0) };
      const change = await load("POST", `/api/admin/providers/${code}/rotate-secret`, body, node);
      if (change) notice(`Change #${change.id} waits for a second admin.`);
    },
    { id: "provider-rotate" },
  );
}

async function pendingChanges(again) {
  const items = await load("GET", "/api/admin/provider-changes");
  if (!items) return el("p", {}, "");
  return el(
    "section",
    { class: "card" },
    el("h3", {}, "Provider changes waiting for a second admin"),
    field("Your authenticator code (to approve)", "change_totp"),
    table(
      [
        ["Id", (c) => String(c.id)],
        ["Provider", (c) => c.code],
        ["Change", (c) => c.action],
        ["Reason", (c) => c.reason],
        ["Requested by", (c) => String(c.requested_by)],
        ["State", (c) => c.state],
        [
          "",
          (c) =>
            c.state === "pending_approval"
              ? el(
                  "button",
                  {
                    type: "button",
                    onclick: async () => {
                      const totp_code = document.querySelector("input[name=change_totp]").value;
                      if (await load("POST", `/api/admin/provider-changes/${c.id}/approve`, { totp_code })) {
                        await again();
                        notice(`Change #${c.id} approved.`);
                      }
                    },
                  },
                  "Approve",
                )
              : null,
        ],
      ],
      items,
    ),
  );
}
