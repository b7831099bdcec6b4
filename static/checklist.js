// The checklist page's buttons: status changes (with If-Match), bulk actions and probe
// runs, through the REST API with the session and its CSRF token.
"use strict";

const csrf = () => document.cookie.split("; ").find((c) => c.startsWith("csrftoken="))?.split("=")[1] ?? "";
const deploymentId = document.querySelector("table.checklist")?.dataset.deployment
  ?? location.pathname.match(/deployments\/(\d+)/)[1];

function say(text) {
  const message = document.getElementById("message");
  message.textContent = text;
  message.hidden = false;
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

async function setStatus(row, status) {
  const { response, data } = await api("PATCH", `/api/checklist-items/${row.dataset.item}/`, { status }, { "If-Match": row.dataset.etag });
  if (response.status === 412) {
    say(`Rule ${row.dataset.item} was changed by someone else meanwhile: reload the page to see it, then change it again.`);
    return false;
  }
  if (!response.ok) {
    say(`Rule ${row.dataset.item}: ${JSON.stringify(data)}`);
    return false;
  }
  row.dataset.etag = data.etag;
  row.dataset.status = data.status;
  row.querySelectorAll(".status button").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.status === data.status)));
  return true;
}

document.addEventListener("click", async (event) => {
  const button = event.target.closest(".status button");
  if (button) {
    const row = button.closest("tr");
    if (await setStatus(row, button.dataset.status)) say(`Rule ${row.dataset.item}: ${button.textContent}.`);
  }
});

const selectedRows = () => [...document.querySelectorAll("input.pick:checked")].map((box) => box.closest("tr"));

document.querySelectorAll("[data-bulk]").forEach((button) => button.addEventListener("click", async () => {
  const rows = selectedRows();
  if (!rows.length) return say("Select rules first.");
  let done = 0;
  for (const row of rows) if (await setStatus(row, button.dataset.bulk)) done += 1;
  say(`${done} of ${rows.length} rules marked ${button.dataset.bulk}.`);
}));

function showResult(result) {
  const row = document.getElementById(`item-${result.item}`);
  if (!row || result.state === "pending") return;
  const cell = row.querySelector("td.probe");
  const details = document.createElement("details");
  const summary = document.createElement("summary");
  summary.className = `state state-${result.state}`;
  summary.textContent = result.regression ? `${result.state} (was ${result.previous_state})` : result.state;
  const text = document.createElement("p");
  text.textContent = result.summary;
  const facts = document.createElement("p");
  facts.innerHTML = "<small></small>";
  facts.firstChild.textContent = `${result.latency_ms ?? "–"} ms · ${result.site} · ${result.worker || ""}`;
  const evidence = document.createElement("pre");
  evidence.textContent = JSON.stringify(result.evidence, null, 1);
  details.append(summary, text, facts, evidence);
  cell.replaceChildren(details);
  row.classList.toggle("regression", Boolean(result.regression));
}

async function probe(body) {
  const { response, data } = await api("POST", `/api/deployments/${deploymentId}/probe-runs/`, body);
  if (!response.ok) return say(data.detail ?? JSON.stringify(data));
  const run = document.getElementById("run");
  const bar = document.getElementById("run-progress");
  const text = document.getElementById("run-text");
  run.hidden = false;
  for (;;) {
    const { data: state } = await api("GET", `/api/probe-runs/${data.id}/`);
    bar.max = state.progress.total || 1;
    bar.value = state.progress.done;
    text.textContent = `${state.progress.done} / ${state.progress.total} · ${state.status.replace("_", " ")}`;
    state.results.forEach(showResult);
    const dead = state.sites.filter((s) => !s.live_worker).map((s) => s.site);
    if (dead.length) say(`No live probe worker in site ${dead.join(", ")}: those rules are not probed.`);
    if (!["queued", "running"].includes(state.status)) break;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

document.getElementById("probe-all")?.addEventListener("click", () => probe({}));
document.getElementById("probe-selected")?.addEventListener("click", () => {
  const rows = selectedRows();
  if (!rows.length) return say("Select rules first.");
  probe({ items: rows.map((row) => Number(row.dataset.item)) });
});

// A result's history, fetched when its details are first opened.
document.addEventListener("toggle", async (event) => {
  const details = event.target;
  if (!(details instanceof HTMLDetailsElement) || !details.open || details.dataset.loaded) return;
  const row = details.closest("tr[data-item]");
  if (!row) return;
  details.dataset.loaded = "1";
  const { response, data } = await api("GET", `/api/checklist-items/${row.dataset.item}/`);
  if (!response.ok) return;
  const list = document.createElement("ul");
  list.className = "history";
  list.setAttribute("aria-label", "History");
  for (const entry of data.probe_history) {
    const li = document.createElement("li");
    li.textContent = `${entry.checked_at?.slice(0, 19).replace("T", " ")} ${entry.state}${entry.changed ? " (changed)" : ""} from ${entry.site}`;
    list.append(li);
  }
  for (const change of data.history) {
    const li = document.createElement("li");
    li.textContent = `${change.at.slice(0, 19).replace("T", " ")} status ${change.from_status} → ${change.to_status} by ${change.user ?? "?"}${change.comment ? `: ${change.comment}` : ""}`;
    list.append(li);
  }
  details.append(list);
}, true);
