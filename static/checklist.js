// The checklist page's actions: status changes (with If-Match), bulk actions, probe runs and
// exports, through the REST API with the session and its CSRF token. After every action the
// summary panel and the rows it changed are fetched again from the server, which alone renders
// them: what the page says stays true, and reads as a reload would show it. What the script needs
// to know of the portal's concepts (state labels, export formats) the page writes into it.
"use strict";

const table = document.querySelector("table.checklist");
const deploymentId = table.dataset.deployment;
const csrf = () => document.cookie.split("; ").find((c) => c.startsWith("csrftoken="))?.split("=")[1] ?? "";
const rows = () => [...table.querySelectorAll("tbody tr[data-item]")];
const pickedRows = () => rows().filter((row) => row.querySelector("input.pick").checked);
const ruleName = (row) => `Rule ${row.dataset.number}`;

// A phone folds the first steps, the summary and the filters (a filtered page keeps its filters open): the first
// rule is then on the first screen, and either opens with a tap.
if (matchMedia("(max-width: 700px)").matches) {
  for (const id of ["overview", "first-steps"]) if (document.getElementById(id)) document.getElementById(id).open = false;
  const filters = document.getElementById("filter-box");
  if (!("keepOpen" in filters.dataset)) filters.open = false;
}

// A message where the user looks: a toast at the bottom of the screen, read out by screen readers.
let toastTimer;
function say(text, kind = "info") {
  const toast = document.getElementById("toast");
  toast.textContent = text;
  toast.className = `toast ${kind}`;
  toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { toast.hidden = true; }, 8000);
}

async function api(method, url, body, headers = {}) {
  const response = await fetch(url, {
    method,
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrf(), ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = response.headers.get("Content-Type")?.includes("json") ? await response.json() : {};
  return { response, data };
}

// An API error as one sentence: {"comment": ["..."]} or {"detail": "..."}.
const problem = (data) => data.detail
  ?? (Object.entries(data).map(([field, errors]) => `${field}: ${[].concat(errors).join(" ")}`).join("; ") || "The portal could not do it.");

// Whether the summary is the server's again (else a message says why not).
async function refreshPanel() {
  const panel = document.getElementById("panel");
  try {
    // A redirect is the login page (the session ended): say so, never paste it into the panel.
    const response = await fetch(panel.dataset.url, { credentials: "same-origin", redirect: "error" });
    if (response.ok) {
      panel.innerHTML = await response.text();
      return true;
    }
    say("The summary could not be updated: reload the page.", "bad");
  } catch {
    say("Your session has ended: reload the page and log in again.", "bad");
  }
  return false;
}

// Rows as the server renders them (ports/_row.html), swapped in by item id. The selection, an open
// evidence box and the focus carry over; the handlers sit on the table, so they hold for new rows.
const FOCUSABLE = ["select.status-select", "input.pick", "details.evidence summary"];
const asked = new Map(); // item id -> the latest request for its row: an older answer never wins
let requests = 0;
async function refreshRows(ids) {
  const wanted = [...new Set(ids.map(String))].filter((id) => document.getElementById(`item-${id}`));
  if (!wanted.length) return;
  const request = ++requests;
  wanted.forEach((id) => asked.set(id, request));
  let response;
  try {
    response = await fetch(`${table.dataset.rows}?items=${wanted.join(",")}`, { credentials: "same-origin", redirect: "error" });
  } catch {
    return say("Your session has ended: reload the page and log in again.", "bad");
  }
  if (!response.ok) return say("The rules could not be updated: reload the page.", "bad");
  const answer = document.createElement("template");
  answer.innerHTML = await response.text();
  for (const fresh of answer.content.querySelectorAll("tr[data-item]")) {
    const old = document.getElementById(fresh.id);
    if (!old || asked.get(fresh.dataset.item) !== request) continue;
    fresh.querySelector("input.pick").checked = old.querySelector("input.pick").checked;
    const focused = FOCUSABLE.find((selector) => old.querySelector(selector) === document.activeElement);
    const open = old.querySelector("details.evidence").open;
    old.replaceWith(fresh);
    if (open) fresh.querySelector("details.evidence").open = true; // its toggle loads the evidence afresh
    if (focused) fresh.querySelector(focused).focus();
  }
}

async function setStatus(row, status, comment = "") {
  const { response, data } = await api("PATCH", `/api/checklist-items/${row.dataset.item}/`, { status, comment }, { "If-Match": row.dataset.etag });
  const select = row.querySelector("select.status-select");
  if (response.ok) {
    // The row holds the change until the server's rendering of it replaces the row.
    row.dataset.etag = data.etag;
    row.dataset.status = data.status;
    select.value = data.status;
    return true;
  }
  select.value = row.dataset.status;
  say(response.status === 412
    ? `${ruleName(row)} was changed by someone else meanwhile: reload the page to see it, then change it again.`
    : `${ruleName(row)}: ${problem(data)}`, "bad");
  return false;
}

// A waiver needs a reason: asked in a dialog, kept in the rule's history. `what` names the rules.
function askWhy(what) {
  const dialog = document.getElementById("waive-dialog");
  document.getElementById("waive-number").textContent = what;
  document.getElementById("waive-comment").value = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      const comment = document.getElementById("waive-comment").value.trim();
      resolve(dialog.returnValue === "waive" && comment ? comment : null);
    }, { once: true });
  });
}

