"""Change requests and exports, read back with real parsers and checked by real firewalls' tools."""

from __future__ import annotations

import csv
import io
import ipaddress
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection
from django.db.models import Q
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from openpyxl import load_workbook
from pypdf import PdfReader
from reportlab.lib.units import mm
from reportlab.pdfbase.pdfmetrics import stringWidth
from rest_framework.test import APIClient

from portal.api.ports import XLSX
from ports.exports import RuleSet, Scope, layout
from ports.exports.firewall import SYNTAXES, Target, cisco_asa, panos
from ports.exports.sheets import SHEET_COLUMNS, csv_chunks, csv_table
from ports.validators import SITE_NAME, validate_site

from .conftest import create_deployment, make_member, recorded_run, token_client
from .probe_worker import Worker, flush_broker, needs_redis
from .waiting import wait_until

GOLDEN = Path(__file__).parent / "golden"
GOLDEN_ZONES = {"default": "dmz", "hq": "trust", "office": "users"}
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
        "all rules: 75 firewall rules (81 checklist items;",
    ]:
        assert expected in words, expected
    # Every firewall rule: its number, endpoints and ports, and the path of the firewall that owns it.
    flows = RuleSet.build(deployment, {"scope": Scope.ALL}).flows
    assert len(flows) == 75
    for flow in flows:
        row = re.search(rf"(?m)^{flow.number}\s*(?:◆\s*)?{re.escape(flow.rule.source.address)}\s", text)
        assert row, (flow.number, flow.rule.source.address)
        cells = text[row.end() : row.end() + 400]  # a row's cells come out line by line
        assert flow.rule.destination.address in cells and f"{flow.rule.ports}" in cells, (flow.number, cells)
    dlp = next(flow for flow in flows if str(flow.rule.ports) == "17500-17515")
    assert [r.uid for r in dlp.requirements] == [
        "fes.dlp.17500-17515-tcp.fingerprint-status",
        "fes.dlp.17500-17515-tcp.fingerprint-repository",
        "fes.dlp.17500-17515-tcp.message-analysis",
    ]
    assert "Fingerprint status; Fingerprint repository; Message analysis" in words  # one rule, three purposes
    assert "Firewall path: site default → default" in words and "site hq → default" in words
    assert "site office → default" in words
    # The two footnotes, each with its own sign, beside its ports and under Notes.
    assert "17700-17714 *" in words and "17500-17515 †" in words
    assert "* The port range 17700–17714 must be open for communications with Forcepoint Email Security." in words
    assert "† This is the default range. The starting location of the range (17500) is configurable." in words
    assert "DLP base port, 17500: 17500-17515" in words
    # The vendor's warning, what it means for these rules, and which rules to exempt from decryption.
    assert "decrypted (including SSL Decryption or Deep Packet Inspection)" in words
    assert "No rule of this request may be dropped, blocked, or inspected by DPI or IPS." in words
    tls = ", ".join(str(flow.number) for flow in flows if flow.carries_tls)
    assert re.search(r"Rules marked ◆ \([0-9, -]+\) carry TLS: exempt them from SSL decryption", words)
    assert tls and all(f"{flow.number} ◆" in words for flow in flows if flow.carries_tls)
    # What a change-advisory board asks for.
    for section in ["Impact", "Risk", "Implementation", "Test plan", "Rollback", "Approval"]:
        assert re.search(rf"(?m)^{section}$", text), section
    assert "Functions that break without them" in words and "Email Log Server" in words
    assert f"POST /api/deployments/{deployment.pk}/probe-runs/" in words
    assert f"python manage.py probe {deployment.pk} --wait" in words
    assert "Sites that probe: default (" in words and "hq (" in words
    assert "Change manager" in words and "Page 1 of" in words
    # Times as people read them, never as raw ISO strings.
    assert re.search(r"Date \d{4}-\d\d-\d\d \d\d:\d\d UTC", words)
    assert not re.search(r"\d\d:\d\d:\d\d", words)

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


def test_a_checklist_exported_as_a_change_request_keeps_its_signature_lines(deployment, api):
    """Only a change request of the portal (/api/requests/{id}/pdf/) carries a record in their place."""
    text = pdf_text(api.get(f"/api/deployments/{deployment.pk}/change-request.pdf", PARAMS).content)
    words = flat(text)
    assert re.search(r"(?m)^Approval$", text) and not re.search(r"(?m)^Record$", text)
    assert "Role Name Signature Date Requester Alice Admin Network security Change manager Implementer" in words
    assert "Change reference CHG-4711 Deployment Mail gateways" in words  # no title, no state
    assert 'Mark the rules "opened" in the portal, and tell the requester.' in words


def test_scopes_select_the_rules(deployment, api, user):
    items = list(deployment.checklist.all())
    items[0].change_status("verified", user)
    items[1].change_status("waived", user)
    recorded_run(deployment, [(items[2], "filtered"), (items[3], "open"), (items[4], "intercepted")])

    def rules(scope: str, **extra) -> list[int]:
        return [item.pk for item in RuleSet.build(deployment, {"scope": scope, **extra}).items]

    assert len(rules(Scope.ALL)) == 81
    assert rules(Scope.UNVERIFIED) == [i.pk for i in items[2:]]
    assert rules(Scope.FAILED) == [items[2].pk, items[4].pk]
    assert rules(Scope.SELECTION, items=[items[5].pk, items[7].pk]) == [items[5].pk, items[7].pk]

    response = api.get(f"/api/deployments/{deployment.pk}/change-request.pdf", {"scope": "failed"})
    words = flat(pdf_text(response.content))
    assert "rules whose last probe failed: 2 firewall rules" in words and "filtered" in words and "intercepted" in words
    assert "failed their last probe" in words  # under Risk


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
    # As a firewall sees it: three flows gone (each for three requirements), three new ones.
    text = pdf_text(delta.content)
    removed = text[text.index("Rules to remove") : text.index("Rules to add")]
    assert removed.splitlines().count("17500-17515") == 3
    assert removed.count("fes.dlp.17500-17515-tcp.message-analysis") == 3
    assert "remove rules 76-78, and allow again the 3 rules this request removes" in words


