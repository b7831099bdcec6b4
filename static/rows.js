// The deployment form's "Add a row": a new empty row of the formset, without a reload.
"use strict";

document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-add-row]");
  if (!button) return;
  const prefix = button.dataset.addRow;
  const total = document.getElementById(`id_${prefix}-TOTAL_FORMS`);
  const index = Number(total.value);
  const row = document.getElementById(`${prefix}-empty`).content.firstElementChild.cloneNode(true);
  row.querySelectorAll("[name], [id], [for], [aria-describedby]").forEach((element) => {
    for (const attribute of ["name", "id", "for", "aria-describedby"]) {
      const value = element.getAttribute(attribute);
      if (value) element.setAttribute(attribute, value.replace("__prefix__", index));
    }
  });
  row.querySelectorAll("label.sr-only").forEach((label) => { label.textContent = label.textContent.replace("(new row)", index + 1); });
  button.closest("fieldset").querySelector("table.rows tbody").append(row);
  total.value = index + 1;
  row.querySelector("input, select")?.focus();
});