async function applyStatus(select) {
  const row = select.closest("tr");
  delete select.dataset.pending;
  if (select.value === row.dataset.status) return;
  let comment = "";
  if (select.value === "waived") {
    comment = await askWhy(ruleName(row).toLowerCase());
    if (comment === null) {
      select.value = row.dataset.status;
      return say("Not waived: a waiver needs a reason.", "bad");
    }
  }
  if (await setStatus(row, select.value, comment)) {
    say(`${ruleName(row)}: ${select.selectedOptions[0].textContent}.`, "good");
    refreshPanel();
    refreshRows([row.dataset.item]);
  }
}

// Arrow keys move through a closed select and fire "change" at each step: from the keyboard,
// a status applies on Enter or when the control is left; a pick with the mouse applies at once.
table.addEventListener("keydown", (event) => {
  const select = event.target.closest("select.status-select");
  if (!select) return;
  if (event.key === "Enter") { event.preventDefault(); applyStatus(select); } else select.dataset.keyboard = "1";
});
table.addEventListener("focusout", (event) => {
  const select = event.target.closest("select.status-select");
  if (select) { delete select.dataset.keyboard; if (select.dataset.pending) applyStatus(select); }
});
table.addEventListener("change", (event) => {
  const select = event.target.closest("select.status-select");
  if (select) {
    if (select.dataset.keyboard) select.dataset.pending = "1";
    else applyStatus(select);
  }
  if (event.target.matches("input.pick")) countPicked();
});

// The selection: the ticked rows of this page, or, after "Select all N matching rules", every
// rule the page's filter matches, on every page (the filter in force, as the address has it).
const matching = Number(table.dataset.matching);
const pickMatching = document.getElementById("pick-matching");
let allMatching = false;

function countPicked() {
  const picked = pickedRows().length;
  if (picked < rows().length) allMatching = false;
  document.getElementById("picked").textContent = allMatching ? `All ${matching} matching rules selected` : `${picked} selected`;
  document.querySelectorAll(".picked-count").forEach((span) => { span.textContent = picked; });
  const all = document.getElementById("pick-all");
  all.checked = picked > 0 && picked === rows().length;
  all.indeterminate = picked > 0 && picked < rows().length;
  pickMatching.hidden = !all.checked || matching <= picked;
  pickMatching.textContent = allMatching ? "Select this page only" : `Select all ${matching} matching rules`;
}

document.getElementById("pick-all").addEventListener("change", (event) => {
  rows().forEach((row) => { row.querySelector("input.pick").checked = event.target.checked; });
  countPicked();
});
pickMatching.addEventListener("click", () => { allMatching = !allMatching; countPicked(); });

