"""The REST API as provisioning tools and the browser use it."""

from __future__ import annotations

import csv
import io

import pytest
import yaml
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from openapi_spec_validator import validate
from rest_framework.test import APIClient

from ports.models import Appliance, ChecklistItem, Deployment

from .conftest import create_deployment, recorded_run

# --- Permissions --------------------------------------------------------------------


def endpoints(deployment: Deployment) -> list[tuple[str, str]]:
    item = deployment.checklist.first()
    version = deployment.catalog_version
    return [
        ("get", "/api/me/"),
        ("get", "/api/catalog/versions/"),
        ("get", f"/api/catalog/versions/{version.pk}/"),
        ("get", "/api/catalog/requirements/"),
        ("get", "/api/catalog/requirements/fes.appliance.25-tcp/"),
        ("get", "/api/deployments/"),
        ("post", "/api/deployments/"),
        ("post", "/api/deployments/upsert/"),
        ("get", f"/api/deployments/{deployment.pk}/"),
        ("put", f"/api/deployments/{deployment.pk}/"),
        ("patch", f"/api/deployments/{deployment.pk}/"),
        ("delete", f"/api/deployments/{deployment.pk}/"),
        ("get", f"/api/deployments/{deployment.pk}/checklist/"),
        ("get", f"/api/deployments/{deployment.pk}/checklist/?format=csv"),
        ("get", "/api/checklist-items/"),
        ("get", f"/api/checklist-items/{item.pk}/"),
        ("patch", f"/api/checklist-items/{item.pk}/"),
    ]


def test_anonymous_requests_get_401_everywhere(deployment):
    client = APIClient()
    for method, url in endpoints(deployment):
        response = getattr(client, method)(url, {}, format="json")
        assert response.status_code == 401, (method, url)
        assert response.headers["WWW-Authenticate"] == "Token"
    assert Deployment.objects.get() == deployment and deployment.checklist.count() == 81


def test_a_bad_token_gets_401(deployment):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    assert client.get("/api/deployments/").status_code == 401


def test_another_team_sees_nothing_and_changes_nothing(deployment, other_api):
    item = deployment.checklist.first()
    ours = (f"/api/deployments/{deployment.pk}/", f"/api/checklist-items/{item.pk}/")
    for method, url in endpoints(deployment):
        if url.startswith(ours):
            response = getattr(other_api, method)(url, {"status": "verified", "name": "x"}, format="json")
            assert response.status_code == 404, (method, url)
    assert other_api.get("/api/deployments/").json()["count"] == 0
    assert other_api.get("/api/checklist-items/").json()["count"] == 0
    # Upserting the same name creates the other team's own deployment, leaving ours alone.
    response = other_api.post("/api/deployments/upsert/", {"name": deployment.name}, format="json")
    assert response.status_code == 201 and response.json()["team"] == "Other team"
    deployment.refresh_from_db()
    item.refresh_from_db()
    assert item.status == "todo" and deployment.appliances.count() == 3


def test_own_team_reads_every_endpoint(deployment, api):
    for method, url in endpoints(deployment):
        if method == "get":
            assert api.get(url).status_code == 200, url


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_the_catalog_is_read_only(catalog, api, method):
    for url in [
        "/api/catalog/versions/",
        f"/api/catalog/versions/{catalog.pk}/",
        "/api/catalog/requirements/",
        "/api/catalog/requirements/fes.appliance.25-tcp/",
    ]:
        assert getattr(api, method)(url, {}, format="json").status_code == 405
    assert catalog.requirements.count() == 24


def test_a_user_can_delete_own_deployment(deployment, api):
    assert api.delete(f"/api/deployments/{deployment.pk}/").status_code == 204
    assert not Deployment.objects.exists() and not ChecklistItem.objects.exists()


# --- Catalog ------------------------------------------------------------------------


def requirement_ids(api: APIClient, query: str) -> set[str]:
    response = api.get(f"/api/catalog/requirements/?{query}")
    assert response.status_code == 200
    return {r["id"] for r in response.json()}


def test_requirements_carry_the_pages_wording_and_normalised_flow(catalog, api):
    row = api.get("/api/catalog/requirements/fes.appliance.17700-17714-tcp/").json()
    assert row == row | {
        "id": "fes.appliance.17700-17714-tcp",
        "table": "appliance",
        "interfaces": ["P1", "P2"],
        "recommended_interface": "",
        "port_start": 17700,
        "port_end": 17714,
        "port_text": "17700*",
        "protocol": "tcp",
        "protocol_inferred": True,
        "direction": "Inbound",
        "initiator": "dlp_server",
        "listener": "appliance",
        "description": "Email data loss prevention system health and log data",
        "notes": ["The port range 17700–17714 must be open for communications with Forcepoint Email Security."],
    }
    assert "decrypted (including SSL Decryption or Deep Packet Inspection)" in row["warning"]


