"""One rule, one truth: every way of editing a deployment rebuilds its checklist from what was
saved, at once; every export can be compared later; a rule never mixes address families."""

from __future__ import annotations

import copy
import csv
import io
import subprocess

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from ports.models import Appliance, Deployment, Host, PeerNetwork
from ports.rules import RULE_COLUMNS
from ports.serializers import RuleSerializer

from .conftest import FULL_DEPLOYMENT, create_deployment

DNS_MOVED = "127.0.4.54"


def moved_dns(document: dict) -> dict:
    """The document with its first DNS server moved from 127.0.4.9 to 127.0.4.54."""
    document = copy.deepcopy(document)
    dns = next(host for host in document["hosts"] if host["name"] == "dns1")
    dns["address"] = DNS_MOVED
    return document


def dns_destinations(deployment: Deployment) -> set[str]:
    return set(deployment.checklist.filter(destination_name="dns1").values_list("destination", flat=True))


def form_data(document: dict, team: str = "Mail team") -> dict:
    """The deployment form's POST data for a document (as a browser submits it)."""
    data = {
        "team": team,
        "name": document["name"],
        "description": document.get("description", ""),
        "dlp_base_port": document.get("dlp_base_port", 17500),
        "features": document["features"],
    }
    for prefix, fields in [
        ("appliances", ["hostname", "c_address", "p1_address", "p2_address", "site"]),
        ("hosts", ["role", "name", "address", "site"]),
        ("peer_networks", ["role", "name", "network", "site"]),
    ]:
        rows = document[prefix]
        data |= {f"{prefix}-TOTAL_FORMS": len(rows), f"{prefix}-INITIAL_FORMS": len(rows)}
        for index, row in enumerate(rows):
            data |= {f"{prefix}-{index}-{field}": row.get(field) or "" for field in fields}
            data.setdefault(f"{prefix}-{index}-site", "default")
            data[f"{prefix}-{index}-site"] = data[f"{prefix}-{index}-site"] or "default"
    return data


def admin_data(deployment: Deployment, document: dict) -> dict:
    """The admin change form's POST data: the deployment's fields and its three inlines."""
    data = {
        "team": deployment.team_id,
        "name": document["name"],
        "description": document.get("description", ""),
        "catalog_version": deployment.catalog_version_id,
        "dlp_base_port": document.get("dlp_base_port", 17500),
        "features": str(document["features"]).replace("'", '"'),
    }
    for prefix, model, fields in [
        ("appliances", Appliance, ["hostname", "c_address", "p1_address", "p2_address", "site"]),
        ("hosts", Host, ["role", "name", "address", "site"]),
        ("peer_networks", PeerNetwork, ["role", "name", "network", "site"]),
    ]:
        related = model.objects.filter(deployment=deployment.pk)
        stored = list(related.order_by("pk")) if deployment.pk else []
        rows = document[prefix]
        data |= {
            f"{prefix}-TOTAL_FORMS": len(rows),
            f"{prefix}-INITIAL_FORMS": len(stored),
            f"{prefix}-MIN_NUM_FORMS": 0,
            f"{prefix}-MAX_NUM_FORMS": 1000,
        }
        key = "hostname" if prefix == "appliances" else "name"
        ids = {(getattr(row, "role", ""), getattr(row, key)): row.pk for row in stored}
        for index, row in enumerate(rows):
            data |= {f"{prefix}-{index}-{field}": row.get(field) or "" for field in fields}
            data[f"{prefix}-{index}-site"] = row.get("site") or "default"
            data[f"{prefix}-{index}-deployment"] = deployment.pk or ""
            data[f"{prefix}-{index}-id"] = ids.get((row.get("role", ""), row[key]), "")
    return data


def admin_errors(response) -> list:
    """What the admin's change form says is wrong: its own errors and each inline's."""
    if response.context is None:
        return []
    errors = [response.context["adminform"].form.errors]
    for inline in response.context["inline_admin_formsets"]:
        errors += [inline.formset.non_form_errors(), *[form.errors for form in inline.formset.forms if form.errors]]
    return [error for error in errors if error]


def superuser_client() -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root", password="not-used"))
    return client


def edit_by_patch(api, deployment: Deployment, document: dict) -> None:
    response = api.patch(f"/api/deployments/{deployment.pk}/", {"hosts": document["hosts"]}, format="json")
    assert response.status_code == 200, response.json()


