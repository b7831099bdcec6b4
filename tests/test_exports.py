"""Change requests and exports, read back with real parsers and checked by real firewalls' tools."""

from __future__ import annotations

import io
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings
from openpyxl import load_workbook
from pypdf import PdfReader
from rest_framework.test import APIClient

from ports.exports import RuleSet, Scope
from ports.exports.firewall import cisco_asa, panos
from probes.models import ProbeResult, ProbeRun

from .conftest import create_deployment, make_member, token_client
from .probe_worker import Worker, flush_broker, needs_redis

GOLDEN = Path(__file__).parent / "golden"
PARAMS = {
    "reference": "CHG-4711",
    "requester": "Alice Admin",
    "justification": "New mail gateways in DC1",
    "requested_date": "2026-12-10",
    "expiry": "2027-12-10",
}


def pdf_text(content: bytes) -> str:
    reader = PdfReader(io.BytesIO(content))
    return "\n".join(page.extract_text() for page in reader.pages)


def flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_change_request_pdf_has_cover_rules_footnotes_and_warning(deployment, api, tmp_path):
    response = api.get(f"/api/deployments/{deployment.pk}/change-request.pdf", PARAMS)
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/pdf"
    fingerprint = response.headers["Checklist-Fingerprint"]
    assert re.fullmatch(r"[0-9a-f]{64}", fingerprint)
    text = pdf_text(response.content)
    words = flat(text)
    for expected in [
        "Firewall change request",
        "CHG-4711",
        "Mail gateways",
        "Mail team",
        "Alice Admin",
        "New mail gateways in DC1",
        "2026-12-10",
        "2027-12-10",
        "Forcepoint Email Security 2026.1",
        "Overview of Email Security Ports",
        f"sha256:{fingerprint}",
        "all rules; 81 rules",
    ]:
        assert expected in words, expected
    # Every rule: its number, endpoints and ports, and the path of the firewall that owns it.
    for number, item in enumerate(deployment.checklist.all(), start=1):
        row = re.search(rf"(?m)^{number}\s*(?:◆\s*)?{re.escape(item.source)}\s", text)
        assert row, (number, item.source)
        cells = text[row.end() : row.end() + 300]  # a row's cells come out line by line
        assert item.destination in cells and re.search(rf"\s{item.ports}\*?\s", cells), (number, cells)
    assert "Firewall path: site default → default" in words and "site hq → default" in words
    assert "site office → default" in words
    assert "The port range 17700–17714 must be open for communications with Forcepoint Email Security." in words
    assert "DLP base port, 17500: 17500-17515" in words
    assert "decrypted (including SSL Decryption or Deep Packet Inspection)" in words
    assert "Approval" in words and "Change manager" in words and "Page 1 of" in words
    assert "Implementation and verification" in words

    # The first pages are not blank when rendered.
    path = tmp_path / "request.pdf"
    path.write_bytes(response.content)
    subprocess.run(
        ["pdftoppm", "-r", "40", "-f", "1", "-l", "2", "-gray", str(path), str(tmp_path / "page")], check=True
    )
    pages = sorted(tmp_path.glob("page-*.pgm"))
    assert len(pages) == 2
    for page in pages:
        pixels = page.read_bytes().split(b"\n", 3)[3]  # P5 header: magic, size, maxval
        dark = sum(1 for value in pixels if value < 128)
        assert dark > 500, page


def test_scopes_select_the_rules(deployment, api, user):
    items = list(deployment.checklist.all())
    items[0].change_status("verified", user)
    items[1].change_status("waived", user)
    run = ProbeRun.objects.create(deployment=deployment, timeout=1, deadline="2100-01-01T00:00Z")
    for item, state in [(items[2], "filtered"), (items[3], "open"), (items[4], "intercepted")]:
        ProbeResult.objects.create(
            run=run, item=item, site="default", state=state, is_latest=True, checked_at="2026-11-29T10:00Z"
        )

    def rules(scope: str, **extra) -> list[int]:
        return [item.pk for item in RuleSet.build(deployment, {"scope": scope, **extra}).items]

    assert len(rules(Scope.ALL)) == 81
    assert rules(Scope.UNVERIFIED) == [i.pk for i in items[2:]]
    assert rules(Scope.FAILED) == [items[2].pk, items[4].pk]
    assert rules(Scope.SELECTION, items=[items[5].pk, items[7].pk]) == [items[5].pk, items[7].pk]

    response = api.get(f"/api/deployments/{deployment.pk}/change-request.pdf", {"scope": "failed"})
    words = flat(pdf_text(response.content))
    assert "rules whose last probe failed; 2 rules" in words and "filtered" in words and "intercepted" in words


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"scope": "everything"}, "scope"),
        ({"scope": "selection"}, "items"),
        ({"scope": "selection", "items": "1,x"}, "items"),
        ({"scope": "selection", "items": "999999"}, "items"),
        ({"requested_date": "2026-12-10", "expiry": "2026-12-01"}, "expiry"),
        ({"requested_date": "tomorrow"}, "requested_date"),
        ({"since": "0" * 64}, "since"),
        ({"since": "not-a-fingerprint"}, "since"),
    ],
)
def test_bad_export_parameters_get_400(deployment, api, params, field):
    for url in ["change-request.pdf", "firewall/nftables/", "checklist.xlsx"]:
        response = api.get(f"/api/deployments/{deployment.pk}/{url}", params)
        assert response.status_code == 400, (url, response.content[:200])
        assert field in response.json()
    assert list(deployment.exports.values_list("kind", flat=True)) == ["checklist"]  # only the regeneration's