function pageFilter() {
  const names = [...document.querySelectorAll(".filters [name]")].map((field) => field.name).filter((name) => !["size", "sort"].includes(name));
  const query = new URLSearchParams(location.search);
  return Object.fromEntries(names.map((name) => [name, query.get(name)]).filter(([, value]) => value));
}

// Rules settled as waived or verified change only when the user says so, knowing how many.
function askOverwrite(overwrites, statusName) {
  const parts = Object.entries(overwrites).filter(([, n]) => n).map(([status, n]) => `${n} ${label("status", status).toLowerCase()}`);
  if (!parts.length) return Promise.resolve(true);
  const dialog = document.getElementById("overwrite-dialog");
  document.getElementById("overwrite-text").textContent =
    `${parts.join(" and ")} rule${parts.length === 1 && parts[0].startsWith("1 ") ? "" : "s"} would become ${statusName}. Their history keeps what they were.`;
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener("close", () => resolve(dialog.returnValue === "change"), { once: true }));
}

const bulkBusy = (text) => {
  document.getElementById("bulk-busy").hidden = !text;
  document.getElementById("bulk-busy-text").textContent = text ?? "";
  for (const id of ["bulk-apply", "bulk-status", "pick-all", "pick-matching"]) document.getElementById(id).disabled = Boolean(text);
};

// One request for any number of rules: first a dry run, which says how many would change and
// how many of them are settled; then the change itself.
document.getElementById("bulk-apply").addEventListener("click", async () => {
  const picked = pickedRows();
  if (!allMatching && !picked.length) return say("Select rules first.");
  const select = document.getElementById("bulk-status");
  const statusName = select.selectedOptions[0].textContent.toLowerCase();
  const body = { status: select.value, ...(allMatching ? { filter: pageFilter() } : { items: picked.map((row) => Number(row.dataset.item)) }) };
  const count = allMatching ? matching : picked.length;
  bulkBusy(`Checking ${count} rules…`);
  try {
    const plan = await api("POST", document.querySelector(".bulk").dataset.url, { ...body, dry_run: true });
    if (!plan.response.ok) return say(problem(plan.data), "bad");
    if (!plan.data.changed) return say(`All ${plan.data.matched} selected rules are ${statusName} already: nothing changed.`);
    if (!(await askOverwrite(plan.data.overwrites, statusName))) return say("Nothing changed.");
    if (select.value === "waived") {
      body.comment = await askWhy(`${plan.data.changed} rules`);
      if (body.comment === null) return say("Not waived: a waiver needs a reason.", "bad");
    }
    bulkBusy(`Marking ${plan.data.changed} rules ${statusName}…`);
    const { response, data } = await api("POST", document.querySelector(".bulk").dataset.url, body);
    if (!response.ok) return say(problem(data), "bad");
    say(`${data.changed} rule${data.changed === 1 ? "" : "s"} marked ${statusName}` + (data.unchanged ? ` (${data.unchanged} ${statusName} already).` : "."), "good");
    refreshPanel();
    refreshRows(data.items ?? rows().map((row) => row.dataset.item));
  } finally {
    bulkBusy(null);
  }
});

document.getElementById("verify-open").addEventListener("click", async (event) => {
  const button = event.currentTarget;
  button.disabled = true;
  let response, data;
  try {
    ({ response, data } = await api("POST", `/api/deployments/${deploymentId}/checklist/verify-open/`, {}));
  } finally {
    button.disabled = false;
  }
  if (!response.ok) return say(problem(data), "bad");
  say(data.verified ? `${data.verified} rules with an open probe marked verified. Reloading…` : "No rule with an open probe is waiting to be verified.", "good");
  if (data.verified) setTimeout(() => location.reload(), 1200);
  else refreshPanel();
});

// --- Probes ------------------------------------------------------------------------------

// Probe states, rule statuses and run statuses in words, as the portal declares them.
const LABELS = JSON.parse(document.getElementById("labels").textContent);
const label = (kind, value) => LABELS[kind][value] ?? value;