def test_a_delta_compares_flows_not_requirements(deployment, api, user):
    """A flow that gains or loses one of its requirements is neither added nor removed."""
    from ports.checklist import remember_rule_set

    rules = [item.rule for item in deployment.checklist.select_related("requirement")]
    gone = "fes.dlp.17500-17515-tcp.message-analysis"
    earlier = remember_rule_set(deployment, [rule for rule in rules if rule.requirement.uid != gone], "pdf", user)
    response = api.get(f"/api/deployments/{deployment.pk}/change-request.pdf", {"since": earlier, "syntax": "panos"})
    assert response.status_code == 200
    text = pdf_text(response.content)
    words = flat(text)
    assert "Rules that stay, for other requirements" in words and gone in words
    assert "all rules: 0 firewall rules" in words  # nothing to add: the three flows were allowed before
    assert "Rules to remove None." in words and "delete rulebase" not in words
    assert "No rules to add: nothing to probe." in words


def test_rule_numbers_are_never_given_twice(deployment, api, full_document):
    url = f"/api/deployments/{deployment.pk}/"
    nms = set(deployment.checklist.filter(destination_name="nms").values_list("number", flat=True))
    assert nms == {73, 74, 75}
    full_document["hosts"] = [host for host in full_document["hosts"] if host["name"] != "nms"]
    assert api.put(url, full_document, format="json").status_code == 200
    full_document["hosts"].append({"role": "snmp_trap", "name": "nms2", "address": "127.0.4.12"})
    assert api.put(url, full_document, format="json").status_code == 200
    assert set(deployment.checklist.filter(destination_name="nms2").values_list("number", flat=True)) == {76, 77, 78}


def test_long_lists_of_numbers_and_long_names_stay_on_the_page(catalog, user, api, full_document):
    """Every other flow of a large deployment: lists of rule numbers that no table cell holds."""
    full_document["appliances"] = [
        {"hostname": f"esa{n}", "c_address": f"127.0.{10 + n}.1", "p1_address": f"127.0.{10 + n}.2"} for n in range(30)
    ]
    long_name = "a" * 60 + ".mail." + "b" * 60 + ".example.test"
    full_document["hosts"][4]["address"] = long_name  # the hybrid service
    deployment = create_deployment(full_document)
    flows = RuleSet.build(deployment, {"scope": Scope.ALL}).flows
    picked = [item.pk for flow in flows[::2] for item in flow.items]
    params = {"scope": "selection", "items": ",".join(map(str, picked))}
    response = api.get(f"/api/deployments/{deployment.pk}/change-request.pdf", params)
    assert response.status_code == 200, response.content[:300]
    words = flat(pdf_text(response.content))
    assert "rules in all)" in words and "Rules marked ◆ (" in words
    asa = api.get(f"/api/deployments/{deployment.pk}/firewall/asa/").content.decode()
    names = re.findall(r"^(?:object|object-group) (?:network|service) (\S+)", asa, re.M)
    assert names and max(len(name) for name in names) <= 64


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


def test_xlsx_holds_every_rule_and_what_it_comes_from(deployment, api):
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
    assert len(rows) == 76  # 75 firewall rules under the header
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
    assert about["Catalog"].startswith("Forcepoint Email Security 2026.1 (Overview of Email Security Ports")
    assert about["Rules"] == "75 firewall rules (81 checklist items merged by flow)"
    assert about["Vendor warning"].startswith("If any of the ports in this document are dropped, blocked, or decrypted")
    assert about["Note *"].startswith("The port range 17700–17714 must be open")
    assert about["Note †"].startswith("This is the default range.")


def rows_by_port(rows: list[tuple], port: str) -> list[tuple]:
    return [row for row in rows if row[10] == port]


# --- One flow, one number, in every format ---------------------------------------------------

Flows = dict[int, tuple[str, str, str, str]]  # number: (source, destination, protocol, ports)


def flows_in_nftables(text: str) -> Flows:
    found = {}
    for line in text.splitlines():
        rule = re.search(r"(?:saddr (\S+) )?ip6? daddr (\S+) (tcp|udp) dport (\S+) accept comment \"#(\d+)", line)
        if rule:
            source, destination, protocol, ports, number = rule.groups()
            found[int(number)] = (source or "any", destination, protocol, ports)
        elif named := re.search(r"# rule #(\d+) names a host: resolve (\S+) / (\S+) first", line):
            found[int(named[1])] = (named[2], named[3], "?", "?")
    return found


def flows_in_iptables(text: str) -> Flows:
    found = {}
    for line in text.splitlines():
        rule = re.search(r"^-A \S+ (?:-s (\S+) )?-d (\S+) -p (\w+) .*--dport (\S+) .*--comment \"#(\d+)", line)
        if rule:
            source, destination, protocol, ports, number = rule.groups()
            source, destination = (value.removesuffix("/32") if value else "any" for value in (source, destination))
            found[int(number)] = (source, destination, protocol, ports.replace(":", "-"))
    return found


