"""A rule set as a sheet: CSV (the checklist API's text/csv) and XLSX, one row per flow, with the
same columns and numbers as every other export.

CSV is one table a parser reads as it is: a header row of the column names (SHEET_COLUMNS, then
ABOUT_COLUMNS), then a row per flow. What holds for the whole sheet (catalog, fingerprint, the
vendor's warning) is repeated in its own columns, so that a row filtered out of the sheet still
carries it. The XLSX puts that on its "About" sheet instead.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime

from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from rest_framework.renderers import BaseRenderer

from ..rules import RULE_COLUMNS
from . import Flow, RuleSet

# A sheet's columns, in reading order: the number, the rule's columns (several requirements'
# values joined), then the items' progress and latest probe.
SHEET_COLUMNS: list[tuple[str, str]] = [
    ("number", "#"),
    *RULE_COLUMNS,
    ("items", "Checklist items"),
    ("status", "Status"),
    ("status_changed_at", "Status changed"),
    ("probe_state", "Last probe"),
    ("probe_summary", "Probe summary"),
    ("probe_checked_at", "Probed at"),
]
# The CSV's columns for what holds for the whole sheet.
ABOUT_COLUMNS: list[tuple[str, str]] = [
    ("catalog", "Catalog"),
    ("fingerprint", "Rule set fingerprint"),
    ("warning", "Vendor warning"),
]
# Rule columns that differ between the requirements of one flow: their values are joined.
JOINED = ["description", "requirement", "vendor_direction", "notes", "service", "table"]


def flow_row(flow: Flow) -> dict[str, object]:
    """A flow as a sheet's row (SHEET_COLUMNS): times as datetimes, lists joined."""
    rules = [item.rule.as_dict() for item in flow.items]
    joined = {
        name: "; ".join(dict.fromkeys(value for rule in rules for value in _as_list(rule[name]))) for name in JOINED
    }
    probe = flow.latest_probe
    changed = [item.status_changed_at for item in flow.items if item.status_changed_at]
    return (
        rules[0]
        | joined
        | {
            "number": flow.number,
            "carries_tls": flow.carries_tls,
            "items": ", ".join(str(item.pk) for item in flow.items),
            "status": flow.status,
            "status_changed_at": max(changed, default=None),
            "probe_state": probe.state if probe else "not probed",
            "probe_summary": probe.summary if probe else "",
            "probe_checked_at": probe.checked_at if probe else None,
        }
    )


def _as_list(value: object) -> list:
    return value if isinstance(value, list) else [value]


def safe_cell(value: object) -> object:
    """A CSV cell that stays data: text a spreadsheet would take for a formula (= + - @, or a
    tab or CR first) gets a leading apostrophe. (XLSX cells are typed as text instead.)"""
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return f"'{value}"
    return value


def xlsx_cell(value: object) -> object:
    """What a workbook can hold: characters XML may not carry are dropped; times in UTC."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)  # the portal keeps UTC; the column says so
    return ILLEGAL_CHARACTERS_RE.sub("", value) if isinstance(value, str) else value


def csv_table(rule_set: RuleSet) -> list[list[object]]:
    """The CSV's rows: the header, then a row per flow."""
    version = rule_set.deployment.catalog_version
    about = {
        "catalog": f"{version.product} {version.version}",
        "fingerprint": f"sha256:{rule_set.fingerprint}",
        "warning": version.warning,
    }
    columns = [name for name, _ in SHEET_COLUMNS + ABOUT_COLUMNS]
    rows = [[safe_cell((flow_row(flow) | about)[name]) for name in columns] for flow in rule_set.flows]
    return [columns, *rows]


class ChecklistCSVRenderer(BaseRenderer):
    """Rows (lists) as CSV; errors come out as a one-column table."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(
        self, data: object, accepted_media_type: str | None = None, renderer_context: dict | None = None
    ) -> bytes:
        out = io.StringIO()
        writer = csv.writer(out)
        if isinstance(data, dict) and "rows" in data:
            writer.writerows(data["rows"])
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
        elif isinstance(cell.value, datetime):
            cell.number_format = 'yyyy-mm-dd hh:mm "UTC"'


def to_xlsx(rule_set: RuleSet) -> bytes:
    """A workbook: a row per flow on "Rules" (headed by the columns' labels), and "About": the
    catalog, fingerprint, warning and footnotes."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Rules"
    sheet.append([label for _, label in SHEET_COLUMNS])
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for flow in rule_set.flows:
        row = flow_row(flow)
        append_as_text(sheet, [xlsx_cell(row[name]) for name, _ in SHEET_COLUMNS])
    sheet.freeze_panes = "A2"
    sheet.auto_filter.ref = sheet.dimensions
    info = workbook.create_sheet("About")
    for row in rule_set.about():
        append_as_text(info, [xlsx_cell(value) for value in row])
    info.column_dimensions["A"].width = 40
    info.column_dimensions["B"].width = 120
    for cell in info["B"]:
        cell.alignment = Alignment(wrap_text=True, vertical="top")
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()