def test_requirement_filters(catalog, api):
    ranges = {
        "fes.dlp.17500-17515-tcp.fingerprint-status",
        "fes.dlp.17500-17515-tcp.fingerprint-repository",
        "fes.dlp.17500-17515-tcp.message-analysis",
    }
    assert requirement_ids(api, "port=17510") == ranges
    assert requirement_ids(api, "port=17714") == {"fes.appliance.17700-17714-tcp"}
    assert requirement_ids(api, "port=17716") == set()
    assert requirement_ids(api, "protocol=udp") == {
        "fes.off-appliance.1434-udp",
        "fes.off-appliance.53-udp",
        "fes.off-appliance.162-udp",
    }
    assert requirement_ids(api, "interface=C&table=off_appliance") == {
        "fes.off-appliance.9443-tcp",
        "fes.off-appliance.162-udp",
    }
    assert requirement_ids(api, "role=dns") == {"fes.off-appliance.53-tcp", "fes.off-appliance.53-udp"}
    assert requirement_ids(api, "role=security_manager") == {"fes.appliance.6671-tcp", "fes.off-appliance.9443-tcp"}
    assert requirement_ids(api, "q=fingerprint") == {
        "fes.dlp.17500-17515-tcp.fingerprint-status",
        "fes.dlp.17500-17515-tcp.fingerprint-repository",
        "fes.dlp.17444-tcp",
    }
    assert requirement_ids(api, "q=MUST BE OPEN") == {"fes.appliance.17700-17714-tcp"}
    assert requirement_ids(api, "version=2026.1&port=25") == {"fes.appliance.25-tcp"}
    assert requirement_ids(api, "version=1999") == set()


def test_bad_filter_values_get_400(catalog, api):
    for query in ["port=abc", "protocol=sctp", "interface=P3", "role=nobody", "table=x"]:
        response = api.get(f"/api/catalog/requirements/?{query}")
        assert response.status_code == 400, query
        assert query.split("=")[0] in response.json()


def test_catalog_versions_say_what_they_were_loaded_from(catalog, api):
    (version,) = api.get("/api/catalog/versions/").json()["results"]
    assert version["product"] == "forcepoint-email-security"
    assert version["version"] == "2026.1"
    assert version["source_file"] == "forcepoint-email-security-ports.txt"
    assert version["requirement_count"] == 24
    assert len(version["content_sha256"]) == 64


# --- Deployments --------------------------------------------------------------------