def test_every_format_merges_the_same_flows_under_the_same_numbers(deployment, api, user):
    base = f"/api/deployments/{deployment.pk}"
    items = api.get(f"{base}/checklist/").json()["items"]
    expected: Flows = {}
    for item in items:  # items stay one per requirement; items of one flow share its number
        flow = (item["source"], item["destination"], item["protocol"], item["ports"])
        assert expected.setdefault(item["number"], flow) == flow
    assert len(items) == 81 and sorted(expected) == list(range(1, 76))
    shared = [item for item in items if item["ports"] == "17500-17515" and item["source"] == "127.0.1.1"]
    assert len({item["number"] for item in shared}) == 1 and len(shared) == 3

    rows = list(csv.DictReader(io.StringIO(api.get(f"{base}/checklist/", {"format": "csv"}).content.decode())))
    assert {int(r["number"]): (r["source"], r["destination"], r["protocol"], r["ports"]) for r in rows} == expected
    assert len(rows) == 75
    dlp = next(r for r in rows if r["number"] == str(shared[0]["number"]))
    assert dlp["requirement"].split("; ") == [item["requirement"] for item in shared]
    assert dlp["items"] == ", ".join(str(item["id"]) for item in shared)
    assert dlp["description"] == "Fingerprint status; Fingerprint repository; Message analysis"
    assert dlp["notes"].startswith("† This is the default range") and dlp["carries_tls"] == "False"
    assert {r["catalog"] for r in rows} == {"Forcepoint Email Security 2026.1"}
    assert {r["fingerprint"] for r in rows} == {f"sha256:{deployment.checklist_fingerprint}"}
    assert all(r["warning"].startswith("If any of the ports in this document are dropped") for r in rows)

    workbook = load_workbook(io.BytesIO(api.get(f"{base}/checklist.xlsx").content))
    sheet = list(workbook["Rules"].iter_rows(values_only=True))
    assert {row[0]: (row[1], row[5], row[9], row[10]) for row in sheet[1:]} == expected

    nft = flows_in_nftables(api.get(f"{base}/firewall/nftables/").content.decode())
    assert {n: f for n, f in nft.items() if f[2] != "?"} == {n: f for n, f in expected.items() if "localhost" not in f}
    assert sorted(nft) == sorted(expected)
    ipv4 = flows_in_iptables(api.get(f"{base}/firewall/iptables/").content.decode())
    assert ipv4 == {n: f for n, f in expected.items() if "localhost" not in f}
    asa = api.get(f"{base}/firewall/asa/").content.decode()
    assert [int(n) for n in re.findall(r"remark #(\d+) ", asa)] == sorted(expected)
    assert asa.count(" extended permit ") == 75
    panos_text = api.get(f"{base}/firewall/panos/").content.decode()
    names = re.findall(rf"set rulebase security rules fes_{deployment.pk}-(\d{{4}}) ", panos_text)
    assert [int(n) for n in names] == sorted(expected)

    text = pdf_text(api.get(f"{base}/change-request.pdf").content)
    text = text[text.index("Numbers are the portal's rule numbers") : text.index("\nNotes\n")]
    rows = re.findall(r"(?m)^(\d+)(?: ◆)?\n(?!from the|to the)(\S+)\n", text)  # a number, then the source
    in_pdf = {int(n): source for n, source in rows if int(n) in expected}
    assert in_pdf == {number: flow[0] for number, flow in expected.items()}

    page = Client()
    page.force_login(user)
    html = page.get(f"/deployments/{deployment.pk}/", {"size": 100}).content.decode()
    for item in items:
        row = re.search(rf'<tr id="item-{item["id"]}".*?<td class="number"[^>]*>(\d+)', html, re.S)
        assert int(row[1]) == item["number"], item["id"]


def test_a_flow_keeps_its_number_when_the_deployment_changes(deployment, api, full_document):
    before = {(i.source, i.destination, i.protocol, i.port_start): i.number for i in deployment.checklist.all()}
    full_document["hosts"].append({"role": "dns", "name": "dns3", "address": "127.0.4.12"})
    full_document["hosts"] = [host for host in full_document["hosts"] if host["name"] != "dns1"]
    response = api.put(f"/api/deployments/{deployment.pk}/", full_document, format="json")
    assert response.status_code == 200, response.json()
    after = {(i.source, i.destination, i.protocol, i.port_start): i.number for i in deployment.checklist.all()}
    kept = before.keys() & after.keys()
    assert len(kept) == 75 - 6 and all(before[flow] == after[flow] for flow in kept)
    added = sorted(number for flow, number in after.items() if flow not in before)
    assert added == list(range(76, 82))  # dns3's six rules: new numbers


def test_decryption_exemptions_and_zones_are_configuration(deployment, api):
    base = f"/api/deployments/{deployment.pk}/firewall"
    zones = {"zones": "default:dmz,hq:trust,office:users"}
    panos_text = api.get(f"{base}/panos/", zones).content.decode()
    rule_set = RuleSet.build(deployment, {"scope": Scope.ALL})
    tls = [flow for flow in rule_set.flows if flow.carries_tls]
    decrypt = re.findall(r"set rulebase decryption rules (\S+) from (\S+) to (\S+) .* action no-decrypt ", panos_text)
    assert [name for name, _, _ in decrypt] == [f"fes_{deployment.pk}-{flow.number:04d}-no-decrypt" for flow in tls]
    assert len(tls) == 39 and {flow.rule.requirement.service for flow in tls} == {"tls", "smtp", "ldap"}
    # Zones from the sites: Staff (office) → esa1 (default) for 9449.
    assert f"security rules fes_{deployment.pk}-0001 from users to dmz " in panos_text
    to_dlp = rf"security rules fes_{deployment.pk}-\d+ from dmz to trust source \S+ destination fes_\d+-127.0.4.4 "
    assert re.search(to_dlp, panos_text)  # esa (default) → dlp (hq)
    assert " from any to any " in api.get(f"{base}/panos/").content.decode()  # the default stays
    asa = api.get(f"{base}/asa/", zones).content.decode()
    assert asa.splitlines()[-4:] == [
        "! access-group replaces an interface's inbound ACL: merge into it instead if it has one.",
        *[f"access-group FES_{deployment.pk} in interface {zone}" for zone in ("users", "dmz", "trust")],
    ]
    assert "access-group" not in api.get(f"{base}/asa/").content.decode()
    nft = api.get(f"{base}/nftables/").content.decode()
    assert all("[exempt from SSL decryption]" in line for line in nft.splitlines() if "dport 443 " in line)
    assert not any("[exempt" in line for line in nft.splitlines() if "dport 53 " in line)
    for bad, message in [
        ({"zones": "Mars!:dmz"}, "Not a site name"),  # a site this deployment does not use is ignored, below
        ({"zones": "default:dmz; rm -rf"}, "Not a zone or interface name"),
        ({"zones": "default"}, "site:zone"),
    ]:
        response = api.get(f"{base}/panos/", bad)
        assert response.status_code == 400 and message in response.json()["zones"][0], response.json()


