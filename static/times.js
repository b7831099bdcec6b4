// Times as the server writes them ({% when %}, portal/templatetags/portal_tags.py): ISO 8601 in
// UTC in the text, and in the title the reader's own local time, which only the browser knows;
// for times a page's script swaps in later too.
"use strict";

function localize(time) {
  const value = time.getAttribute("datetime");
  if (time.dataset.local || !value.includes("T")) return; // a date alone has no local time
  const moment = new Date(value);
  if (Number.isNaN(moment.getTime())) return;
  time.title = `${moment.toLocaleString()} your time (${time.title})`;
  time.dataset.local = "true";
}

const localizeIn = (root) => root.querySelectorAll("time[datetime]").forEach(localize);

localizeIn(document);
new MutationObserver((records) => {
  for (const record of records) {
    for (const node of record.addedNodes) {
      if (node.nodeType !== Node.ELEMENT_NODE) continue;
      if (node.matches("time[datetime]")) localize(node);
      localizeIn(node);
    }
  }
}).observe(document.body, { childList: true, subtree: true });
