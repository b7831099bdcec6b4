"""The PDF change request: what a change-advisory board asks for (impact, risk, implementation,
test plan, rollback, approval) and the firewall rules, numbered as in every export and grouped
by the firewall path that implements them.

`change_request()` gathers the content; `render_pdf()` lays it out with ReportLab. The rule
tables are plain strings wrapped by width, never a paragraph per cell: a change request of
thousands of rules renders in a few times what a bare ReportLab table of the same rows takes
(bench/export_pdf.py). Everything a user typed is escaped before it reaches a paragraph's markup.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC
from functools import cache
from pathlib import Path
from xml.sax.saxutils import escape

from django.conf import settings
from django.utils import timezone

from ..rules import PortRange
from . import Flow, RuleSet, Scope
from .firewall import SYNTAXES, Target

TLS_MARK = "◆"


def when(moment: object) -> str:
    """A time as a change request shows it: 2026-11-29 16:49 UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else ""


@dataclass
class ChangeRequest:
    """What the document says, gathered from a rule set and the request's parameters."""

    rule_set: RuleSet
    params: dict
    requester: str
    flows: list[Flow]
    delta: dict | None = None  # {"since": fingerprint} of a delta request
    removed: list[dict] = field(default_factory=list)  # flows of the earlier rule set that are gone
    changed: list[tuple[Flow, list[str], list[str]]] = field(default_factory=list)  # requirements added, gone
    generated: str = ""

    @property
    def deployment(self) -> object:
        return self.rule_set.deployment

    @property
    def reference(self) -> str:
        return self.params.get("reference") or f"CR-{self.deployment.pk}"

    @property
    def item_count(self) -> int:
        return sum(len(flow.items) for flow in self.flows)

    def groups(self) -> list[tuple[str, list[Flow]]]:
        """Flows by the firewall path that implements them (source site → destination site)."""
        found: dict[str, list[Flow]] = defaultdict(list)
        for flow in self.flows:
            found[flow.rule.firewall].append(flow)
        return sorted(found.items())

    def tls_numbers(self) -> str:
        return numbers_text([flow for flow in self.flows if flow.carries_tls], SHORT)

    def impact(self) -> list[tuple[str, str, str]]:
        """Per path of roles (who opens, who listens): its rules and the functions that stop without them."""
        found: dict[str, list[Flow]] = defaultdict(list)
        for flow in self.flows:
            found[flow.rule.path].append(flow)
        return [
            (path, numbers_text(members, SHORT), "; ".join(dict.fromkeys(f.purpose for f in members)))
            for path, members in sorted(found.items())
        ]

    def risks(self) -> list[str]:
        """What a reviewer should weigh, derived from the rules themselves."""
        flows, found = self.flows, []
        anywhere = [f for f in flows if "any" in (f.rule.source.address, f.rule.destination.address)]
        if anywhere:
            found.append(
                f"Rules {numbers_text(anywhere, SHORT)} allow any address on one side (sending mail servers, "
                "end users): that is what the product needs, and the only exposure beyond named hosts."
            )
        ranges = [f for f in flows if f.rule.ports.count > 1]
        if ranges:
            found.append(f"Rules {numbers_text(ranges, SHORT)} open port ranges, as the vendor requires.")
        tls = [f for f in flows if f.carries_tls]
        if tls:
            found.append(
                f"Rules {numbers_text(tls, SHORT)} are exempt from SSL decryption: a middlebox does not see into that "
                "traffic. Decrypting it breaks the product (the vendor's warning)."
            )
        failing = [f for f in flows if f.latest_probe and f.latest_probe.state != "open"]
        if failing:
            found.append(f"Rules {numbers_text(failing, SHORT)} failed their last probe: still closed or intercepted.")
        found.append("Each rule allows one protocol and port (range) between exactly the addresses given.")
        return found

    def test_plan(self) -> dict:
        """The probe run that verifies the rules: its command, its API call and the sites it runs from."""
        pk = self.deployment.pk
        ids = ",".join(str(item.pk) for flow in self.flows for item in flow.items)
        if not self.flows:
            return {"command": "", "api": "", "body": "", "sites": []}
        whole = self.rule_set.scope == Scope.ALL and not self.delta
        return {
            "command": f"python manage.py probe {pk} --wait" + ("" if whole else f" --items {ids}"),
            "api": f"POST /api/deployments/{pk}/probe-runs/",
            "body": "{}"
            if whole
            else json.dumps({"items": [int(i) for i in ids.split(",") if i]}, separators=(",", ":")),
            "sites": sorted(Counter(flow.rule.source.site for flow in self.flows).items()),
        }

    def rollback(self) -> list[str]:
        syntax = self.params.get("syntax")
        return SYNTAXES[syntax].rollback(self.flows, Target.of(self.rule_set, self.params)) if syntax else []


