import csv
import io

from rest_framework.renderers import BaseRenderer

# The checklist's columns in a spreadsheet, in reading order.
CHECKLIST_COLUMNS = [
    "id",
    "requirement",
    "table",
    "source_role",
    "source_name",
    "source",
    "source_site",
    "destination_role",
    "destination_name",
    "destination",
    "destination_site",
    "interface",
    "protocol",
    "ports",
    "direction",
    "description",
    "notes",
    "status",
    "status_changed_at",
    "probe_state",
    "probe_summary",
    "probe_checked_at",
]


class ChecklistCSVRenderer(BaseRenderer):
    """The checklist's items as CSV (errors come out as a one-column table)."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(
        self, data: object, accepted_media_type: str | None = None, renderer_context: dict | None = None
    ) -> bytes:
        out = io.StringIO()
        if isinstance(data, dict) and "items" in data:
            writer = csv.DictWriter(out, fieldnames=CHECKLIST_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            for item in data["items"]:
                probe = item.get("probe") or {}
                writer.writerow(
                    {
                        **item,
                        "notes": " ".join(item["notes"]),
                        "probe_state": probe.get("state", "not probed"),
                        "probe_summary": probe.get("summary", ""),
                        "probe_checked_at": probe.get("checked_at", ""),
                    }
                )
        else:
            writer = csv.writer(out)
            writer.writerow(["error"])
            writer.writerow([data.get("detail", data) if isinstance(data, dict) else data])
        return out.getvalue().encode(self.charset)
