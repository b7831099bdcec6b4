"""A rule set as a sheet: CSV (the checklist API's text/csv) and XLSX, one row per flow, with the
same columns and numbers as every other export.

CSV is one table a parser reads as it is: a header row of the column names (SHEET_COLUMNS, then
ABOUT_COLUMNS), then a row per flow. What holds for the whole sheet (catalog, fingerprint, the
vendor's warning) is repeated in its own columns, so that a row filtered out of the sheet still
carries it. The XLSX puts that on its "About" sheet instead.

Both are written a row at a time (csv_chunks, openpyxl's write-only mode), so that an export of
MAX_RULES rules can be streamed and none holds a sheet of cell objects (bench/exports.py).
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import BinaryIO

from django.db.models import QuerySet
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from rest_framework.renderers import BaseRenderer

from ..models import ChecklistItem, Deployment
from ..rows import RENDERED_ROWS, items_among, kind_of
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


# The CSV's header: the name of each column.
CSV_COLUMNS = [name for name, _ in SHEET_COLUMNS + ABOUT_COLUMNS]


def csv_about(deployment: Deployment, fingerprint: str) -> dict[str, str]:
    """What every row of a CSV says of the whole sheet (ABOUT_COLUMNS)."""
    version = deployment.catalog_version
    return {
        "catalog": f"{version.product} {version.version}",
        "fingerprint": f"sha256:{fingerprint}",
        "warning": version.warning,
    }


def csv_row(flow: Flow, about: dict[str, str]) -> list[object]:
    """A flow's row of the CSV (made once, not once a cell)."""
    row = flow_row(flow) | about
    return [safe_cell(row[name]) for name in CSV_COLUMNS]


def csv_rows(rule_set: RuleSet) -> Iterator[list[object]]:
    """The CSV's rows: the header, then a row per flow."""
    about = csv_about(rule_set.deployment, rule_set.fingerprint)
    yield CSV_COLUMNS
    for flow in rule_set.flows:
        yield csv_row(flow, about)


def csv_checklist(deployment: Deployment, items: QuerySet[ChecklistItem], fingerprint: str) -> bytes:
    """The CSV of these items (read with_latest_probe()) under `fingerprint`: the bytes of
    csv_chunks(csv_rows()), each flow's line kept (ports.rows) until one of its items changes, so
    that the sheet read right after a status change writes one line again."""
    flows: dict[int, list[tuple]] = defaultdict(list)
    for row in RENDERED_ROWS.versions(deployment):
        flows[row[1]].append(row)  # its items' pks and versions are a flow's version
    about = csv_about(deployment, fingerprint)

    def render(numbers: list[int]) -> dict[int, bytes]:
        chosen = RuleSet(deployment, list(items_among(items, [row[0] for number in numbers for row in flows[number]])))
        return {flow.number: b"".join(csv_chunks([csv_row(flow, about)])) for flow in chosen.flows}

    kind = kind_of("csv", deployment, fingerprint)
    lines = RENDERED_ROWS.rows(kind, {number: flows[number] for number in sorted(flows)}, render)
    return b"".join(csv_chunks([CSV_COLUMNS])) + b"".join(lines)


def csv_table(rule_set: RuleSet) -> list[list[object]]:
    return list(csv_rows(rule_set))


def csv_chunks(rows: Iterable[list[object]], rows_per_chunk: int = 500) -> Iterator[bytes]:
    """Rows as CSV in UTF-8, a chunk of rows at a time: a streamed response sends each chunk as
    it is written, and the chunks joined are the bytes ChecklistCSVRenderer gives."""
    out = io.StringIO()
    writer = csv.writer(out)
    for count, row in enumerate(rows, 1):
        writer.writerow(row)
        if count % rows_per_chunk == 0:
            yield out.getvalue().encode("utf-8")
            out.seek(0)
            out.truncate()
    yield out.getvalue().encode("utf-8")


class ChecklistCSVRenderer(BaseRenderer):
    """Rows (lists) as CSV; errors come out as a one-column table."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(
        self, data: object, accepted_media_type: str | None = None, renderer_context: dict | None = None
    ) -> bytes:
        if isinstance(data, dict) and "rows" in data:
            rows = data["rows"]
        else:
            rows = [["error"], [data.get("detail", data) if isinstance(data, dict) else data]]
        return b"".join(csv_chunks(rows))


# Times on a sheet: the portal keeps UTC, and the format says so.
TIME_FORMAT = 'yyyy-mm-dd hh:mm "UTC"'


def text_cell(sheet: object, value: object) -> object:
    """A value as a write-only sheet's cell in which text stays text.

    openpyxl takes a string that starts with "=" for a formula and one of its error codes
    ("#N/A", "#REF!": all start with "#") for an error, unless the cell says text: such a
    string goes as a cell typed as text. Any other string, number, boolean or empty cell goes
    as it is, which openpyxl types right (text as text): a cell object for each of the half a
    million cells of MAX_RULES rules would cost more than writing them."""
    if isinstance(value, str) and value[:1] in ("=", "#"):
        cell = WriteOnlyCell(sheet, value)
        cell.data_type = "s"
        return cell
    if isinstance(value, datetime):
        cell = WriteOnlyCell(sheet, value)
        cell.number_format = TIME_FORMAT
        return cell
    return value


def write_xlsx(rule_set: RuleSet, out: BinaryIO) -> None:
    """A workbook: a row per flow on "Rules" (headed by the columns' labels), and "About": the
    catalog, fingerprint, warning and footnotes.

    In openpyxl's write-only mode: each row goes to a temporary file as it is appended. The
    default mode keeps every cell as an object, and styling each row after appending it (as
    this did before) looked the last row up by scanning them all: quadratic, more than 300 s
    at MAX_RULES."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font
    from openpyxl.utils import get_column_letter

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Rules")
    sheet.freeze_panes = "A2"  # a write-only sheet takes its layout before its first row
    header = [WriteOnlyCell(sheet, label) for _, label in SHEET_COLUMNS]
    for cell in header:
        cell.data_type, cell.font = "s", Font(bold=True)
    sheet.append(header)
    for flow in rule_set.flows:
        row = flow_row(flow)
        sheet.append([text_cell(sheet, xlsx_cell(row[name])) for name, _ in SHEET_COLUMNS])
    # The filter spans the header and every row, as the default mode's sheet.dimensions said.
    sheet.auto_filter.ref = f"A1:{get_column_letter(len(SHEET_COLUMNS))}{len(rule_set.flows) + 1}"

    info = workbook.create_sheet("About")
    info.column_dimensions["A"].width = 40
    info.column_dimensions["B"].width = 120
    for label, value in rule_set.about():
        cells = [WriteOnlyCell(info, xlsx_cell(label)), WriteOnlyCell(info, xlsx_cell(value))]
        for cell in cells:
            cell.data_type = "s"  # the title is the deployment's name: what a user typed
        cells[1].alignment = Alignment(wrap_text=True, vertical="top")
        info.append(cells)
    workbook.save(out)