# The comment each syntax starts a line with: where an export names what it ignored.
COMMENT_MARK = {"nftables": "#", "iptables": "#", "ip6tables": "#", "asa": "!", "panos": "#"}


def test_one_zone_map_serves_a_fleet(deployment, api):
    """A map naming sites this deployment does not use: those entries are ignored, and the export
    says so at its top, in its own comment form; the rest is the export of the map's own sites."""
    base = f"/api/deployments/{deployment.pk}/firewall"
    own = "default:dmz,hq:trust,office:users"
    fleet = f"dc1:inside,{own},branch-7_b:outside"
    for syntax, mark in COMMENT_MARK.items():
        response = api.get(f"{base}/{syntax}/", {"zones": fleet})
        assert response.status_code == 200, (syntax, response.content[:300])
        text = response.content.decode()
        note = f"{mark} zones given for sites this deployment does not use: branch-7_b, dc1"
        lines = text.splitlines()
        assert lines.count(note) == 1, (syntax, lines[:8])
        header = lines[: lines.index(note) + 1]
        assert all(line.startswith(mark) for line in header), (syntax, header)  # at the top, before any rule
        # Ignored means ignored: without that line, the export of the deployment's own sites.
        assert text.replace(f"{note}\n", "") == api.get(f"{base}/{syntax}/", {"zones": own}).content.decode()
        assert "does not use" not in api.get(f"{base}/{syntax}/", {"zones": own}).content.decode()
    # The names in that line are site names, which validate_site checks with SITE_NAME (lower-case
    # letters, digits, '-' and '_'): a map entry that is not one is a 400, so no text of the query
    # reaches the line but such a token, which cannot end the comment.
    assert SITE_NAME.pattern == "[a-z0-9][a-z0-9_-]{0,49}"
    with pytest.raises(ValidationError):
        validate_site("dc1\n!")
    for name in ("branch-7_b", "dc1"):
        assert SITE_NAME.fullmatch(name)
    for bad in ["dc1\n! access-list X permit ip any any", "dc1\r\nset x", 'dc1"', "dc1 x", "DC1", "-dc1", "d" * 51]:
        response = api.get(f"{base}/asa/", {"zones": f"{own},{bad}:inside"})
        assert response.status_code == 400 and "Not a site name" in response.json()["zones"][0], (bad, response.json())
    # The same in a change request's body, where a map is JSON.
    response = api.post(
        f"/api/deployments/{deployment.pk}/change-requests/",
        {"zones": {"default": "dmz", "dc1\n! x": "inside"}},
        format="json",
    )
    assert response.status_code == 400 and "Not a site name" in response.json()["zones"][0], response.json()
    assert not deployment.change_request_jobs.exists()


def test_a_site_the_zone_map_lacks_keeps_its_default(deployment, api):
    """As before: a used site that the map does not name gets "any" (PAN-OS) and no access-group
    (ASA). That is no error, and only the map's unused sites are said to be ignored."""
    base = f"/api/deployments/{deployment.pk}/firewall"
    zones = {"zones": "default:dmz,dc1:inside"}  # hq and office not given
    panos_text = api.get(f"{base}/panos/", zones).content.decode()
    assert f"security rules fes_{deployment.pk}-0001 from any to dmz " in panos_text  # office → default
    assert "does not use: dc1" in panos_text
    asa = api.get(f"{base}/asa/", zones).content.decode()
    assert [line for line in asa.splitlines() if line.startswith("access-group ")] == [
        f"access-group FES_{deployment.pk} in interface dmz"
    ]
    assert api.get(f"{base}/panos/", {"zones": "default:dmz"}).status_code == 200


def test_ignored_zones_are_named_in_a_header(deployment, api):
    base = f"/api/deployments/{deployment.pk}/firewall"
    response = api.get(f"{base}/panos/", {"zones": "dc1:inside,default:dmz,branch-7:x"})
    assert response.status_code == 200 and response.headers["Zones-Ignored"] == "branch-7, dc1"
    assert "Zones-Ignored" not in api.get(f"{base}/panos/", {"zones": "default:dmz"}).headers


def test_a_change_request_rolls_back_in_the_chosen_syntax(deployment, api, tmp_path):
    url = f"/api/deployments/{deployment.pk}/change-request.pdf"
    words = flat(pdf_text(api.get(url, {"syntax": "panos", "rollback": "Restore the config saved before."}).content))
    assert "To back the change out, remove rules 1-75 (panos below)" in words
    assert "Restore the config saved before." in words
    assert f"delete rulebase security rules fes_{deployment.pk}-0075" in words
    assert f"delete rulebase decryption rules fes_{deployment.pk}-0001-no-decrypt" in words
    # The iptables rollback deletes exactly the rules the export adds: the tool reads it.
    words = pdf_text(api.get(url, {"syntax": "iptables"}).content)
    deletions = [line for line in words.splitlines() if line.startswith("-D ")]
    assert len(deletions) == 72