def edit_by_put(api, deployment: Deployment, document: dict) -> None:
    response = api.put(f"/api/deployments/{deployment.pk}/", document, format="json")
    assert response.status_code == 200, response.json()


def edit_by_upsert(api, deployment: Deployment, document: dict) -> None:
    first = api.post("/api/deployments/upsert/", document, format="json")
    assert first.status_code == 200 and first.headers["Deployment-Outcome"] == "updated"
    again = api.post("/api/deployments/upsert/", document, format="json")
    assert again.status_code == 200 and again.headers["Deployment-Outcome"] == "unchanged"


def edit_by_form(api, deployment: Deployment, document: dict) -> None:
    browser = Client()
    browser.force_login(get_user_model().objects.get(username="alice"))
    response = browser.post(f"/deployments/{deployment.pk}/edit/", form_data(document))
    assert response.status_code == 302, response.content.decode()[-3000:]


def edit_by_admin(api, deployment: Deployment, document: dict) -> None:
    response = superuser_client().post(
        f"/admin/ports/deployment/{deployment.pk}/change/", admin_data(deployment, document)
    )
    assert response.status_code == 302, admin_errors(response)


@pytest.mark.parametrize("edit", [edit_by_patch, edit_by_put, edit_by_upsert, edit_by_form, edit_by_admin])
def test_every_edit_path_puts_the_new_address_in_the_checklist_at_once(deployment, api, full_document, edit):
    assert dns_destinations(deployment) == {"127.0.4.9"}
    edit(api, deployment, moved_dns(full_document))
    assert dns_destinations(deployment) == {DNS_MOVED}
    checklist = api.get(f"/api/deployments/{deployment.pk}/checklist/", {"q": "dns1"}).json()
    assert {item["destination"] for item in checklist["items"]} == {DNS_MOVED}
    assert len(checklist["items"]) == 6  # TCP and UDP from each of the three appliances
    # The answer after the edit shows the stored state too.
    body = api.get(f"/api/deployments/{deployment.pk}/").json()
    assert DNS_MOVED in {host["address"] for host in body["hosts"]}


def test_the_admin_refuses_what_the_api_refuses(deployment, full_document):
    admin = superuser_client()
    url = f"/admin/ports/deployment/{deployment.pk}/change/"
    before = list(deployment.checklist.values_list("key", flat=True))
    for change, message in [
        (lambda d: d["hosts"][0].update(address="any"), "is for peer networks only"),
        (lambda d: d["appliances"].append({**d["appliances"][0], "hostname": "ESA1.example.test"}), "hostname"),
        (lambda d: d["appliances"][1].update(p1_address="127.0.2.1"), "already the address of another interface"),
        (lambda d: d.update(dlp_base_port=17440), "overlaps 17443/tcp"),
    ]:
        document = copy.deepcopy(full_document)
        change(document)
        response = admin.post(url, admin_data(deployment, document))
        assert response.status_code == 200, message  # the form again, with its errors
        assert message in str(admin_errors(response)), (message, admin_errors(response))
    assert list(deployment.checklist.values_list("key", flat=True)) == before
    assert deployment.hosts.get(name="fsm").address == "127.0.4.1"


def test_the_admin_creates_a_deployment_with_its_checklist(catalog, user):
    deployment = create_deployment(FULL_DEPLOYMENT)
    deployment.delete()
    fresh = Deployment(team=user.teams.get(), catalog_version=catalog, name="Mail gateways")
    response = superuser_client().post("/admin/ports/deployment/add/", admin_data(fresh, FULL_DEPLOYMENT))
    assert response.status_code == 302, admin_errors(response)
    created = Deployment.objects.get()
    assert created.checklist.count() == 81 and created.checklist_fingerprint


def test_a_dlp_range_only_clashes_with_ports_of_its_own_listener(deployment, api):
    # 17690-17705 overlaps 17700-17714, but that range listens on the appliance, not the DLP server.
    response = api.patch(f"/api/deployments/{deployment.pk}/", {"dlp_base_port": 17690}, format="json")
    assert response.status_code == 200, response.json()
    moved = deployment.checklist.filter(requirement__uid__startswith="fes.dlp.17500-17515")
    assert set(moved.values_list("port_start", "port_end")) == {(17690, 17705)}


# --- Exports are kept ---------------------------------------------------------------------

