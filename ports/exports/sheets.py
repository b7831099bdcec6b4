"""The checklist as a sheet: CSV (the checklist API's text/csv) and XLSX, with the same columns."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from rest_framework.renderers import BaseRenderer

from ..rules import RULE_COLUMNS

# A sheet's columns, in reading order: the rule's, then the item's progress and latest probe.
SHEET_COLUMNS: list[tuple[str, str]] = [
    ("number", "#"),
    *RULE_COLUMNS,
    ("id", "Item"),
    ("status", "Status"),
    ("status_changed_at", "Status changed"),
    ("probe_state", "Last probe"),
    ("probe_summary", "Probe summary"),
    ("probe_checked_at", "Probed at"),
]


def safe_cell(value: object) -> object:
    """A CSV cell that stays data: text a spreadsheet would take for a formula (= + - @, or a
    tab or CR first) gets a leading apostrophe. (XLSX cells are typed as text instead.)"""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return f"'{value}"
    return value


def xlsx_cell(value: object) -> object:
    """What a workbook can hold: characters XML may not carry are dropped."""
    return ILLEGAL_CHARACTERS_RE.sub("", value) if isinstance(value, str) else value


def sheet_rows(items: list[dict], cell: Callable[[object], object] = safe_cell) -> list[list[object]]:
    """Checklist items as the API gives them (ChecklistItemSerializer), one row each, numbered."""
    rows = []
    for number, item in enumerate(items, start=1):
        probe = item["probe"] or {}
        flat = item | {
            "number": number,
            "notes": " ".join(item["notes"]),
            "probe_state": probe.get("state", "not probed"),
            "probe_summary": probe.get("summary", ""),
            "probe_checked_at": probe.get("checked_at") or "",
        }
        rows.append([cell(flat[name]) for name, _ in SHEET_COLUMNS])
    return rows


class ChecklistCSVRenderer(BaseRenderer):
    """The checklist's items as CSV (errors come out as a one-column table)."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(
        self, data: object, accepted_media_type: str | None = None, renderer_context: dict | None = None
    ) -> bytes:
        out = io.StringIO()
        writer = csv.writer(out)
        if isinstance(data, dict) and "items" in data:
            writer.writerow([name for name, _ in SHEET_COLUMNS])
            writer.writerows(sheet_rows(data["items"]))
        else:
            writer.writerow(["error"])
            writer.writerow([data.get("detail", data) if isinstance(data, dict) else data])
        return out.getvalue().encode(self.charset)


def append_as_text(sheet: object, row: list[object]) -> None:
    """A row whose text cells stay text: openpyxl would take "=..." for a formula."""
    sheet.append(row)
    for cell in sheet[sheet.max_row]:
        if isinstance(cell.value, str):
            cell.data_type = "s"


def to_xlsx(items: list[dict], about: list[tuple[str, str]]) -> bytes:
    """A workbook: the rules on one sheet (headed by the columns' labels), `about` on another."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Rules"
    sheet.append([label for _, label in SHEET_COLUMNS])
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for row in sheet_rows(items, xlsx_cell):
        append_as_text(sheet, row)
    sheet.freeze_panes = "A2"
    sheet.auto_filter.ref = sheet.dimensions
    info = workbook.create_sheet("About")
    for row in about:
        append_as_text(info, [xlsx_cell(value) for value in row])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()