def test_fingerprint_follows_the_rule_set_not_its_status(deployment, api, user):
    url = f"/api/deployments/{deployment.pk}/change-request.pdf"
    first = api.get(url).headers["Checklist-Fingerprint"]
    deployment.checklist.first().change_status("opened", user)
    assert api.get(url).headers["Checklist-Fingerprint"] == first
    response = api.patch(f"/api/deployments/{deployment.pk}/", {"dlp_base_port": 18000}, format="json")
    assert response.status_code == 200
    assert api.get(url).headers["Checklist-Fingerprint"] != first


def test_diff_and_delta_change_request_since_an_earlier_export(deployment, api):
    before = api.get(f"/api/deployments/{deployment.pk}/firewall/nftables/").headers["Checklist-Fingerprint"]
    api.patch(f"/api/deployments/{deployment.pk}/", {"dlp_base_port": 18000}, format="json")
    diff = api.get(f"/api/deployments/{deployment.pk}/checklist/diff/", {"since": before}).json()
    assert diff["since"] == before and diff["now"] != before
    assert {r["ports"] for r in diff["added"]} == {"18000-18015"} and len(diff["added"]) == 9
    assert {r["ports"] for r in diff["removed"]} == {"17500-17515"} and len(diff["removed"]) == 9

    delta = api.get(f"/api/deployments/{deployment.pk}/change-request.pdf", {"since": before})
    words = flat(pdf_text(delta.content))
    assert "Firewall change request (delta)" in words and f"sha256:{before}" in words
    assert "Rules to remove" in words and "Rules to add" in words
    assert "18000-18015" in words and "17500-17515" in words
    assert "fes.off-appliance.25-tcp" not in words  # unchanged rules are not repeated


def test_catalog_diff_between_versions(catalog, api, tmp_path):
    document = yaml.safe_load((settings.BASE_DIR / "ports/catalogs/forcepoint-email-security-2026.1.yaml").read_text())
    document["version"] = "2027.1"
    document["requirements"] = [r for r in document["requirements"] if r["id"] != "fes.off-appliance.56992-tcp"]
    document["requirements"][0]["description"] = "Personal Email Manager portal"
    path = tmp_path / "next.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    call_command("load_catalog", str(path), verbosity=0)
    diff = api.get("/api/catalog/diff/", {"from": "2026.1", "to": "2027.1"}).json()
    assert diff["removed"] == ["fes.off-appliance.56992-tcp"] and diff["added"] == []
    assert diff["changed"] == [
        {
            "id": "fes.appliance.9449-tcp.end-users",
            "changes": {
                "description": {
                    "from": "Personal Email Manager load balancing, Secure Message Delivery end-user portal",
                    "to": "Personal Email Manager portal",
                }
            },
        }
    ]
    assert api.get("/api/catalog/diff/", {"from": "2026.1", "to": "1999"}).status_code == 400


def test_xlsx_holds_every_rule(deployment, api):
    response = api.get(f"/api/deployments/{deployment.pk}/checklist.xlsx")
    assert response.status_code == 200
    workbook = load_workbook(io.BytesIO(response.content))
    rows = list(workbook["Rules"].iter_rows(values_only=True))
    assert rows[0][:11] == (
        "#",
        "Source",
        "Source name",
        "Source role",
        "Source site",
        "Destination",
        "Destination name",
        "Destination role",
        "Destination site",
        "Protocol",
        "Port(s)",
    )
    assert len(rows) == 82
    assert rows_by_port(rows, "25")[0][1:11] == (
        "any",
        "Internet",
        "mail_senders",
        "default",
        "127.0.2.1",
        "esa1.example.test",
        "appliance",
        "default",
        "tcp",
        "25",
    )
    about = dict(workbook["About"].iter_rows(values_only=True))
    assert about["Fingerprint (SHA-256 of the rule set)"] == response.headers["Checklist-Fingerprint"]