EXPORTS = [
    "checklist/",
    "checklist/?format=csv",
    "checklist/?status=todo",
    "checklist.xlsx",
    "change-request.pdf?scope=unverified",
    "firewall/nftables/",
    "firewall/iptables/",
    "firewall/ip6tables/",
    "firewall/asa/",
    "firewall/panos/?scope=unverified",
]


@pytest.mark.parametrize("export", EXPORTS)
def test_every_export_can_be_compared_with_later_by_its_fingerprint(deployment, api, full_document, export):
    response = api.get(f"/api/deployments/{deployment.pk}/{export}")
    assert response.status_code == 200
    since = response.headers["Checklist-Fingerprint"]
    if export.startswith("checklist/") and "csv" not in export:
        assert response.json()["fingerprint"] == since
    edit_by_patch(api, deployment, moved_dns(full_document))
    diff = api.get(f"/api/deployments/{deployment.pk}/checklist/diff/", {"since": since})
    assert diff.status_code == 200, diff.json()
    body = diff.json()
    assert {rule["destination"] for rule in body["added"]} == {DNS_MOVED}
    assert {rule["destination"] for rule in body["removed"]} == {"127.0.4.9"}
    assert len(body["added"]) == len(body["removed"]) == 6


def test_an_unchanged_checklist_answers_304_and_a_change_shows_at_once(
    deployment, api, django_capture_on_commit_callbacks
):
    url = f"/api/deployments/{deployment.pk}/checklist/"
    first = api.get(url)
    etag = first.headers["ETag"]
    assert api.get(url, HTTP_IF_NONE_MATCH=etag).status_code == 304
    item = first.json()["items"][0]
    with django_capture_on_commit_callbacks(execute=True):  # as when the request's transaction commits
        response = api.patch(f"/api/checklist-items/{item['id']}/", {"status": "requested"}, format="json")
    assert response.status_code == 200
    again = api.get(url, HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 200 and again.headers["ETag"] != etag
    assert next(i for i in again.json()["items"] if i["id"] == item["id"])["status"] == "requested"
    csv_rows = list(csv.DictReader(io.StringIO(api.get(url, {"format": "csv"}).content.decode())))
    assert next(row for row in csv_rows if row["items"] == str(item["id"]))["status"] == "Requested"


# --- Address families ---------------------------------------------------------------------


def dual_stack_document() -> dict:
    document = copy.deepcopy(FULL_DEPLOYMENT)
    document["appliances"][0]["p2_address"] = "fd00:6::1"  # esa1 also speaks IPv6, on P2
    document["hosts"].append({"role": "dns", "name": "dns6", "address": "::1"})
    document["peer_networks"].append({"role": "end_users", "name": "Staff v6", "network": "fd00:8::/64"})
    return document


def test_a_rule_never_mixes_address_families(catalog, user):
    deployment = create_deployment(dual_stack_document())
    for source, destination in deployment.checklist.values_list("source", "destination"):
        families = {":" in value for value in (source, destination) if value not in ("any", "localhost")}
        assert len(families) <= 1, (source, destination)
    # esa1 reaches the IPv6 DNS server from its IPv6 interface; esa2 and esa3 cannot.
    assert set(deployment.checklist.filter(destination="::1").values_list("source", "interface")) == {
        ("fd00:6::1", "P2")
    }
    warnings = " ".join(deployment.checklist_warnings)
    assert "dns6 (::1) is IPv6, and esa2.example.test has no IPv6 address" in warnings
    assert "Staff v6 (fd00:8::/64) is IPv6, and esa3.example.test has no IPv6 address" in warnings


def test_exports_of_both_families_pass_the_real_parsers(catalog, user, api, tmp_path):
    from ports.exports import RuleSet

    deployment = create_deployment(dual_stack_document())
    rule_set = RuleSet.build(deployment, {"scope": "all"})
    merged = [flow for flow in rule_set.flows if len(flow.items) > 1]
    assert len(merged) == 3 and len(rule_set.flows) == len(rule_set.items) - 6  # the DLP range's rules
    for syntax, command in [
        ("nftables", ["nft", "-c", "-f"]),
        ("iptables", ["iptables-restore", "--test"]),
        ("ip6tables", ["ip6tables-restore", "--test"]),
    ]:
        text = api.get(f"/api/deployments/{deployment.pk}/firewall/{syntax}/").content.decode()
        path = tmp_path / syntax
        path.write_text(text)
        checked = subprocess.run([*command, str(path)], capture_output=True, text=True)
        assert checked.returncode == 0, (syntax, checked.stderr)
        if syntax == "ip6tables":
            assert "-d ::1/128" in text and "-s fd00:8::/64" in text
    asa = api.get(f"/api/deployments/{deployment.pk}/firewall/asa/").content.decode()
    assert " network-object fd00:8::/64" in asa and " network-object host ::1" in asa


# --- Plain direction ----------------------------------------------------------------------


def test_the_flow_is_shown_beside_the_pages_own_direction_word(deployment, api):
    items = api.get(f"/api/deployments/{deployment.pk}/checklist/", {"port": 9443}).json()["items"]
    assert {(i["direction"], i["vendor_direction"], i["path"]) for i in items} == {
        ("from the appliance", "Inbound", "Email Security appliance → Forcepoint Security Manager")
    }
    rows = list(csv.DictReader(io.StringIO(api.get(f"/api/deployments/{deployment.pk}/checklist/?format=csv").text)))
    smtp = next(row for row in rows if row["ports"] == "25")
    assert (smtp["direction"], smtp["vendor_direction"]) == ("to the appliance", "Inbound")
    page = Client()
    page.force_login(get_user_model().objects.get(username="alice"))
    html = page.get(f"/deployments/{deployment.pk}/?port=9443").content.decode()
    assert "from the appliance" in html and "the vendor's “Inbound” table" in html


def test_a_name_typed_with_newlines_stays_inside_a_comment(catalog, user, api, tmp_path):
    deployment = create_deployment(FULL_DEPLOYMENT)
    # Names with control characters are refused at input now; one stored before stays harmless.
    Deployment.objects.filter(pk=deployment.pk).update(name="Mail gateways\nflush ruleset\n#")
    for syntax in ("nftables", "iptables", "asa", "panos"):
        text = api.get(f"/api/deployments/{deployment.pk}/firewall/{syntax}/").content.decode()
        assert "\nflush ruleset" not in text, syntax
    path = tmp_path / "rules.nft"
    path.write_text(api.get(f"/api/deployments/{deployment.pk}/firewall/nftables/").content.decode())
    assert subprocess.run(["nft", "-c", "-f", str(path)], capture_output=True).returncode == 0


def test_a_save_from_an_instance_read_earlier_keeps_the_checklist_fresh(
    deployment, api, full_document, django_capture_on_commit_callbacks
):
    url = f"/api/deployments/{deployment.pk}/checklist/"
    stale = Deployment.objects.get(pk=deployment.pk)  # as a request reads it before others commit
    item = deployment.checklist.first()
    with django_capture_on_commit_callbacks(execute=True):
        item.change_status("requested", None)
    assert len(api.get(url).json()["items"]) == 81  # rendered and kept under the new revision
    document = copy.deepcopy(full_document)
    document["hosts"] = [host for host in document["hosts"] if host["role"] != "dns"]
    from ports.deployments import save_deployment

    save_deployment(document, instance=stale)
    assert len(api.get(url).json()["items"]) == 81 - 12 == deployment.checklist.count()


def test_the_admin_takes_no_features_and_keeps_items_to_their_deployment(deployment, full_document):
    admin = superuser_client()
    document = copy.deepcopy(full_document) | {"features": []}
    response = admin.post(f"/admin/ports/deployment/{deployment.pk}/change/", admin_data(deployment, document))
    assert response.status_code == 302, admin_errors(response)
    deployment.refresh_from_db()
    assert deployment.features == []
    items = list(deployment.checklist.select_related("requirement"))
    assert items and all(not item.requirement.features for item in items)  # only rules every deployment needs
    item = deployment.checklist.first()
    assert admin.post(f"/admin/ports/checklistitem/{item.pk}/delete/", {"post": "yes"}).status_code == 403
    assert deployment.checklist.filter(pk=item.pk).exists()


def test_a_rules_columns_are_the_same_in_every_reading(deployment):
    """A rule's columns: its value's dict (JSON, CSV, the page), the sheets' headings and the API's
    typed schema name the same columns in the same order, so an attribute cannot be left out of one."""
    rule = deployment.checklist.select_related("requirement").first().rule
    names = [name for name, _ in RULE_COLUMNS]
    assert list(rule.as_dict()) == names
    assert sorted(RuleSerializer().fields) == sorted(names)