const probeButtons = () => [document.getElementById("probe-all"), document.getElementById("probe-selected")];

async function probe(body) {
  probeButtons().forEach((button) => { button.disabled = true; });
  try {
    const { response, data } = await api("POST", `/api/deployments/${deploymentId}/probe-runs/`, body);
    if (!response.ok) return say(problem(data), "bad");
    const run = document.getElementById("run");
    const bar = document.getElementById("run-progress");
    const text = document.getElementById("run-text");
    run.hidden = false;
    say("Probe run started.");
    let state;
    const shown = new Map(); // item id -> when the result its row shows was checked
    for (;;) {
      const poll = await api("GET", `/api/probe-runs/${data.id}/`);
      if (!poll.response.ok) {
        text.textContent += " · no answer";
        return say(`Probe run ${data.id}: the portal did not answer (${poll.response.status}); reload to see its results.`, "bad");
      }
      state = poll.data;
      // A row changes only with a new result (a pending item has none yet): the server renders it,
      // before the progress says so.
      const fresh = state.results.filter((result) => result.checked_at && shown.get(result.item) !== result.checked_at);
      fresh.forEach((result) => shown.set(result.item, result.checked_at));
      await refreshRows(fresh.map((result) => result.item));
      bar.max = state.progress.total || 1;
      bar.value = state.progress.done;
      text.textContent = `${state.progress.done} of ${state.progress.total} rules probed · ${label("run", state.status).toLowerCase()}`;
      if (!["queued", "running"].includes(state.status)) break;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    const counts = Object.entries(state.by_state ?? {}).filter(([, n]) => n).map(([s, n]) => `${n} ${label("state", s).toLowerCase()}`);
    const dead = state.sites.filter((s) => !s.live_worker).map((s) => s.site);
    // The summary first: when the message says the run ended, the summary already shows it.
    document.getElementById("first-steps")?.remove();
    if (!await refreshPanel()) return;  // its message stays: the run's counts wait for a reload
    say(`Probe run ${label("run", state.status).toLowerCase()}: ${counts.join(", ") || "no results"}.`
      + (dead.length ? ` No probe worker runs in site ${dead.join(", ")}: the summary says how to start one.` : ""),
      state.status === "done" ? "good" : "bad");
  } finally {
    probeButtons().forEach((button) => { button.disabled = false; });
  }
}

document.getElementById("probe-all").addEventListener("click", () => probe({}));
document.getElementById("open-delete").addEventListener("click", () => document.getElementById("delete-dialog").showModal());
document.getElementById("probe-selected").addEventListener("click", () => {
  const picked = pickedRows();
  if (!picked.length) return say("Select rules first.");
  probe({ items: picked.map((row) => Number(row.dataset.item)) });
});

// Evidence in words and history, newest first, fetched when first opened. Times as the server
// writes them ({% when %}: 2026-12-03 14:41 UTC); static/times.js adds the local time on hover.
const when = (text) => {
  const time = document.createElement("time");
  if (!text) return time;
  const utc = new Date(text).toISOString(); // 2026-12-03T14:41:07.000Z
  time.dateTime = `${utc.slice(0, 19)}Z`;
  time.textContent = `${utc.slice(0, 16).replace("T", " ")} UTC`;
  time.title = `${utc.slice(0, 19).replace("T", " ")} UTC`;
  return time;
};
table.addEventListener("toggle", async (event) => {
  const details = event.target;
  if (!(details instanceof HTMLDetailsElement) || !details.open || details.dataset.loaded) return;
  const row = details.closest("tr[data-item]");
  details.dataset.loaded = "1";
  const { response, data } = await api("GET", `/api/checklist-items/${row.dataset.item}/`);
  const box = details.querySelector(".loaded");
  if (!response.ok) { box.textContent = problem(data); return; }
  // The evidence of the result the row shows (a later "not probed" is not a result about the path).
  const latest = data.probe_history.find((entry) => entry.state === row.dataset.state) ?? data.probe_history[0];
  if (latest?.evidence_words?.length) {
    const evidence = document.createElement("ul");
    evidence.setAttribute("aria-label", "Evidence of the latest probe");
    for (const sentence of latest.evidence_words) {
      const li = document.createElement("li");
      li.textContent = sentence;
      evidence.append(li);
    }
    box.append(evidence);
  }
  const entries = [
    ...data.probe_history.map((entry) => ({ at: entry.checked_at, text: `Probed from site ${entry.site}: ${label("state", entry.state).toLowerCase()}${entry.changed ? " (changed)" : ""}.` })),
    ...data.history.map((change) => ({ at: change.at, text: `Marked ${label("status", change.to_status).toLowerCase()} (was ${label("status", change.from_status).toLowerCase()}) by ${change.user ?? "someone no longer a user"}${change.comment ? `: “${change.comment}”` : ""}.` })),
  ].sort((a, b) => (b.at ?? "").localeCompare(a.at ?? ""));
  const history = document.createElement("ol");
  history.className = "history";
  history.setAttribute("aria-label", "History, newest first");
  for (const entry of entries) {
    const li = document.createElement("li");
    li.append(when(entry.at), ` ${entry.text}`);
    history.append(li);
  }
  if (!entries.length) history.textContent = "No history yet.";
  box.append(history);
}, true);

// --- Exports and change requests -----------------------------------------------------------

const exportDialog = document.getElementById("export-dialog");
const exportForm = document.getElementById("export-form");
const exportStatus = document.getElementById("export-status");
const exportLink = document.getElementById("export-link");
const exportProgress = document.getElementById("export-progress");

// The formats are the page's: each option says where it is rendered (data-url) and whether it
// asks for the sites' zones (data-zones).
const chosenFormat = () => exportForm.elements.format.selectedOptions[0];

function showFields() {
  const format = chosenFormat();
  exportForm.querySelectorAll(".for-pdf").forEach((field) => { field.hidden = format.value !== "pdf"; });
  exportForm.querySelectorAll(".for-zones").forEach((field) => { field.hidden = !("zones" in format.dataset); });
}
// Another format is another export: what the dialog said of the last one goes.
function clearExport() {
  exportStatus.textContent = "";
  exportLink.hidden = true;
  exportProgress.hidden = true;
}
exportForm.elements.format.addEventListener("change", () => { showFields(); clearExport(); });
document.getElementById("export-close").addEventListener("click", () => exportDialog.close());
document.getElementById("open-export").addEventListener("click", () => {
  countPicked();
  showFields();
  clearExport();
  exportDialog.showModal();
});

function exportParams() {
  const fields = Object.fromEntries(new FormData(exportForm));
  const params = { scope: fields.scope };
  if (fields.scope === "selection") params.items = pickedRows().map((row) => row.dataset.item).join(",");
  for (const name of ["reference", "requester", "justification", "requested_date", "expiry", "rollback", "syntax", "zones"]) {
    const field = exportForm.elements[name];
    if (fields[name] && !field.closest("label").hidden) params[name] = fields[name];
  }
  return params;
}

function offer(blob, name) {
  exportLink.href = URL.createObjectURL(blob);
  exportLink.download = name;
  exportLink.textContent = `Download ${name}`;
  exportLink.hidden = false;
  exportLink.click();
}

async function backgroundChangeRequest(params) {
  const body = { ...params };
  if (body.items) body.items = body.items.split(",").map(Number);
  const { response, data } = await api("POST", `/api/deployments/${deploymentId}/change-requests/`, body);
  if (!response.ok) { exportStatus.textContent = problem(data); return; }
  exportProgress.hidden = false;
  let job = data;
  while (["queued", "running"].includes(job.status)) {
    exportProgress.value = job.progress;
    exportStatus.textContent = `Change request ${job.id}: ${job.stage || job.status} (${job.progress} %)`;
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const poll = await api("GET", `/api/change-requests/${job.id}/`);
    if (!poll.response.ok) { exportStatus.textContent = `Change request ${job.id}: the portal did not answer (${poll.response.status}).`; return; }
    job = poll.data;
  }
  exportProgress.value = job.progress;
  if (job.status !== "done") { exportStatus.textContent = `Change request ${job.id} failed: ${job.error}`; return; }
  exportStatus.textContent = `Change request ${job.id} is ready: ${job.rule_count} rules.`;
  exportLink.href = `/api/change-requests/${job.id}/pdf/`;
  exportLink.removeAttribute("download");
  exportLink.textContent = "Download the change request (PDF)";
  exportLink.hidden = false;
}

exportForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const go = document.getElementById("export-go");
  if (go.disabled) return;
  go.disabled = true;
  try {
    await exportNow();
  } finally {
    go.disabled = false;
  }
});