def test_the_iptables_rollback_takes_out_exactly_what_the_export_put_in(deployment, api, tmp_path):
    """Applied for real, in a network namespace of its own (no traffic: rules only)."""
    from ports.exports.firewall import SYNTAXES

    namespace = f"portal-rollback-{os.getpid()}"
    chain = f"FES_{deployment.pk}"
    export = tmp_path / "rules.v4"
    export.write_text(api.get(f"/api/deployments/{deployment.pk}/firewall/iptables/").content.decode())
    rule_set = RuleSet.build(deployment, {"scope": Scope.ALL})
    rollback = tmp_path / "rollback.v4"
    half = rule_set.flows[: len(rule_set.flows) // 2]
    rollback.write_text("\n".join(SYNTAXES["iptables"].rollback(half, Target.of(rule_set, {}))) + "\n")

    def run(*command: str) -> str:
        done = subprocess.run(["ip", "netns", "exec", namespace, *command], capture_output=True, text=True)
        assert done.returncode == 0, (command, done.stderr)
        return done.stdout

    subprocess.run(["ip", "netns", "add", namespace], check=True)
    try:
        run("iptables-restore", str(export))
        listed = [line for line in run("iptables", "-S", chain).splitlines() if line.startswith("-A")]
        assert len(listed) == 72  # 75 rules, less three to a hostname
        run("iptables-restore", "--noflush", str(rollback))
        left = [line for line in run("iptables", "-S", chain).splitlines() if line.startswith("-A")]
        numbers = {int(n) for n in re.findall(r'--comment "#(\d+) ', "\n".join(left))}
        assert numbers == {flow.number for flow in rule_set.flows[len(half) :]} - {
            flow.number for flow in rule_set.flows if "localhost" in flow.rule.destination.address
        }
    finally:
        subprocess.run(["ip", "netns", "del", namespace], check=True)


def test_nftables_export_is_accepted_by_nft(deployment, api, tmp_path):
    response = api.get(f"/api/deployments/{deployment.pk}/firewall/nftables/")
    text = response.content.decode()
    assert text.count(" accept comment ") == 72  # 75 firewall rules; the three to a hostname wait to be resolved
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
    # What each line of the golden files says, as reviewed (no ASA or PAN-OS runs here):
    # Both: four comment lines ("!" on ASA, "#" on PAN-OS): the title, "75 firewall rules (81 checklist
    #   items merged by flow)" with the rule set's fingerprint, and the vendor's warning with the marker
    #   "[exempt from SSL decryption]" of the rules that carry TLS.
    # full.asa:
    #   "object-group network FES_GOLD-NET-<value>" + " network-object host <ip>" | " <net> <mask>": one group
    #     per address, named after its value so that every export (and a rollback) names it the same.
    #   "object network FES_GOLD-FQDN-localhost" + " fqdn v4 localhost", then a group holding that object:
    #     a hostname stays a name, which the ASA resolves.
    #   "object-group service FES_GOLD-TCP-17500-17515 tcp" + " port-object range 17500 17515" (or "eq 25"):
    #     one group per protocol and port range.
    #   "access-list FES_GOLD remark #25 <requirement ids>: <purposes>": the number and why, before each rule;
    #     #25-#27 name three requirements (the DLP range), one rule each.
    #   "access-list FES_GOLD extended permit tcp object-group <src>|any object-group <dst> object-group <svc>":
    #     75 entries, one per flow, in number order.
    #   "! access-group replaces ..." then "access-group FES_GOLD in interface users|dmz|trust": the ACL bound
    #     inbound on the interface of each source site given as zones (office, default, hq).
    # full.panos:
    #   "set address fes_gold-<value> ip-netmask <net>" or "fqdn localhost": one object per address.
    #   "set service fes_gold-tcp-25 protocol tcp port 25": one per protocol and port range.
    #   "set rulebase security rules fes_gold-0001 from users to dmz source ... destination ... application any
    #     service ... action allow description "#1 ...": a rule per flow, zones from the sites' zones.
    #   "set rulebase decryption rules fes_gold-0001-no-decrypt ... type ssl-forward-proxy action no-decrypt":
    #     after each security rule of a flow that carries TLS (TLS, SMTP STARTTLS, LDAP), the same match.
    rule_set = RuleSet.build(deployment, {"scope": Scope.ALL})
    target = Target("Mail gateways (Mail team), Forcepoint Email Security 2026.1", "fes_gold", GOLDEN_ZONES)
    text = render(rule_set, target)
    if os.environ.get("UPDATE_GOLDEN"):
        (GOLDEN / golden).write_text(text)
    assert text == (GOLDEN / golden).read_text()


# --- Cisco ASA, read by a grammar of its 9.x command forms ------------------------------------
# ciscoconfparse2 reads an ASA configuration into parents and children, but its ASA models do not
# know `network-object <IPv6 prefix>/<length>` (they raise NotImplementedError on it) nor a
# network object inside a group, both valid ASA 9.x: so the export is read here by the grammar
# of each command form it uses, from the ASA 9.x command reference, strictly: a line of no known
# form, a name used before it is defined, or a name defined twice is an error.

ASA_NAME = r"[A-Za-z0-9.!@#$%^&()_{}-]{1,64}"  # objects and groups share one namespace


class AsaConfig:
    """Network objects and groups (name: the address families they hold), service groups, and
    the access-list entries (acl, protocol, source group or "any", destination, service)."""

    def __init__(self, text: str) -> None:
        self.networks: dict[str, set[int]] = {}
        self.services: set[str] = set()
        self.entries: list[tuple[str, str, str, str, str]] = []
        self.remarks: list[str] = []
        self.bound: list[tuple[str, str]] = []
        parent = None
        for number, line in enumerate(text.splitlines(), 1):
            try:
                parent = self.read(line, parent)
            except (AssertionError, ValueError) as wrong:
                raise AssertionError(f"line {number}: {line!r}: {wrong}") from wrong

    def define(self, name: str) -> None:
        assert re.fullmatch(ASA_NAME, name), "not an ASA object name"
        assert name not in self.networks and name not in self.services, "defined twice"

    def read(self, line: str, parent: tuple[str, str] | None) -> tuple[str, str] | None:
        if not line or line.startswith("!"):
            return None  # a comment ends the object before it
        if line.startswith(" "):
            assert parent is not None, "a child line without its parent"
            kind, name = parent
            self.read_child(kind, name, line[1:])
            return parent
        if m := re.fullmatch(rf"object network ({ASA_NAME})", line):
            self.define(m[1])
            self.networks[m[1]] = set()
            return ("object", m[1])
        if m := re.fullmatch(rf"object-group network ({ASA_NAME})", line):
            self.define(m[1])
            self.networks[m[1]] = set()
            return ("group", m[1])
        if m := re.fullmatch(rf"object-group service ({ASA_NAME}) (tcp|udp)", line):
            self.define(m[1])
            self.services.add(m[1])
            return ("service", m[1])
        if m := re.fullmatch(rf"access-list ({ASA_NAME}) remark (.{{1,100}})", line):
            self.remarks.append(m[2])
            return None
        address = rf"any|object-group ({ASA_NAME})"
        if m := re.fullmatch(
            rf"access-list ({ASA_NAME}) extended permit (tcp|udp) ({address}) ({address}) object-group ({ASA_NAME})",
            line,
        ):
            acl, protocol, _, source, _, destination, service = m.groups()
            for group in (source, destination):
                assert group is None or group in self.networks, f"network group {group} not defined before"
            assert service in self.services, f"service group {service} not defined before"
            assert len(self.remarks) == len(self.entries) + 1, "an entry without its remark"
            self.entries.append((acl, protocol, source or "any", destination or "any", service))
            return None
        if m := re.fullmatch(rf"access-group ({ASA_NAME}) in interface ({ASA_NAME})", line):
            self.bound.append((m[1], m[2]))
            return None
        raise AssertionError("no ASA command of this form")

    def read_child(self, kind: str, name: str, line: str) -> None:
        families = self.networks.get(name)
        if kind == "object":
            assert not families, "a network object holds one address"
            if m := re.fullmatch(r"fqdn v([46]) ([A-Za-z0-9.-]{1,253})", line):
                families.add(int(m[1]))
            elif m := re.fullmatch(r"host (\S+)", line):
                families.add(ipaddress.ip_address(m[1]).version)
            elif m := re.fullmatch(r"subnet (\S+) (\S+)", line):
                families.add(ipaddress.IPv4Network(f"{m[1]}/{m[2]}").version)
            elif m := re.fullmatch(r"subnet (\S+/\d+)", line):
                families.add(ipaddress.IPv6Network(m[1]).version)
            else:
                raise AssertionError("not a network object's address")
        elif kind == "group":
            if m := re.fullmatch(r"network-object host (\S+)", line):
                families.add(ipaddress.ip_address(m[1]).version)
            elif m := re.fullmatch(r"network-object (\d+\.\d+\.\d+\.\d+) (\d+\.\d+\.\d+\.\d+)", line):
                families.add(ipaddress.IPv4Network(f"{m[1]}/{m[2]}").version)  # strict: host bits zero
            elif m := re.fullmatch(r"network-object ([0-9a-fA-F:]+/\d+)", line):
                families.add(ipaddress.IPv6Network(m[1]).version)  # IPv6 as prefix/length, never a mask
            elif m := re.fullmatch(rf"network-object object ({ASA_NAME})", line):
                assert self.networks.get(m[1]), f"network object {m[1]} not defined before"
                families |= self.networks[m[1]]
            else:
                raise AssertionError("not a network group's member")
        else:
            m = re.fullmatch(r"port-object (?:eq (\d+)|range (\d+) (\d+))", line)
            assert m, "not a port object"
            ports = [int(port) for port in m.groups() if port]
            assert all(1 <= port <= 65535 for port in ports) and ports == sorted(ports)


def dual_stack_document(document: dict) -> dict:
    """The full deployment with IPv6 beside IPv4 (documentation addresses, 2001:db8::/32): esa1
    also on P2, esa2's P1 IPv6 only (so its rule to the named hybrid service is IPv6 where
    esa1's and esa3's are IPv4), an IPv6 DNS server and an IPv6 end-user network."""
    document["appliances"][0]["p2_address"] = "2001:db8:6::1"
    document["appliances"][1]["p1_address"] = "2001:db8:2::2"
    document["hosts"].append({"role": "dns", "name": "dns6", "address": "2001:db8:4::9"})
    document["peer_networks"].append(
        {"role": "end_users", "name": "Staff v6", "network": "2001:db8:8::/64", "site": "office"}
    )
    return document


def test_asa_objects_are_of_the_family_of_the_rules_that_use_them(catalog, user, api, full_document):
    deployment = create_deployment(dual_stack_document(full_document))
    base = f"/api/deployments/{deployment.pk}/firewall"
    text = api.get(f"{base}/asa/", {"zones": "default:dmz,hq:trust,office:users"}).content.decode()
    config = AsaConfig(text)
    flows = RuleSet.build(deployment, {"scope": Scope.ALL}).flows
    assert len(config.entries) == len(flows) == len(config.remarks) and config.bound
    families = {flow.rule.source.family or flow.rule.destination.family for flow in flows}
    assert families == {4, 6}
    for flow, (_, protocol, source, destination, _) in zip(flows, config.entries, strict=True):
        family = flow.rule.source.family or flow.rule.destination.family
        assert protocol == flow.rule.protocol
        for group in (source, destination):
            assert group == "any" or config.networks[group] == {family}, (flow.number, group, config.networks[group])
    # The named hybrid service, from an IPv4 and from an IPv6 address: an object of each family.
    acl = f"FES_{deployment.pk}"
    assert f"object network {acl}-FQDN-localhost\n fqdn v4 localhost\n" in text
    assert f"object network {acl}-FQDN6-localhost\n fqdn v6 localhost\n" in text
    hybrid = [entry for flow, entry in zip(flows, config.entries, strict=True) if "localhost" in entry[3]]
    assert sorted(destination for *_, destination, _ in hybrid) == [
        f"{acl}-NET-localhost",
        f"{acl}-NET-localhost",
        f"{acl}-NET6-localhost",
    ]
    assert " network-object 2001:db8:8::/64" in text and " network-object host 2001:db8:2::2" in text
    # A flow of either family (a name to or from "any"): the name's objects of both families.
    deployment.checklist.filter(destination="localhost", source="127.0.2.1").update(source="any")
    either = AsaConfig(api.get(f"{base}/asa/").content.decode())
    assert either.networks[f"{acl}-NET46-localhost"] == {4, 6}
    assert any(entry[2:4] == ("any", f"{acl}-NET46-localhost") for entry in either.entries)
    # The grammar reads the reviewed golden file too, and refuses what the ASA would.
    golden = AsaConfig((GOLDEN / "full.asa").read_text())
    assert len(golden.entries) == 75 and all(families == {4} for families in golden.networks.values())
    for wrong in [
        text.replace(" fqdn v6 localhost", " fqdn v7 localhost"),
        text.replace(" network-object 2001:db8:8::/64", " network-object 2001:db8:8:: ffff:ffff:ffff:ffff::"),
        text.replace(" network-object 127.0.8.0 255.255.255.0", " network-object 127.0.8.1 255.255.255.0"),
        text.replace("object-group network FES_", "object-group network FES_?", 1),
        text + "access-list X extended permit tcp any object-group NOT-DEFINED object-group NOT-DEFINED\n",
    ]:
        with pytest.raises(AssertionError, match="line "):
            AsaConfig(wrong)


def test_panos_objects_serve_the_family_of_every_rule(catalog, user, api, full_document):
    """PAN-OS has no such mistake to make: an ip-netmask object is of its value's family, and an
    fqdn object is resolved to the IPv4 and IPv6 addresses of the name, so one serves both."""
    deployment = create_deployment(dual_stack_document(full_document))
    text = api.get(f"/api/deployments/{deployment.pk}/firewall/panos/").content.decode()
    objects = dict(re.findall(r"(?m)^set address (\S+) (?:ip-netmask|fqdn) (\S+)$", text))
    assert objects[f"fes_{deployment.pk}-localhost"] == "localhost"
    assert objects[f"fes_{deployment.pk}-2001.db8.8.._64"] == "2001:db8:8::/64"
    flows = RuleSet.build(deployment, {"scope": Scope.ALL}).flows
    rules = re.findall(r"(?m)^set rulebase security rules \S+ from \S+ to \S+ source (\S+) destination (\S+) ", text)
    for flow, ends in zip(flows, rules, strict=True):
        family = flow.rule.source.family or flow.rule.destination.family
        for name in ends:
            value = objects.get(name, "any")
            assert value in ("any", "localhost") or ipaddress.ip_network(value).version == family, (flow.number, value)


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
@override_settings(EXPORT_SYNC_RULES=50)  # so that the 75 rules count as large
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

        def finished() -> dict | None:
            job = api.get(url).json()
            return None if job["status"] in ("queued", "running") else job

        job = wait_until(finished, 240, lambda: f"{api.get(url).json()}\n{worker.tail()}", interval=0.5)
    finally:
        worker.stop()
    assert job["status"] == "done" and job["progress"] == 100 and job["rule_count"] == 75
    pdf = api.get(f"{url}pdf/")
    assert pdf.headers["Checklist-Fingerprint"] == job["fingerprint"]
    words = flat(pdf_text(pdf.content))
    assert "CHG-4711" in words and f"all rules: 75 firewall rules ({count} checklist items;" in words
    assert "Test plan" in words and "Rollback" in words
    assert deployment.exports.filter(fingerprint=job["fingerprint"]).exists()


# --- Every export at the limits ----------------------------------------------------------------
# bench/exports.py times each format at MAX_RULES; these say how they answer: the large ones
# streamed, their rows read in a number of queries that does not grow with the rules.

EXPORTS = [
    "checklist/",
    "checklist/?format=csv",
    "checklist.csv",
    "checklist.xlsx",
    *(f"firewall/{syntax}/" for syntax in SYNTAXES),
]


def body_of(response: object) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def test_the_xlsx_export_written_row_by_row_reads_as_before(deployment, api, user):
    items = list(deployment.checklist.all())
    items[0].change_status("opened", user)
    recorded_run(deployment, [(items[0], "open")])
    # What a user typed, or old data: text that a spreadsheet would take for a formula or an error.
    deployment.checklist.filter(source_name="fsm").update(source_name="=1+1")
    deployment.checklist.filter(destination_name="nms").update(destination_name="#N/A")
    response = api.get(f"/api/deployments/{deployment.pk}/checklist.xlsx")
    assert response.status_code == 200 and response.headers["Content-Type"] == XLSX
    assert response.headers["Content-Disposition"] == f'attachment; filename="checklist-{deployment.pk}.xlsx"'
    workbook = load_workbook(io.BytesIO(response.content))
    assert workbook.sheetnames == ["Rules", "About"]
    sheet = workbook["Rules"]
    assert sheet.freeze_panes == "A2" and sheet.auto_filter.ref == "A1:AC76"  # 29 columns: the header and 75 rules
    header, *rows = sheet.iter_rows()
    assert [cell.value for cell in header] == [label for _, label in SHEET_COLUMNS]
    assert all(cell.font.b and cell.data_type == "s" for cell in header)
    column = {name: index for index, (name, _) in enumerate(SHEET_COLUMNS)}
    typed = [cell for row in rows for cell in row if cell.value in ("=1+1", "#N/A")]
    flows = deployment.checklist.filter(Q(source_name="=1+1") | Q(destination_name="#N/A")).values("number")
    assert len(typed) == flows.distinct().count() > 0
    assert all(cell.data_type == "s" for cell in typed)  # text, never a formula nor an error
    first = next(row for row in rows if str(items[0].pk) in row[column["items"]].value.split(", "))
    assert first[column["number"]].data_type == "n" and first[column["carries_tls"]].data_type == "b"
    for name in ("status_changed_at", "probe_checked_at"):
        cell = first[column[name]]
        assert cell.is_date and cell.number_format == 'yyyy-mm-dd hh:mm "UTC"', name
    assert first[column["probe_state"]].value == "open"
    about = workbook["About"]
    assert about.column_dimensions["A"].width == 40 and about.column_dimensions["B"].width == 120
    assert all(row[1].alignment.wrap_text and row[1].alignment.vertical == "top" for row in about.iter_rows())


def test_the_csv_export_is_streamed_with_the_bytes_of_the_checklist_csv(deployment, api, django_assert_num_queries):
    base = f"/api/deployments/{deployment.pk}"
    response = api.get(f"{base}/checklist.csv")
    assert response.status_code == 200 and response.streaming
    assert response.headers["Content-Disposition"] == f'attachment; filename="checklist-{deployment.pk}.csv"'
    assert response.headers["Checklist-Fingerprint"] == deployment.checklist_fingerprint
    with django_assert_num_queries(0):  # the rows were read before the first byte
        body = body_of(response)
    assert body == api.get(f"{base}/checklist/", {"format": "csv"}).content
    # Written a chunk of rows at a time: the chunks joined are what one writer writes at once.
    rows = csv_table(RuleSet.build(deployment, {"scope": Scope.ALL}))
    chunks = list(csv_chunks(rows, rows_per_chunk=10))
    whole = io.StringIO()
    csv.writer(whole).writerows(rows)
    assert len(chunks) == 8 and b"".join(chunks) == whole.getvalue().encode()


def test_every_export_reads_its_rules_in_queries_that_do_not_grow_with_them(catalog, user, api, full_document):
    small = create_deployment(full_document)
    full_document["name"] = "Eight gateways"
    full_document["appliances"] = [
        {"hostname": f"esa{n}", "c_address": f"127.0.{10 + n}.1", "p1_address": f"127.0.{10 + n}.2"} for n in range(8)
    ]
    large = create_deployment(full_document)
    assert large.checklist.count() > 3 * small.checklist.count()
    api.get("/api/me/")  # its first use is written once (ApiToken.record_use): not counted below
    for export in EXPORTS:
        counts = []
        for deployment in (small, large):
            with CaptureQueriesContext(connection) as queries:
                response = api.get(f"/api/deployments/{deployment.pk}/{export}")
                body_of(response)
            assert response.status_code == 200, (export, response.status_code)
            counts.append(len(queries))
        assert counts[0] == counts[1], (export, counts)


@override_settings(EXPORT_SYNC_RULES=50)  # so that the 75 rules are too many to render at once
def test_a_change_request_too_large_to_render_at_once_names_the_limit_and_the_job(deployment, api):
    response = api.get(f"/api/deployments/{deployment.pk}/change-request.pdf")
    assert response.status_code == 400
    message = response.json()["scope"][0]
    assert "75 rules" in message and "(EXPORT_SYNC_RULES, 50)" in message
    assert f"POST /api/deployments/{deployment.pk}/change-requests/" in message
    assert not deployment.exports.filter(kind="pdf").exists()  # nothing handed out
    small = api.get(f"/api/deployments/{deployment.pk}/change-request.pdf", {"scope": "failed"})
    assert small.status_code == 200  # a scope within the limit still renders at once


def test_a_requirement_id_copied_from_the_pdf_is_the_apis(deployment, api, catalog):
    """Each id stands whole on a line of its own in the rules table: the text a reader copies is
    the id the checklist JSON gives, never cut across two lines."""
    response = api.get(f"/api/deployments/{deployment.pk}/change-request.pdf")
    lines = {line.strip() for line in pdf_text(response.content).splitlines()}
    uids = {item["requirement"] for item in api.get(f"/api/deployments/{deployment.pk}/checklist/").json()["items"]}
    assert uids and uids <= lines, sorted(uids - lines)
    # Every id of the catalog fits the column, at the table's size, with the cell's padding.
    layout._fonts()
    width = dict(layout.TABLE_COLUMNS)["Purpose, required by"] * mm - 6
    widest = max(catalog.requirements.values_list("uid", flat=True), key=lambda uid: stringWidth(uid, layout.FONT, 7.5))
    assert stringWidth(widest, layout.FONT, 7.5) <= width, widest