def change_request(rule_set: RuleSet, params: dict, user: object) -> ChangeRequest:
    requester = params.get("requester") or (user.get_full_name() or user.get_username() if user else "")
    request = ChangeRequest(rule_set, params, requester, rule_set.flows, generated=when(timezone.now()))
    if params.get("since"):
        request.delta = {"since": params["since"]}
        request.flows, request.removed, request.changed = delta(rule_set, params["since"])
    return request


def delta(rule_set: RuleSet, since: str) -> tuple[list[Flow], list[dict], list[tuple[Flow, list[str], list[str]]]]:
    """What changed since an earlier export, as a firewall sees it: flows added (whose source,
    destination, protocol and ports were not allowed before), flows gone, and flows that stay
    but now serve other requirements. A flow that loses one of its requirements is not removed."""
    earlier = rule_set.deployment.exports.get(fingerprint=since).rules
    before: dict[tuple, list[str]] = defaultdict(list)
    for rule in earlier:
        before[(rule["source"], rule["destination"], rule["protocol"], rule["port_start"], rule["port_end"])].append(
            rule["requirement"]
        )
    now = {flow.rule.flow: flow for flow in rule_set.flows}
    added = [flow for key, flow in now.items() if key not in before]
    removed = [
        {
            "source": src,
            "destination": dst,
            "protocol": proto,
            "ports": str(PortRange(start, end)),
            "requirements": uids,
        }
        for (src, dst, proto, start, end), uids in before.items()
        if (src, dst, proto, start, end) not in now
    ]
    changed = []
    for key, flow in now.items():
        uids = [requirement.uid for requirement in flow.requirements]
        if key in before and set(uids) != set(before[key]):
            changed.append((flow, sorted(set(uids) - set(before[key])), sorted(set(before[key]) - set(uids))))
    return added, removed, changed


SHORT = 240  # characters of a list of rule numbers in a table cell or a sentence


def numbers_text(flows: list[Flow], limit: int | None = None) -> str:
    """Rule numbers as runs: "1-4, 7, 9-12"; cut after `limit` characters with the count in all."""
    runs: list[list[int]] = []
    for number in sorted(flow.number for flow in flows):
        if runs and number == runs[-1][-1] + 1:
            runs[-1].append(number)
        else:
            runs.append([number])
    text = ", ".join(str(PortRange(run[0], run[-1])) for run in runs)
    if limit and len(text) > limit:
        text = f"{text[: text.rfind(', ', 0, limit)]}, … ({len(flows)} rules in all)"
    return text


# --- Layout ------------------------------------------------------------------------------

FONT, BOLD, MONO = "DejaVuSans", "DejaVuSans-Bold", "DejaVuSansMono"
# The rules table: (heading, width in mm); the page is A4 landscape with 12 mm margins (273 mm).
RULE_COLUMNS = [
    ("#", 14),
    ("Source", 36),
    ("Destination", 36),
    ("Proto", 13),
    ("Port(s)", 22),
    ("Direction", 34),
    ("Intf", 10),
    ("Purpose", 48),
    ("Required by", 34),
    ("Last probe", 26),
]


