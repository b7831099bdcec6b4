// The Alerts page: while a delivery of "Recent alerts" is pending (sent or retried by a worker),
// the rows are fetched again every few seconds from the server, which alone renders them
// (probes/_alert_row.html), and swapped in: a delivery's state, and a new alert, read as a reload
// would show them. It stops once nothing is pending, and while the page is hidden. What ended is
// said in the page's live region, for screen readers.
"use strict";

const table = document.getElementById("recent-alerts");
const news = document.getElementById("alert-news");
const pending = () => table.querySelector('.delivery[data-status="pending"]') !== null;
const visible = () => document.visibilityState === "visible";

let timer = null;
let busy = false;

function say(text) {
  news.textContent = text;
}

// Call again in a few seconds, if something is still pending and someone can see it.
function schedule() {
  clearTimeout(timer);
  timer = null;
  if (!busy && pending() && visible()) timer = setTimeout(refresh, Number(table.dataset.every) * 1000);
}

// What changed from the rows on the page to the fresh ones, in words: each delivery that ended,
// each new alert.
function changes(fresh) {
  const said = [];
  for (const row of fresh.querySelectorAll("tr[data-alert]")) {
    if (!document.getElementById(row.id)) {
      said.push(`New alert: ${row.querySelector("td[data-label=What]").textContent}.`);
      continue;
    }
    for (const delivery of row.querySelectorAll(".delivery")) {
      const before = document.getElementById(delivery.id);
      if (before?.dataset.status === "pending" && delivery.dataset.status !== "pending") {
        said.push(`Delivery to ${delivery.dataset.channel} ${delivery.querySelector(".words").textContent}.`);
      }
    }
  }
  return said;
}

// The rows again, swapped in whole (none holds a control to keep the focus of); an answer that
// is not rows stops the asking, with a word in the live region.
async function fetchRows() {
  let response;
  try {
    // A redirect is the login page (the session ended): never pasted into the table.
    response = await fetch(table.dataset.url, { credentials: "same-origin", redirect: "error" });
  } catch {
    response = null;
  }
  if (!response?.ok) {
    say("The deliveries could not be updated: reload the page (and log in again if it asks).");
    return false;
  }
  const answer = document.createElement("template");
  answer.innerHTML = await response.text();
  const said = changes(answer.content);
  table.tBodies[0].replaceChildren(...answer.content.querySelectorAll("tr[data-alert]"));
  if (said.length) say(said.join(" "));
  return true;
}

async function refresh() {
  clearTimeout(timer);
  timer = null;
  if (busy) return; // the answer under way schedules the next
  busy = true;
  let fine = false;
  try {
    fine = await fetchRows();
  } finally {
    busy = false;
  }
  if (fine) schedule();
}

if (table) {
  document.addEventListener("visibilitychange", () => {
    if (visible() && pending()) refresh(); // what happened while it was hidden, at once
    else schedule();
  });
  schedule();
}
