"""The change request laid out with ReportLab: the cover, the CAB sections and a table of rules
per firewall path. ReportLab takes a quarter of a second to load: this module is imported by
what makes PDFs (the change request's task and view), not by the exports package."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable
from functools import cache
from pathlib import Path
from xml.sax.saxutils import escape

from django.conf import settings
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.lib.utils import simpleSplit
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    CondPageBreak,
    Flowable,
    KeepTogether,
    LongTable,
    PageBreak,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from . import Flow, Scope
from .pdf import TLS_MARK, RequestDocument, numbers_text, when

FONT, BOLD, MONO = "DejaVuSans", "DejaVuSans-Bold", "DejaVuSansMono"
# The rules table: (heading, width in mm); the page is A4 landscape with 12 mm margins (273 mm).
TABLE_COLUMNS = [
    ("#", 14),
    ("Source", 36),
    ("Destination", 36),
    ("Proto", 13),
    ("Port(s)", 22),
    ("Direction", 34),
    ("Intf", 10),
    # A requirement id is never cut: copied from the PDF it must equal the API's. The widest the
    # catalog has fits this column whole, one id a line (a test holds every id of it to that).
    ("Purpose, required by", 82),
    ("Last probe", 26),
]


@cache
def _fonts() -> None:
    """DejaVu (its glyphs cover → ◆ † and every script a name may be typed in), registered once."""

    directory = Path(settings.PDF_FONT_DIR)
    for name in (FONT, BOLD, MONO):
        path = directory / f"{name}.ttf"
        if not path.exists():
            raise RuntimeError(f"Font {path} is missing: install fonts-dejavu-core or set PDF_FONT_DIR.")
        pdfmetrics.registerFont(TTFont(name, str(path)))


def fit(text: str, size: float, width: float, font: str = FONT) -> str:
    """Text wrapped to a width as lines, words longer than the width cut: cheap, no paragraph."""

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
        self.body = ParagraphStyle("body", fontName=FONT, fontSize=8.5, leading=11, spaceAfter=1.5 * mm)
        self.small = ParagraphStyle("small", parent=self.body, fontSize=7, leading=9, textColor="#555555")
        self.code = ParagraphStyle("code", parent=self.body, fontName=MONO, fontSize=7, leading=9, backColor="#f4f4f4")
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

    return Paragraph(escape(text).replace("\n", "<br/>"), style)


CODE_WIDTH = 265 * mm  # the frame's width less its padding, as the warning box


class Code(Flowable):
    """Commands (a rollback, a probe run's call) as lines of the code style, fitted once to the
    page's width, on the style's background.

    Not a paragraph: ReportLab breaks a paragraph into lines again, all of what is left of it, at
    every page it is split across. A rollback is a line per rule, pages of it: as one paragraph,
    2,560 rules took two minutes of line breaking (issue 20). Here a page break cuts a list of lines.
    """

    def __init__(self, lines: list[str], style: ParagraphStyle) -> None:
        super().__init__()
        self.lines, self.style = lines, style

    @classmethod
    def of(cls, text: str, style: ParagraphStyle) -> Code:
        fitted = (fit(line, style.fontSize, CODE_WIDTH, style.fontName) for line in text.splitlines())
        return cls("\n".join(fitted).splitlines(), style)

    def wrap(self, available_width: float, available_height: float) -> tuple[float, float]:
        self.width, self.height = available_width, self.style.leading * len(self.lines)
        return self.width, self.height

    def split(self, available_width: float, available_height: float) -> list[Flowable]:
        fits = int(available_height // self.style.leading)
        if fits < 1 or fits >= len(self.lines):
            return []
        return [Code(self.lines[:fits], self.style), Code(self.lines[fits:], self.style)]

    def draw(self) -> None:
        canvas, style = self.canv, self.style
        canvas.setFillColor(style.backColor)
        canvas.rect(0, 0, self.width, self.height, stroke=0, fill=1)
        canvas.setFillColor(style.textColor)
        text = canvas.beginText(0, self.height - style.fontSize)
        text.setFont(style.fontName, style.fontSize, style.leading)
        for line in self.lines:
            text.textLine(line)
        canvas.drawText(text)


GRID = "#999999"


def _table(rows: list[list], widths: list[float] | None = None, header: bool = True) -> object:
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


class Progress:
    """The share of a change request's rules laid out, told to a callback. A rule counts twice: when
    its row is fitted to the columns, and when the row is placed on a page (the two take most of
    the time, about a third and two thirds)."""

    def __init__(self, rules: int, report: Callable[[float], None] | None) -> None:
        self.steps, self.done, self.report = 2 * rules, 0, report

    def advance(self, steps: int = 1) -> None:
        if self.report and self.steps:
            self.done += steps
            self.report(min(1.0, self.done / self.steps))


def _rules_table(flows: list[Flow], progress: Progress) -> object:
    """The rows of one firewall path: plain strings fitted to their columns, TLS rules marked in red."""

    widths = [width * mm for _, width in TABLE_COLUMNS]
    inner = [width - 6 for width in widths]  # less the cells' padding
    rows: list[list[str]] = [[heading for heading, _ in TABLE_COLUMNS]]
    style = [
        ("FONT", (0, 0), (-1, -1), FONT, 7.5, 9),
        ("FONT", (0, 0), (-1, 0), BOLD, 7.5, 9),
        ("FONT", (4, 1), (4, -1), MONO, 7.5, 9),
        ("BACKGROUND", (0, 0), (-1, 0), "#eeeeee"),
        ("TEXTCOLOR", (8, 1), (8, -1), "#555555"),
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
                "\n".join([fit(flow.purpose, 7.5, inner[7]), *(r.uid for r in flow.requirements)]),
                fit(f"{probe.state}\n{when(probe.checked_at)} from {probe.site}{stopped(flow)}", 7.5, inner[8])
                if probe
                else "not probed",
            ]
        )
        progress.advance()
    table = RulesTable(rows, colWidths=widths, repeatRows=1, hAlign="LEFT")
    table.setStyle(TableStyle(style))
    return table


def stopped(flow: Flow) -> str:
    """What a failing rule's last probe adds on where its traffic stops: "stops after 10.0.1.1: ask
    its owner", on a line of its own; nothing for a rule that does not fail or says nowhere."""
    stop = flow.stop
    if stop is None:
        return ""
    address, how = stop
    return f"\n{how.label} {address}: ask its owner"


class RulesTable(LongTable):
    """A table of rules. The parts ReportLab splits it into at page breaks are of the same class:
    the document counts the rules laid out by them (Document.afterFlowable)."""


class Document(SimpleDocTemplate):
    """The change request's document, advancing `progress` by the rules placed each time a page's
    part of a rules table is placed."""

    def __init__(self, out: io.BytesIO, progress: Progress, **options: object) -> None:
        super().__init__(out, **options)
        self.progress = progress

    def afterFlowable(self, flowable: Flowable) -> None:  # ReportLab's name
        if isinstance(flowable, RulesTable):
            self.progress.advance(flowable._nrows - flowable.repeatRows)  # each part repeats the heading row


def render_pdf(request: RequestDocument, progress: Callable[[float], None] | None = None) -> bytes:
    """The change request as PDF; `progress`, if given, is called with the share of the rules laid
    out (0 to 1) as the pages are made, the most of the time a large request takes."""
    _fonts()
    s = Styles()
    deployment, version = request.deployment, request.deployment.catalog_version
    params, flows = request.params, request.flows
    laid_out = Progress(len(flows), progress)
    story: list = [_p(f"Firewall change request{' (delta)' if request.delta else ''}", s.h1)]

    dlp = deployment.dlp_range
    cover = [
        ("Change reference", request.reference),
        # A request of the portal says what it asks and where it stands, first: the PDF is a snapshot.
        *([("Title", request.title), ("State", request.state)] if request.record is not None else []),
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
        # A path's heading starts a page rather than end one: its table's head and first rows go with it.
        story.append(CondPageBreak(40 * mm))
        story.append(_p(f"Firewall path: site {path} ({len(members)} rule{'s' * (len(members) != 1)})", s.h3))
        story.append(_rules_table(members, laid_out))
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
        'Mark the rules "opened" in the portal, and tell the requester.'
        if request.request_id is None
        else f"Mark the request implemented in the portal (POST /api/requests/{request.request_id}/implement/): "
        "its rules are probed at once, and the request is verified when every one of them probes open.",
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
            Code.of(plan["body"], s.code),
            _p("• Or on the portal's host:", s.body),
            Code.of(plan["command"], s.code),
        ]
    )
    # The rules that fail now name the device in their way: the firewall whose owner the change is for.
    stops = request.stops()
    if stops:
        story.append(_p("• Where the rules that fail now stop, as their last probes found:", s.body))
        story += [_p(f"  – {stop}", s.body) for stop in stops]

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
        story.append(Code.of("\n".join(commands), s.code))

    if request.record is None:
        approval = [["Role", "Name", "Signature", "Date"]] + [
            [role, request.requester if role == "Requester" else "", "", ""]
            for role in ("Requester", "Network security", "Change manager", "Implementer")
        ]
        signatures = _table(approval, [65 * mm, 80 * mm, 80 * mm, 40 * mm])
        signatures.setStyle(TableStyle([("FONT", (0, 1), (-1, -1), FONT, 9, 24)]))
        story.append(KeepTogether([_p("Approval", s.h2), signatures]))
    else:
        story += _record(request, s)

    footer = f"{request.reference} · {deployment.name} · sha256:{request.rule_set.fingerprint[:16]}…"
    out = io.BytesIO()
    document = Document(
        out,
        laid_out,
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


def _record(request: RequestDocument, s: Styles) -> list[Flowable]:
    """A request of the portal's record in place of signature lines: each step with who took it,
    when and why, as the portal kept it (the approvals were given there, under four eyes)."""
    rows = [
        [_p(step.step, s.cell), _p(step.by, s.cell), _p(step.at, s.cell), _p(step.comment, s.cell)]
        for step in request.record
    ]
    heading = [
        CondPageBreak(40 * mm),  # the heading goes with the table's first rows
        _p("Record", s.h2),
        _p(
            f"State: {request.state}. The steps of this request as the portal recorded them; no one approves or "
            "rejects a request they drafted or submitted.",
            s.body,
        ),
    ]
    return [*heading, _table([["Step", "By", "When", "Comment"], *rows], [35 * mm, 50 * mm, 40 * mm, 140 * mm])]


def _numbered_canvas(footer: str) -> type:
    """A canvas that writes "Page n of N" and the footer once every page is known."""

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