async function exportNow() {
  const { value: format, dataset: { url } } = chosenFormat();
  const params = exportParams();
  if (params.scope === "selection" && !params.items) { exportStatus.textContent = "Select rules on the page first, or choose other rules."; return; }
  exportLink.hidden = true;
  exportStatus.textContent = "Preparing…";
  const response = await fetch(`${url}?${new URLSearchParams(params)}`, { credentials: "same-origin" });
  if (response.ok) {
    const name = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") ?? "")?.[1] ?? `export.${format}`;
    offer(await response.blob(), name);
    exportStatus.textContent = `Ready: ${name}.`;
    return;
  }
  const data = response.headers.get("Content-Type")?.includes("json") ? await response.json() : {};
  if (format === "pdf" && response.status === 400 && String(data.scope ?? "").includes("change-requests")) {
    exportStatus.textContent = "A large change request: rendered in the background.";
    return backgroundChangeRequest(params);
  }
  exportStatus.textContent = Object.keys(data).length ? problem(data) : `The portal answered ${response.status}.`;
}

// --- Drafting a change request ------------------------------------------------------------

// The rules ticked on this page and the dialog's fields become a draft (POST
// /api/deployments/{id}/requests/), whose own page then takes it through approval. What the API
// refuses (a 400's messages by field) is said next to its field; the rest above the buttons.
const draftDialog = document.getElementById("draft-dialog");
const draftForm = document.getElementById("draft-form");
const draftStatus = document.getElementById("draft-status");
const draftGo = document.getElementById("draft-go");