@cache
def _fonts() -> None:
    """DejaVu (its glyphs cover → ◆ † and every script a name may be typed in), registered once."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    directory = Path(settings.PDF_FONT_DIR)
    for name in (FONT, BOLD, MONO):
        path = directory / f"{name}.ttf"
        if not path.exists():
            raise RuntimeError(f"Font {path} is missing: install fonts-dejavu-core or set PDF_FONT_DIR.")
        pdfmetrics.registerFont(TTFont(name, str(path)))


def fit(text: str, size: float, width: float, font: str = FONT) -> str:
    """Text wrapped to a width as lines, words longer than the width cut: cheap, no paragraph."""
    from reportlab.lib.utils import simpleSplit
    from reportlab.pdfbase.pdfmetrics import stringWidth

    if stringWidth(text, font, size) <= width:
        return text
    lines = []
    for line in simpleSplit(text, font, size, width):
        while stringWidth(line, font, size) > width and len(line) > 1:
            cut = max(1, int(len(line) * width / stringWidth(line, font, size)))
            lines.append(line[:cut])
            line = line[cut:]
        lines.append(line)
    return "\n".join(lines)


class Styles:
    def __init__(self) -> None:
        from reportlab.lib.styles import ParagraphStyle
        from reportlab.lib.units import mm

        self.body = ParagraphStyle("body", fontName=FONT, fontSize=8.5, leading=11, spaceAfter=1.5 * mm)
        self.small = ParagraphStyle("small", parent=self.body, fontSize=7, leading=9, textColor="#555555")
        self.code = ParagraphStyle(
            "code", parent=self.body, fontName=MONO, fontSize=7, leading=9, wordWrap="CJK", backColor="#f4f4f4"
        )
        self.h1 = ParagraphStyle("h1", parent=self.body, fontName=BOLD, fontSize=20, leading=24, spaceAfter=5 * mm)
        self.h2 = ParagraphStyle(
            "h2", parent=self.body, fontName=BOLD, fontSize=12, leading=15, spaceBefore=5 * mm, spaceAfter=2 * mm
        )
        self.h3 = ParagraphStyle(
            "h3", parent=self.body, fontName=BOLD, fontSize=10, leading=12, spaceBefore=3 * mm, spaceAfter=1.5 * mm
        )
        self.cell = ParagraphStyle("cell", parent=self.body, fontSize=8, leading=10, spaceAfter=0)
        self.label = ParagraphStyle("label", parent=self.cell, fontSize=10, leading=13, textColor="#555555")
        self.value = ParagraphStyle("value", parent=self.cell, fontSize=10, leading=13)


def _p(text: str, style: object) -> object:
    """A paragraph of plain text: escaped, so that what users typed is never markup."""
    from reportlab.platypus import Paragraph

    return Paragraph(escape(text).replace("\n", "<br/>"), style)


GRID = "#999999"


def _table(rows: list[list], widths: list[float] | None = None, header: bool = True) -> object:
    from reportlab.platypus import LongTable, TableStyle

    style = [
        ("FONT", (0, 0), (-1, -1), FONT, 8, 10),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("GRID", (0, 0), (-1, -1), 0.5, GRID),
        ("LEFTPADDING", (0, 0), (-1, -1), 3),
        ("RIGHTPADDING", (0, 0), (-1, -1), 3),
    ]
    if header:
        style += [("FONT", (0, 0), (-1, 0), BOLD, 8, 10), ("BACKGROUND", (0, 0), (-1, 0), "#eeeeee")]
    table = LongTable(rows, colWidths=widths, repeatRows=1 if header else 0, hAlign="LEFT")
    table.setStyle(TableStyle(style))
    return table


def _rules_table(flows: list[Flow]) -> object:
    """The rows of one firewall path: plain strings fitted to their columns, TLS rules marked in red."""
    from reportlab.lib.units import mm
    from reportlab.platypus import LongTable, TableStyle

    widths = [width * mm for _, width in RULE_COLUMNS]
    inner = [width - 6 for width in widths]  # less the cells' padding
    rows: list[list[str]] = [[heading for heading, _ in RULE_COLUMNS]]
    style = [
        ("FONT", (0, 0), (-1, -1), FONT, 7.5, 9),
        ("FONT", (0, 0), (-1, 0), BOLD, 7.5, 9),
        ("FONT", (4, 1), (4, -1), MONO, 7.5, 9),
        ("BACKGROUND", (0, 0), (-1, 0), "#eeeeee"),
        ("TEXTCOLOR", (8, 1), (9, -1), "#555555"),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LINEBELOW", (0, 0), (-1, -1), 0.5, GRID),
        ("LINEABOVE", (0, 0), (-1, 0), 0.5, GRID),
        ("LEFTPADDING", (0, 0), (-1, -1), 3),
        ("RIGHTPADDING", (0, 0), (-1, -1), 3),
    ]
    for row, flow in enumerate(flows, start=1):
        rule, probe = flow.rule, flow.latest_probe
        signs = "".join(f" {note['sign']}" for note in flow.footnotes)
        if flow.carries_tls:
            style.append(("TEXTCOLOR", (0, row), (0, row), "#bb0000"))
        rows.append(
            [
                f"{flow.number}{' ' + TLS_MARK if flow.carries_tls else ''}",
                fit(f"{rule.source.address}\n{rule.source.name}", 7.5, inner[1]),
                fit(f"{rule.destination.address}\n{rule.destination.name}", 7.5, inner[2]),
                rule.protocol.upper(),
                fit(f"{rule.ports}{signs}", 7.5, inner[4], MONO),
                fit(f"{rule.direction}\n{rule.path}", 7.5, inner[5]),
                rule.interface,
                fit(flow.purpose, 7.5, inner[7]),
                fit(flow.uids, 7.5, inner[8]),
                fit(f"{probe.state}\n{when(probe.checked_at)} from {probe.site}", 7.5, inner[9])
                if probe
                else "not probed",
            ]
        )
    table = LongTable(rows, colWidths=widths, repeatRows=1, hAlign="LEFT")
    table.setStyle(TableStyle(style))
    return table


def render_pdf(request: ChangeRequest) -> bytes:
    import io

    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.units import mm
    from reportlab.platypus import KeepTogether, PageBreak, SimpleDocTemplate, Spacer, Table, TableStyle

    _fonts()
    s = Styles()
    deployment, version = request.deployment, request.deployment.catalog_version
    params, flows = request.params, request.flows
    story: list = [_p(f"Firewall change request{' (delta)' if request.delta else ''}", s.h1)]

    dlp = deployment.dlp_range
    cover = [
        ("Change reference", request.reference),
        ("Deployment", deployment.name),
        ("Team", deployment.team.name),
        ("Requester", request.requester),
        ("Date", request.generated),
        ("Requested implementation date", str(params.get("requested_date") or "as soon as possible")),
        ("Expiry", str(params.get("expiry") or "permanent")),
        ("Business justification", params.get("justification") or "—"),
        (
            "Scope",
            f"{Scope.labels[request.rule_set.scope]}: {len(flows)} firewall rule{'s' * (len(flows) != 1)} "
            f"({request.item_count} checklist items; items of the same source, destination, protocol and "
            "ports are one rule)",
        ),
        ("Catalog", f"{version.product.name} {version.version} — “{version.source_title}” ({version.source_file})"),
        ("DLP base port in use", f"{deployment.dlp_base_port}" + (f" (range {dlp})" if dlp else "")),
        ("Rule set fingerprint", f"sha256:{request.rule_set.fingerprint}"),
    ]
    if request.delta:
        cover.append(("Changes since", f"sha256:{request.delta['since']}"))
    table = Table([[_p(label, s.label), _p(value, s.value)] for label, value in cover], colWidths=[60 * mm, 205 * mm])
    table.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (-1, -1), 0)]))
    story.append(table)

    tls = request.tls_numbers()
    warning = (
        f"<b>Vendor warning.</b> {escape(version.warning)}<br/>"
        "No rule of this request may be dropped, blocked, or inspected by DPI or IPS."
        + (f" Rules marked {TLS_MARK} ({tls}) carry TLS: exempt them from SSL decryption." if tls else "")
    )
    from reportlab.platypus import Paragraph

    box = Table([[Paragraph(warning, s.value)]], colWidths=[265 * mm])
    box.setStyle(TableStyle([("BOX", (0, 0), (-1, -1), 2, "#bb0000"), ("TOPPADDING", (0, 0), (-1, -1), 6)]))
    story += [Spacer(1, 5 * mm), box, PageBreak()]

    story.append(_p("Summary", s.h2))
    directions = Counter(flow.rule.direction for flow in flows)
    story.append(_table([["Direction", "Rules"], *([d, str(n)] for d, n in sorted(directions.items()))]))
    story.append(_p("By destination", s.h3))
    destinations = Counter((flow.rule.destination.name, flow.rule.destination.address) for flow in flows)
    story.append(
        _table(
            [
                ["Destination", "Address", "Rules"],
                *([fit(n, 8, 280), fit(a, 8, 400), str(c)] for (n, a), c in sorted(destinations.items())),
            ],
            [100 * mm, 145 * mm, 20 * mm],
        )
    )

    story.append(_p("Impact", s.h2))
    story.append(
        _p("What stops working while these rules are missing, by who opens the connection and who listens.", s.body)
    )
    impact = [
        [_p(path, s.cell), _p(numbers, s.cell), _p(functions, s.cell)] for path, numbers, functions in request.impact()
    ]
    story.append(
        _table(
            [["Initiator → listener", "Rules", "Functions that break without them"], *impact],
            [75 * mm, 40 * mm, 150 * mm],
        )
    )

    story.append(_p("Risk", s.h2))
    story += [_p(f"• {risk}", s.body) for risk in request.risks()]

    if request.delta:
        story.append(_p("Rules to remove", s.h2))
        if request.removed:
            rows = [
                [
                    fit(r["source"], 8, 200),
                    fit(r["destination"], 8, 200),
                    r["protocol"].upper(),
                    r["ports"],
                    fit(", ".join(r["requirements"]), 8, 250),
                ]
                for r in request.removed
            ]
            widths = [75 * mm, 75 * mm, 20 * mm, 25 * mm, 70 * mm]
            story.append(_table([["Source", "Destination", "Protocol", "Port(s)", "Required by"], *rows], widths))
        else:
            story.append(_p("None.", s.body))
        if request.changed:
            story.append(_p("Rules that stay, for other requirements", s.h2))
            rows = [
                [
                    str(flow.number),
                    fit(flow.uids, 8, 300),
                    fit(", ".join(new) or "—", 8, 190),
                    fit(", ".join(gone) or "—", 8, 190),
                ]
                for flow, new, gone in request.changed
            ]
            widths = [15 * mm, 110 * mm, 70 * mm, 70 * mm]
            story.append(_table([["#", "Required by now", "Requirements added", "Requirements gone"], *rows], widths))
        story.append(_p("Rules to add", s.h2))
    else:
        story.append(_p("Rules", s.h2))
    notes = version.footnotes
    story.append(
        _p(
            "Numbers are the portal's rule numbers: the same in the firewall exports, the sheets and the checklist "
            f"page. {TLS_MARK} carries TLS: exempt from SSL decryption."
            + "".join(f" {note['sign']} see Notes." for note in notes),
            s.small,
        )
    )
    for path, members in request.groups():
        story.append(_p(f"Firewall path: site {path} ({len(members)} rule{'s' * (len(members) != 1)})", s.h3))
        story.append(_rules_table(members))
    if not flows:
        story.append(_p("No rules.", s.body))

    story.append(_p("Notes", s.h2))
    lines = [f"{note['sign']} {note['text']}" for note in notes]
    if dlp:
        lines.append(
            f"The DLP ranges ({version.configurable_range} by default) start at this deployment's DLP base port, "
            f"{deployment.dlp_base_port}: {dlp}."
        )
    lines += [
        f"{TLS_MARK} {version.warning}",
        "Protocols are the services' standard ones; the vendor's page names none.",
    ]
    story += [_p(f"• {line}", s.body) for line in lines]

    story.append(_p("Implementation", s.h2))
    steps = [
        "Compare the fingerprint above with the portal's current one: a different fingerprint means the rule set "
        "changed since this document.",
        "Implement each rule as an allow rule for the protocol and port or whole range given, between exactly the "
        "source and destination given. The portal's firewall exports (nftables, iptables, ip6tables, Cisco ASA, "
        "PAN-OS) hold these rules under the same numbers.",
        f"Exempt the rules marked {TLS_MARK}" + (f" ({tls})" if tls else "") + " from SSL decryption; exclude "
        "every rule from SMTP inspection, DPI and IPS blocking. The PAN-OS export holds no-decrypt rules for them.",
        'Mark the rules "opened" in the portal, and tell the requester.',
    ]
    story += [_p(f"{n}. {step}", s.body) for n, step in enumerate(steps, start=1)]

    plan = request.test_plan()
    sites = ", ".join(f"{site} ({count} rule{'s' * (count != 1)})" for site, count in plan["sites"])
    story.append(_p("Test plan", s.h2))
    if not flows:
        story.append(_p("No rules to add: nothing to probe.", s.body))
    story += (
        []
        if not flows
        else [
            _p(
                "The portal's probes test each rule from its source's site and record the evidence. A rule is verified "
                "when its probe reports open (for one-way UDP such as SNMP traps, when the receiver logs a test "
                "message); intercepted means a middlebox still decrypts or inspects it.",
                s.body,
            ),
            _p(f"• Sites that probe: {sites}. Each needs a live probe worker.", s.body),
            _p(f"• API: {plan['api']} with this body (a token of the team):", s.body),
            _p(plan["body"], s.code),
            _p("• Or on the portal's host:", s.body),
            _p(plan["command"], s.code),
        ]
    )

    story.append(_p("Rollback", s.h2))
    syntax = params.get("syntax")
    story.append(
        _p(
            f"To back the change out, remove rules {numbers_text(flows) or '—'}"
            + (f" ({syntax} below)" if syntax else "")
            + (
                f", and allow again the {len(request.removed)} rules this request removes (Rules to remove)."
                if request.removed
                else "; nothing else changes."
            ),
            s.body,
        )
    )
    if params.get("rollback"):
        story.append(_p(params["rollback"], s.body))
    commands = request.rollback()
    if commands:
        story.append(_p("\n".join(commands), s.code))

    approval = [["Role", "Name", "Signature", "Date"]] + [
        [role, request.requester if role == "Requester" else "", "", ""]
        for role in ("Requester", "Network security", "Change manager", "Implementer")
    ]
    signatures = _table(approval, [65 * mm, 80 * mm, 80 * mm, 40 * mm])
    signatures.setStyle(TableStyle([("FONT", (0, 1), (-1, -1), FONT, 9, 24)]))
    story.append(KeepTogether([_p("Approval", s.h2), signatures]))

    footer = f"{request.reference} · {deployment.name} · sha256:{request.rule_set.fingerprint[:16]}…"
    out = io.BytesIO()
    document = SimpleDocTemplate(
        out,
        pagesize=landscape(A4),
        leftMargin=12 * mm,
        rightMargin=12 * mm,
        topMargin=12 * mm,
        bottomMargin=16 * mm,
        title=f"Change request {request.reference} — {deployment.name}",
        author=request.requester,
    )
    document.build(story, canvasmaker=_numbered_canvas(footer))
    return out.getvalue()


def _numbered_canvas(footer: str) -> type:
    """A canvas that writes "Page n of N" and the footer once every page is known."""
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.units import mm
    from reportlab.pdfgen.canvas import Canvas

    class NumberedCanvas(Canvas):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            self.pages: list[dict] = []

        def showPage(self) -> None:  # ReportLab's name
            self.pages.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            width, _ = landscape(A4)
            for page in self.pages:
                self.__dict__.update(page)
                self.setFont(FONT, 7)
                self.setFillColor("#555555")
                self.drawString(12 * mm, 8 * mm, footer)
                self.drawRightString(width - 12 * mm, 8 * mm, f"Page {self._pageNumber} of {len(self.pages)}")
                super().showPage()
            super().save()

    return NumberedCanvas
