"""The change request's layout at scale: its work grows with the rules, not with their square, and
a job in a worker says how far the layout has come (issue 20: 2,480 rules with a rollback took
100 s, all of it at "laying out the PDF (40 %)")."""

from __future__ import annotations

import io

import pytest
from pypdf import PdfReader
from reportlab.platypus.paragraph import Paragraph

from ports import tasks
from ports.exports import ExportParams, RuleSet, Scope
from ports.exports.layout import render_pdf
from ports.exports.pdf import change_request
from ports.models import ChangeRequestJob

from .conftest import create_deployment


@pytest.fixture
def large_deployment(catalog, user, full_document):
    """A deployment of 16 appliances without Personal Email Manager (no mesh between appliances):
    its rules grow with the appliances. Loopback addresses only."""
    document = {
        **full_document,
        "features": [feature for feature in full_document["features"] if feature != "pem"],
        "appliances": [
            {"hostname": f"esa{n}.example.test", "c_address": f"127.5.0.{n + 1}", "p1_address": f"127.6.0.{n + 1}"}
            for n in range(16)
        ],
    }
    return create_deployment(document)


def first_rules(deployment, count: int, **params: object) -> tuple[RuleSet, dict]:
    """The first `count` firewall rules of the deployment, as a selection."""
    flows = RuleSet.build(deployment, {"scope": Scope.ALL}).flows[:count]
    params = {"scope": Scope.SELECTION, "items": [item.pk for flow in flows for item in flow.items], **params}
    return RuleSet.build(deployment, params), params


def test_the_text_broken_into_lines_per_rule_does_not_grow_with_the_rules(large_deployment, monkeypatch):
    """ReportLab breaks a paragraph into lines again, all of what is left of it, at each page it is
    split across: a rollback of a line per rule as one paragraph cost the square of the rules."""
    broken = [0]

    def counted(method: object) -> object:
        def breaking(paragraph: Paragraph, *args: object, **kwargs: object) -> object:
            broken[0] += sum(len(getattr(frag, "text", "")) for frag in paragraph.frags)
            return method(paragraph, *args, **kwargs)

        return breaking

    monkeypatch.setattr(Paragraph, "breakLines", counted(Paragraph.breakLines))
    monkeypatch.setattr(Paragraph, "breakLinesCJK", counted(Paragraph.breakLinesCJK))
    per_rule, laid_out = {}, {}
    for count in (40, 320):
        rule_set, params = first_rules(large_deployment, count, syntax="iptables")
        assert len(rule_set.flows) == count
        request = change_request(rule_set, params, None)
        broken[0] = 0
        laid_out[count] = request, render_pdf(request)
        per_rule[count] = broken[0] / count
    assert per_rule[320] <= per_rule[40], per_rule
    # Every deletion of the rollback is in the PDF, in order (the long ones wrapped).
    for request, pdf in laid_out.values():
        text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
        shown = [line for line in text.splitlines() if line.startswith("-D ")]
        deletions = [line for line in request.rollback() if line.startswith("-D ")]
        assert len(shown) == len(deletions) > len(request.flows) * 0.9
        assert all(whole.startswith(start) for start, whole in zip(shown, deletions, strict=True))


def test_the_layout_reports_the_share_of_the_rules_laid_out(large_deployment):
    rule_set, params = first_rules(large_deployment, 320)
    shares: list[float] = []
    render_pdf(change_request(rule_set, params, None), progress=shares.append)
    assert shares == sorted(shares) and shares[-1] == 1.0
    # Each row when it is fitted (the first half), then each page's part of the table placed.
    placed = [share for share in shares if share > 0.5]
    assert 5 < len(placed) < 320, placed


def test_progress_is_written_at_most_once_a_second(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(tasks.time, "monotonic", lambda: now[0])
    written = []
    job = ChangeRequestJob(pk=1)
    monkeypatch.setattr(job, "advance", lambda progress, stage: written.append((progress, stage)))
    advance = tasks.progress_of(job, 40, 90, "laying out the PDF")
    for at, share in [(100.5, 0.1), (101.0, 0.2), (101.2, 0.3), (101.9, 0.4), (102.5, 0.6), (102.6, 1.0)]:
        now[0] = at
        advance(share)
    assert written == [(50, "laying out the PDF"), (70, "laying out the PDF")]


def test_a_job_moves_while_the_pdf_is_laid_out(large_deployment, user, monkeypatch):
    clock = iter(range(0, 100_000, 1))  # a second passes at each look at the clock
    monkeypatch.setattr(tasks.time, "monotonic", lambda: next(clock))
    seen = []
    advance = ChangeRequestJob.advance
    monkeypatch.setattr(
        ChangeRequestJob,
        "advance",
        lambda job, progress, stage, **fields: seen.append(progress) or advance(job, progress, stage, **fields),
    )
    _, params = first_rules(large_deployment, 320, syntax="nftables")
    job = ChangeRequestJob.objects.create(
        deployment=large_deployment, requested_by=user, params=ExportParams(params).data
    )
    tasks.render_change_request(job.pk)
    job.refresh_from_db()
    assert job.status == ChangeRequestJob.Status.DONE and job.rule_count == 320 and bytes(job.pdf).startswith(b"%PDF")
    during = [progress for progress in seen if 40 < progress < 100]
    assert len(during) > 10 and during == sorted(during) and during[-1] == 95, seen