function clearDraftErrors() {
  draftStatus.textContent = "";
  for (const field of draftForm.querySelectorAll("[name]")) {
    field.removeAttribute("aria-invalid");
    document.getElementById(`draft-${field.name}-error`).textContent = "";
  }
}

document.getElementById("open-draft").addEventListener("click", () => {
  if (!pickedRows().length) return say("Select rules first.");
  countPicked();
  clearDraftErrors();
  draftDialog.showModal();
});
document.getElementById("draft-close").addEventListener("click", () => draftDialog.close());

draftForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (draftGo.disabled) return;
  clearDraftErrors();
  // A blank field is left out: the API takes a date or none, never "".
  const fields = Object.fromEntries([...new FormData(draftForm)].filter(([, value]) => value.trim()));
  const items = pickedRows().map((row) => Number(row.dataset.item));
  draftGo.disabled = true;
  let answer;
  try {
    answer = await api("POST", `/api/deployments/${deploymentId}/requests/`, { ...fields, items });
  } catch {
    draftGo.disabled = false;
    draftStatus.textContent = "The portal did not answer: try again, or reload the page.";
    return;
  }
  const { response, data } = answer;
  if (response.ok) return location.assign(`/requests/${data.id}/`); // the button stays off: one draft
  draftGo.disabled = false;
  const elsewhere = {};
  for (const [name, errors] of Object.entries(data)) {
    const field = draftForm.elements[name];
    if (!field) { elsewhere[name] = errors; continue; }
    field.setAttribute("aria-invalid", "true");
    document.getElementById(`draft-${name}-error`).textContent = [].concat(errors).join(" ");
  }
  if (Object.keys(elsewhere).length || !Object.keys(data).length) draftStatus.textContent = problem(elsewhere);
  draftForm.querySelector("[aria-invalid]")?.focus();
});

countPicked();