def test_create_returns_the_deployment_and_its_checklist_summary(catalog, api, full_document):
    response = api.post("/api/deployments/", full_document, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["team"] == "Mail team" and body["catalog_version"] == "2026.1"
    assert body["checklist"]["total"] == 81 and body["checklist"]["todo"] == 81
    assert body["checklist"]["warnings"] == []
    assert [a["site"] for a in body["appliances"]] == ["default"] * 3


BAD_DOCUMENTS = [
    (lambda d: d["appliances"][0].update(c_address="300.1.1.1"), ["appliances", 0, "c_address"]),
    (lambda d: d["appliances"][0].update(hostname="bad_host!"), ["appliances", 0, "hostname"]),
    (
        lambda d: d["appliances"][1].update(c_address=None, p1_address=None, p2_address=None),
        ["appliances", 1, "c_address"],
    ),
    (lambda d: d["appliances"][2].update(hostname="esa1.example.test"), ["appliances", 2, "hostname"]),
    (lambda d: d["appliances"][1].update(p1_address="127.0.2.1"), ["appliances", 1, "p1_address"]),
    (lambda d: d["appliances"][0].update(site="Head Office"), ["appliances", 0, "site"]),
    (lambda d: d["hosts"][0].update(address="not a host"), ["hosts", 0, "address"]),
    (lambda d: d["hosts"][0].update(address="10.1.1"), ["hosts", 0, "address"]),
    (lambda d: d["hosts"][0].update(role="appliance"), ["hosts", 0, "role"]),
    (lambda d: d["hosts"][10].update(role="dns", name="dns1"), ["hosts", 10, "name"]),
    (lambda d: d["peer_networks"][0].update(network="127.0.8.1/24"), ["peer_networks", 0, "network"]),
    (lambda d: d["peer_networks"][1].update(network="everywhere"), ["peer_networks", 1, "network"]),
    (lambda d: d["peer_networks"][0].update(role="dns"), ["peer_networks", 0, "role"]),
    (lambda d: d.update(dlp_base_port=0), ["dlp_base_port"]),
    (lambda d: d.update(dlp_base_port=65530), ["dlp_base_port"]),
    (lambda d: d.update(dlp_base_port=17440), ["dlp_base_port"]),
    (lambda d: d.update(dlp_base_port="many"), ["dlp_base_port"]),
    (lambda d: d.update(features=["dlp", "telepathy"]), ["features", 1]),
    (lambda d: d.update(catalog_version="1999.9"), ["catalog_version"]),
    (lambda d: d.update(name=""), ["name"]),
    (lambda d: d.update(team="Other team"), ["team"]),
    # Only peer networks may be "any"; names are compared without regard to case.
    (lambda d: d["hosts"][0].update(address="any"), ["hosts", 0, "address"]),
    (lambda d: d["hosts"][0].update(address="ANY"), ["hosts", 0, "address"]),
    (lambda d: d["appliances"][2].update(hostname="ESA1.example.test"), ["appliances", 2, "hostname"]),
    (lambda d: d["hosts"][10].update(role="dns", name="DNS1"), ["hosts", 10, "name"]),
    (
        lambda d: d["peer_networks"].append({"role": "end_users", "name": "staff", "network": "127.0.9.0/24"}),
        ["peer_networks", 2, "name"],
    ),
]


def error_at(body: dict, path: list) -> list[str]:
    for step in path:
        body = body[str(step)] if isinstance(body, dict) and isinstance(step, int) else body[step]
    assert isinstance(body, list) and all(isinstance(message, str) for message in body), body
    return body


@pytest.mark.parametrize(("change", "path"), BAD_DOCUMENTS)
def test_bad_input_gets_400_with_field_messages_and_saves_nothing(catalog, api, other_api, full_document, change, path):
    change(full_document)
    response = api.post("/api/deployments/", full_document, format="json")
    assert response.status_code == 400
    assert error_at(response.json(), path)
    assert not Deployment.objects.exists() and not Appliance.objects.exists()


@pytest.mark.parametrize(("change", "path"), [*BAD_DOCUMENTS[:17], *BAD_DOCUMENTS[-5:]])
def test_a_bad_update_leaves_the_deployment_as_it_was(deployment, api, full_document, change, path):
    before = list(deployment.checklist.values_list("pk", "key"))
    change(full_document)
    response = api.put(f"/api/deployments/{deployment.pk}/", full_document, format="json")
    assert response.status_code == 400
    assert error_at(response.json(), path)
    assert list(deployment.checklist.values_list("pk", "key")) == before
    assert deployment.appliances.count() == 3 and deployment.hosts.count() == 11


def test_dlp_base_port_errors_say_what_the_range_would_hit(deployment, api):
    response = api.patch(f"/api/deployments/{deployment.pk}/", {"dlp_base_port": 17430}, format="json")
    assert response.json() == {
        "dlp_base_port": [
            "The range 17430-17445 overlaps 17443/tcp (Registration, syslog, forensics, incidents, fes.dlp.17443-tcp).",
            "The range 17430-17445 overlaps 17444/tcp (Fingerprint download, fes.dlp.17444-tcp).",
        ]
    }


def test_a_name_is_unique_within_a_team(deployment, api, full_document):
    response = api.post("/api/deployments/", full_document, format="json")
    assert response.status_code == 400
    assert response.json() == {"name": ["Team Mail team already has a deployment named 'Mail gateways'."]}


def test_malformed_json_gets_400(catalog, api):
    response = api.generic("POST", "/api/deployments/", "{not json", content_type="application/json")
    assert response.status_code == 400 and "JSON parse error" in response.json()["detail"]


def test_upsert_is_idempotent_and_says_what_it_did(catalog, api, full_document):
    first = api.post("/api/deployments/upsert/", full_document, format="json")
    assert first.status_code == 201 and first.headers["Deployment-Outcome"] == "created"
    deployment = Deployment.objects.get()
    items = list(deployment.checklist.values_list("pk", "key", "revision"))
    updated = deployment.updated

    # The same document again, in another order: nothing changes.
    full_document["appliances"].reverse()
    full_document["features"].reverse()
    again = api.post("/api/deployments/upsert/", full_document, format="json")
    assert again.status_code == 200 and again.headers["Deployment-Outcome"] == "unchanged"
    assert again.json() == first.json() | {"outcome": "unchanged"}  # the same deployment; only the outcome differs
    deployment.refresh_from_db()
    assert deployment.updated == updated
    assert list(deployment.checklist.values_list("pk", "key", "revision")) == items

    full_document["dlp_base_port"] = 18000
    changed = api.post("/api/deployments/upsert/", full_document, format="json")
    assert changed.status_code == 200 and changed.headers["Deployment-Outcome"] == "updated"
    assert changed.json()["id"] == deployment.pk
    assert Deployment.objects.count() == 1
    assert deployment.checklist.filter(port_start=18000).count() == 9


def test_upsert_of_appliances_with_different_interfaces_is_unchanged_the_second_time(catalog, api):
    document = {
        "name": "Mixed",
        "appliances": [{"hostname": "a", "p1_address": "127.0.5.1"}, {"hostname": "b", "c_address": "127.0.5.2"}],
        "hosts": [{"role": "dns", "name": "dns", "address": "127.0.5.3"}],
    }
    assert api.post("/api/deployments/upsert/", document, format="json").status_code == 201
    again = api.post("/api/deployments/upsert/", document, format="json")
    assert again.status_code == 200 and again.headers["Deployment-Outcome"] == "unchanged"


def test_update_answers_with_what_is_stored_now(deployment, api, full_document):
    full_document["hosts"] = full_document["hosts"][:2]
    body = api.post("/api/deployments/upsert/", full_document, format="json").json()
    assert len(body["hosts"]) == 2 and body["checklist"]["total"] == deployment.checklist.count()
    body = api.patch(f"/api/deployments/{deployment.pk}/", {"features": []}, format="json").json()
    assert body["features"] == [] and body["checklist"]["total"] == deployment.checklist.count()


def test_odd_catalog_version_ids_get_400(catalog, api, full_document):
    for value in ["²", "9" * 30, "-1"]:
        response = api.post("/api/deployments/", {**full_document, "catalog_version": value}, format="json")
        assert response.status_code == 400 and "catalog_version" in response.json()


def test_upsert_needs_a_name(catalog, api):
    response = api.post("/api/deployments/upsert/", {"description": "no name"}, format="json")
    assert response.status_code == 400 and response.json() == {"name": ["This field is required."]}


# --- Checklist ----------------------------------------------------------------------


def test_checklist_json_says_what_it_was_built_from(deployment, api):
    body = api.get(f"/api/deployments/{deployment.pk}/checklist/").json()
    assert body["catalog_version"] == "2026.1" and body["product"] == "Forcepoint Email Security"
    assert body["dlp_base_port"] == 17500 and body["warnings"] == []
    assert "Deep Packet Inspection" in body["warning"]
    assert len(body["items"]) == 81
    item = next(i for i in body["items"] if i["requirement"] == "fes.appliance.17700-17714-tcp")
    assert item == item | {
        "source": "127.0.4.4",
        "source_role": "dlp_server",
        "destination": "127.0.2.1",
        "interface": "P1",
        "protocol": "tcp",
        "ports": "17700-17714",
        "port_start": 17700,
        "port_end": 17714,
        "direction": "to the appliance",
        "path": "Forcepoint DLP server → Email Security appliance",
        "vendor_direction": "Inbound",
        "status": "todo",
        "notes": ["* The port range 17700–17714 must be open for communications with Forcepoint Email Security."],
        "carries_tls": False,
    }
    assert [(note["sign"], note["mark"], note["kind"]) for note in body["footnotes"]] == [
        ("*", "*", "whole_range"),
        ("†", "*", "configurable_base"),
    ]
    assert body["fingerprint"] == deployment.checklist_fingerprint


def test_checklist_items_have_exactly_the_documented_fields(deployment, api):
    from portal.api.serializers import ChecklistItemDetailSerializer, ChecklistItemSerializer

    (item,) = api.get(f"/api/deployments/{deployment.pk}/checklist/", {"port": 6671, "q": "esa1"}).json()["items"]
    assert set(item) == set(ChecklistItemSerializer().fields)
    detail = api.get(f"/api/checklist-items/{item['id']}/").json()
    assert set(detail) == set(ChecklistItemDetailSerializer().fields)
    assert detail == item | {"history": [], "probe_history": []}


def test_checklist_filters(deployment, api):
    url = f"/api/deployments/{deployment.pk}/checklist/"
    assert len(api.get(url, {"protocol": "udp"}).json()["items"]) == 3 + 6 + 3
    assert {i["requirement"] for i in api.get(url, {"port": 17505}).json()["items"]} == {
        "fes.dlp.17500-17515-tcp.fingerprint-status",
        "fes.dlp.17500-17515-tcp.fingerprint-repository",
        "fes.dlp.17500-17515-tcp.message-analysis",
    }
    assert len(api.get(url, {"role": "dns"}).json()["items"]) == 12
    assert len(api.get(url, {"status": "verified"}).json()["items"]) == 0
    assert api.get(url, {"status": "nonsense"}).status_code == 400


def test_checklist_csv_is_the_same_rules_one_row_per_firewall_rule(deployment, api):
    response = api.get(f"/api/deployments/{deployment.pk}/checklist/?format=csv")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"] == f'attachment; filename="checklist-{deployment.pk}.csv"'
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8"))))
    items = api.get(f"/api/deployments/{deployment.pk}/checklist/").json()["items"]
    flows = {(i["number"], i["source"], i["destination"], i["protocol"], i["ports"]) for i in items}
    assert [(int(r["number"]), r["source"], r["destination"], r["protocol"], r["ports"]) for r in rows] == sorted(flows)
    assert sorted(int(item_id) for r in rows for item_id in r["items"].split(", ")) == sorted(i["id"] for i in items)
    dlp = next(r for r in rows if r["requirement"] == "fes.appliance.17700-17714-tcp")
    assert dlp["ports"] == "17700-17714" and dlp["notes"].startswith("* The port range 17700–17714 must be open")


def test_checklist_csv_of_an_unknown_deployment_is_a_404(catalog, api):
    response = api.get("/api/deployments/999999/checklist/?format=csv")
    assert response.status_code == 404
    assert response.content.decode().splitlines() == ["error", "No Deployment matches the given query."]


def checklist_queries(api: APIClient, deployment: Deployment, fmt: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert api.get(f"/api/deployments/{deployment.pk}/checklist/?format={fmt}").status_code == 200
    return len(queries)


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_checklist_query_count_does_not_grow_with_items(catalog, api, full_document, fmt):
    small = create_deployment(full_document)
    full_document.update(name="Large")
    full_document["appliances"] = [
        {"hostname": f"esa{n}.example.test", "c_address": f"127.1.{n}.1", "p1_address": f"127.1.{n}.2"}
        for n in range(20)
    ]
    large = create_deployment(full_document)
    assert large.checklist.count() > 10 * small.checklist.count()
    api.get("/api/me/")  # its first use is written once (ApiToken.record_use): not counted below
    # The token, the deployment, the rows' versions, the items rendered and their requirements; and
    # the catalog's footnotes, which the JSON's head lists.
    assert checklist_queries(api, small, fmt) == checklist_queries(api, large, fmt) <= 6


def test_deployment_list_query_count_does_not_grow_with_deployments(catalog, api, full_document):
    create_deployment(full_document)
    api.get("/api/me/")  # its first use is written once (ApiToken.record_use): not counted below
    with CaptureQueriesContext(connection) as one:
        api.get("/api/deployments/")
    for n in range(3):
        create_deployment({**full_document, "name": f"More {n}"})
    with CaptureQueriesContext(connection) as four:
        body = api.get("/api/deployments/").json()
    assert body["count"] == 4 and len(one) == len(four)
    assert [d["name"] for d in body["results"]] == ["Mail gateways", "More 0", "More 1", "More 2"]


def etag_of(api: APIClient, item: ChecklistItem) -> str:
    response = api.get(f"/api/checklist-items/{item.pk}/")
    assert response.json()["etag"] == response.headers["ETag"]
    return response.headers["ETag"]


def test_status_change_with_if_match_and_its_history(deployment, api, user):
    item = deployment.checklist.first()
    url = f"/api/checklist-items/{item.pk}/"
    tag = etag_of(api, item)
    response = api.patch(url, {"status": "requested", "comment": "CHG-42"}, format="json", HTTP_IF_MATCH=tag)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "requested" and response.headers["ETag"] != tag
    assert body["status_changed_at"] is not None
    assert [(h["from_status"], h["to_status"], h["user"], h["comment"]) for h in body["history"]] == [
        ("todo", "requested", "alice", "CHG-42")
    ]

    # The same tag again is stale: 412, and nothing changes.
    stale = api.patch(url, {"status": "waived", "comment": "not used here"}, format="json", HTTP_IF_MATCH=tag)
    assert stale.status_code == 412
    assert "changed meanwhile" in stale.json()["detail"]
    assert stale.headers["ETag"] == response.headers["ETag"]
    item.refresh_from_db()
    assert item.status == "requested" and item.history.count() == 1

    fresh = api.patch(url, {"status": "opened"}, format="json", HTTP_IF_MATCH=response.headers["ETag"])
    assert fresh.status_code == 200 and [h["to_status"] for h in fresh.json()["history"]] == ["requested", "opened"]


def test_an_etag_of_another_item_is_stale(deployment, api):
    first, second = deployment.checklist.all()[:2]
    response = api.patch(
        f"/api/checklist-items/{first.pk}/", {"status": "opened"}, format="json", HTTP_IF_MATCH=second.etag
    )
    assert response.status_code == 412


def test_a_bad_status_gets_400_and_changes_nothing(deployment, api):
    item = deployment.checklist.first()
    for body in [{"status": "done"}, {}, {"status": "opened", "comment": "x" * 2001}]:
        response = api.patch(f"/api/checklist-items/{item.pk}/", body, format="json")
        assert (response.status_code == 400 and "status" in response.json()) or "comment" in response.json()
    item.refresh_from_db()
    assert item.status == "todo" and item.revision == 1 and not item.history.exists()


def test_checklist_items_cannot_be_replaced_or_deleted(deployment, api):
    item = deployment.checklist.first()
    assert api.put(f"/api/checklist-items/{item.pk}/", {"status": "opened"}, format="json").status_code == 405
    assert api.delete(f"/api/checklist-items/{item.pk}/").status_code == 405


# --- Schema -------------------------------------------------------------------------


def test_openapi_schema_validates(db, tmp_path):
    path = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(path))
    schema = yaml.safe_load(path.read_text())
    validate(schema)
    checklist = schema["paths"]["/api/deployments/{id}/checklist/"]["get"]
    assert checklist["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Checklist"
    }
    parameters = {p["name"] for p in checklist["parameters"]}
    assert {"status", "port", "role"} <= parameters and "format" not in parameters  # its CSV: checklist.csv
    assert "/api/deployments/upsert/" in schema["paths"]


def test_the_schema_and_docs_need_a_login_unless_opened(db, client, user, settings):
    assert client.get("/api/schema/").status_code == 401
    assert client.get("/api/docs/").status_code == 401
    client.force_login(user)
    assert client.get("/api/schema/").status_code == 200


def test_api_docs_use_self_hosted_assets(db, client, user):
    client.force_login(user)
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn" not in html and "https://" not in html


def test_open_rules_are_verified_in_one_write_and_a_waiver_stays(deployment, api, user, django_assert_max_num_queries):
    items = list(deployment.checklist.order_by("pk")[:4])
    recorded_run(deployment, list(zip(items, ["open", "open", "open", "refused"], strict=True)))
    items[1].change_status("waived", user, "no DLP at this site")
    with django_assert_max_num_queries(12):  # whatever the number of rules
        response = api.post(f"/api/deployments/{deployment.pk}/checklist/verify-open/", {}, format="json")
    assert response.status_code == 200 and response.json() == {"verified": 2}
    statuses = dict(deployment.checklist.filter(pk__in=[i.pk for i in items]).values_list("pk", "status"))
    assert [statuses[i.pk] for i in items] == ["verified", "waived", "verified", "todo"]
    assert items[0].history.get().comment.startswith("latest probe open (default, ")
    again = api.post(f"/api/deployments/{deployment.pk}/checklist/verify-open/", {}, format="json")
    assert again.json() == {"verified": 0} and items[0].history.count() == 1  # nothing written twice


def test_a_filter_that_does_not_parse_is_said_whatever_the_sort(deployment, user):
    from django.test import Client

    page = Client()
    page.force_login(user)
    for sort in ["result", "-result", "destination"]:
        response = page.get(f"/deployments/{deployment.pk}/", {"port": "abc", "sort": sort})
        assert response.status_code == 200 and "Enter a whole number." in response.content.decode()


def test_the_deployments_list_holds_summaries_that_link_their_documents(deployment, api):
    (listed,) = api.get("/api/deployments/").json()["results"]
    assert "appliances" not in listed and listed["checklist"]["total"] == 81 and listed["name"] == deployment.name
    document = api.get(listed["url"]).json()
    assert document["id"] == listed["id"] and document["appliances"] and document["checklist"] == listed["checklist"]