def rows_by_port(rows: list[tuple], port: str) -> list[tuple]:
    return [row for row in rows if row[10] == port]


def test_nftables_export_is_accepted_by_nft(deployment, api, tmp_path):
    response = api.get(f"/api/deployments/{deployment.pk}/firewall/nftables/")
    text = response.content.decode()
    assert text.count(" accept comment ") == 78  # the three rules to a hostname wait to be resolved
    assert "# rule #" in text and "names a host: resolve" in text
    assert 'ip saddr 127.0.4.4 ip daddr 127.0.2.1 tcp dport 17700-17714 accept comment "#' in text
    assert "udp dport 53" in text and "ip daddr 127.0.4.11 udp dport 162" in text
    path = tmp_path / "rules.nft"
    path.write_text(text)
    checked = subprocess.run(["nft", "-c", "-f", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    path.write_text(text.replace("tcp dport 25 ", "tcp dport 25x "))  # the tool does reject a bad file
    assert subprocess.run(["nft", "-c", "-f", str(path)], capture_output=True).returncode != 0


def test_iptables_export_is_accepted_by_iptables_restore(deployment, api, tmp_path):
    response = api.get(f"/api/deployments/{deployment.pk}/firewall/iptables/")
    text = response.content.decode()
    assert "-A FES_" in text and "--dport 17500:17515" in text and "-s 127.0.8.0/24" in text
    path = tmp_path / "rules.v4"
    path.write_text(text)
    restore = "iptables-restore"
    checked = subprocess.run([restore, "--test", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    path.write_text(text.replace("--dport 25 ", "--dport 99999 "))
    assert subprocess.run([restore, "--test", str(path)], capture_output=True).returncode != 0


@pytest.mark.parametrize(("render", "golden"), [(cisco_asa, "full.asa"), (panos, "full.panos")])
def test_asa_and_panos_exports_match_reviewed_golden_files(deployment, render, golden):
    rule_set = RuleSet.build(deployment, {"scope": Scope.ALL})
    text = render(rule_set, "Mail gateways (Mail team), Forcepoint Email Security 2026.1", "fes_gold")
    assert text == (GOLDEN / golden).read_text()


def test_other_teams_and_anonymous_get_nothing(deployment, other_api):
    urls = [
        f"/api/deployments/{deployment.pk}/change-request.pdf",
        f"/api/deployments/{deployment.pk}/checklist.xlsx",
        f"/api/deployments/{deployment.pk}/firewall/asa/",
        f"/api/deployments/{deployment.pk}/checklist/diff/",
    ]
    for url in urls:
        assert other_api.get(url).status_code == 404
        assert APIClient().get(url).status_code == 401
    assert other_api.post(f"/api/deployments/{deployment.pk}/change-requests/", {}).status_code == 404


def test_unknown_syntax_is_404(deployment, api):
    response = api.get(f"/api/deployments/{deployment.pk}/firewall/junos/")
    assert (
        response.status_code == 404 and "known: nftables, iptables, ip6tables, asa, panos" in response.json()["detail"]
    )


@needs_redis
@pytest.mark.integration
@override_settings(EXPORT_SYNC_RULES=50)  # so that the 81 rules count as large without minutes of layout
def test_a_large_change_request_is_rendered_by_a_worker_then_downloaded(transactional_db, full_document):
    call_command("load_catalog", verbosity=0)
    api = token_client(make_member("alice", "Mail team"))
    deployment = create_deployment(full_document)
    count = deployment.checklist.count()
    assert count > settings.EXPORT_SYNC_RULES
    refused = api.get(f"/api/deployments/{deployment.pk}/change-request.pdf")
    assert refused.status_code == 400 and "change-requests" in refused.json()["scope"][0]

    flush_broker()
    worker = Worker([], name="exporter", extra_queues=("celery",))
    try:
        response = api.post(f"/api/deployments/{deployment.pk}/change-requests/", PARAMS, format="json")
        assert response.status_code == 202
        url = response.headers["Location"]
        assert api.get(f"{url}pdf/").status_code == 404  # not ready yet
        deadline = time.monotonic() + 240
        while (job := api.get(url).json())["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, job
            time.sleep(0.5)
    finally:
        worker.stop()
    assert job["status"] == "done" and job["progress"] == 100 and job["rule_count"] == count
    pdf = api.get(f"{url}pdf/")
    assert pdf.headers["Checklist-Fingerprint"] == job["fingerprint"]
    words = flat(pdf_text(pdf.content))
    assert "CHG-4711" in words and f"all rules; {count} rules" in words
    assert deployment.exports.filter(fingerprint=job["fingerprint"]).exists()
