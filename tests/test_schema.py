"""The OpenAPI schema describes every answer a provisioning tool gets, exactly: each answer of
the whole flow, from a real server, its errors too, is validated against /api/schema/ with
openapi-core; every operation declares the errors it may answer, in the one error shape."""

from __future__ import annotations

import copy

import pytest
import requests
import yaml
from django.core.cache import caches
from django.core.management import call_command
from django.test import Client as BrowserClient
from django.test import override_settings
from django.utils import timezone
from openapi_core import Config, OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse
from openapi_core.deserializing.media_types.util import plain_loads
from rest_framework.test import APIClient

from portal.api.throttling import CACHE
from ports.exports.firewall import SYNTAXES
from probes.models import LatestProbe, ProbeRun, WorkerHeartbeat
from probes.serializers import LatestResultSerializer

from .conftest import FULL_DEPLOYMENT, api_key, make_member


def walk(node: object) -> list[dict]:
    """Every schema object of a document."""
    found = []
    if isinstance(node, dict):
        found.append(node)
        for value in node.values():
            found += walk(value)
    elif isinstance(node, list):
        for value in node:
            found += walk(value)
    return found


class Client:
    """A provisioning script's HTTP client that checks every answer against the schema."""

    def __init__(self, base: str, token: str) -> None:
        self.base, self.session = base, requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"
        self.schema = yaml.safe_load(self.session.get(f"{base}/api/schema/", timeout=30).text)
        config = Config(extra_media_type_deserializers={"text/csv": plain_loads})
        self.openapi = OpenAPI.from_dict(self.schema, config=config)
        self.checked: list[str] = []

    def call(self, method: str, path: str, expect: int, **kwargs: object) -> requests.Response:
        response = self.session.request(method, f"{self.base}{path}", timeout=60, **kwargs)
        assert response.status_code == expect, (method, path, response.status_code, response.text[:500])
        errors = list(
            self.openapi.iter_response_errors(
                RequestsOpenAPIRequest(response.request), RequestsOpenAPIResponse(response)
            )
        )
        details = [getattr(error, "details", None) or repr(error) for error in errors]
        assert not errors, (method, path, details)
        self.checked.append(f"{method} {path} {response.status_code}")
        return response


def test_the_schema_declares_every_list_and_every_blank(db):
    call_command("load_catalog", verbosity=0)
    user = make_member("schema", "Mail team")
    client = APIClient()
    client.force_authenticate(user)
    schema = yaml.safe_load(client.get("/api/schema/").content)
    for node in walk(schema):
        if node.get("type") == "array":
            assert node.get("items"), node  # generators drop schemas whose arrays have no item type
    deployment = schema["components"]["schemas"]["Deployment"]
    assert deployment["properties"]["checklist"]["allOf"] == [{"$ref": "#/components/schemas/ChecklistSummary"}]


ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
CONFLICT = {"application/json": {"schema": {"$ref": "#/components/schemas/RequestConflict"}}}
WRITES = {"post", "put", "patch", "delete"}
# The writes that take no body: actions on the object their path names.
BODILESS = {
    ("post", "/api/alert-channels/{id}/test/"),
    ("post", "/api/deployments/{id}/checklist/verify-open/"),
    ("post", "/api/probe-runs/{id}/cancel/"),
}


# The reads for a team's admins only: its other members get 403, saying which role they have.
ADMINS_READ = {("get", "/api/teams/{id}/tokens/")}


def operations(schema: dict) -> list[tuple[str, str, dict]]:
    return [(method, path, op) for path, item in schema["paths"].items() for method, op in item.items()]


def test_every_operation_declares_the_errors_it_may_answer_in_one_shape(db):
    user = make_member("schema", "Mail team")
    client = APIClient()
    client.force_authenticate(user)
    schema = yaml.safe_load(client.get("/api/schema/").content)
    assert len(operations(schema)) >= 45
    for method, path, operation in operations(schema):
        body = method in {"post", "put", "patch"} and (method, path) not in BODILESS
        assert ("requestBody" in operation) == body, (method, path)
        query = any(parameter["in"] == "query" for parameter in operation.get("parameters", []))
        expected = {"401", "429", "503"}  # every operation: credentials, rate limits, the database
        expected |= {"400"} if body or query else set()
        expected |= {"403"} if method in WRITES else set()  # a browser session's write without CSRF
        expected |= {"403"} if (method, path) in ADMINS_READ else set()  # a member who is not the team's admin
        expected |= {"404"} if "{" in path else set()
        expected |= {"413", "415"} if body else set()
        expected |= {"412"} if (method, path) == ("patch", "/api/checklist-items/{id}/") else set()
        # A change request's step that its state does not allow (or rules hold back) is a conflict.
        expected |= {"409"} if (method, path) == ("post", "/api/requests/{id}/{action}/") else set()
        responses = operation["responses"]
        errors = {code for code in responses if code >= "400"}
        assert errors == expected, (method, path, sorted(errors ^ expected))
        for code in errors:
            shape = CONFLICT if code == "409" else ERROR  # a conflict's `detail`, and what holds it back
            assert responses[code]["content"] == shape, (method, path, code)
            assert responses[code]["description"], (method, path, code)
        assert responses["429"]["headers"]["Retry-After"]["required"] is True
        assert responses["401"]["headers"]["WWW-Authenticate"]["required"] is True
        # One body per answer: a generator types each answer as one type, never `Checklist | string`.
        assert all(len(answer.get("content", {})) <= 1 for answer in responses.values()), (method, path)
        for code in ("200", "201"):  # every write says what it did
            assert not body or code not in responses or "Outcome" in responses[code]["headers"], (method, path)
    schemas = schema["components"]["schemas"]
    assert "Throttled" not in schemas  # one error shape
    assert schemas["Error"]["additionalProperties"]["anyOf"][0] == {"type": "array", "items": {"type": "string"}}


def test_the_schema_declares_the_response_headers(db):
    user = make_member("schema", "Mail team")
    client = APIClient()
    client.force_authenticate(user)
    paths = yaml.safe_load(client.get("/api/schema/").content)["paths"]

    def headers(path: str, method: str, code: str) -> set[str]:
        return set(paths[path][method]["responses"][code].get("headers", {}))

    item = "/api/checklist-items/{id}/"
    assert {"ETag"} <= headers(item, "get", "200")
    assert {"ETag", "Outcome"} <= headers(item, "patch", "200") and {"ETag"} <= headers(item, "patch", "412")
    checklist = "/api/deployments/{id}/checklist/"
    assert {"ETag", "Checklist-Fingerprint"} <= headers(checklist, "get", "200")
    assert list(paths[checklist]["get"]["responses"]["200"]["content"]) == ["application/json"]
    assert "format" not in {parameter["name"] for parameter in paths[checklist]["get"]["parameters"]}
    exports = ["checklist.csv", "checklist.xlsx", "change-request.pdf", "firewall/{syntax}/"]
    for export in [f"/api/deployments/{{id}}/{name}" for name in exports] + ["/api/change-requests/{id}/pdf/"]:
        assert "Checklist-Fingerprint" in headers(export, "get", "200"), export
    firewall = paths["/api/deployments/{id}/firewall/{syntax}/"]["get"]
    assert "Zones-Ignored" in headers("/api/deployments/{id}/firewall/{syntax}/", "get", "200")
    syntax = next(p for p in firewall["parameters"] if p["in"] == "path" and p["name"] == "syntax")
    assert syntax["schema"] == {"type": "string", "enum": sorted(SYNTAXES)}
    for upsert in ("/api/deployments/upsert/", "/api/deployments/"):
        assert {"Outcome", "Deployment-Outcome"} <= headers(upsert, "post", "201")
    for started in ("/api/deployments/{id}/probe-runs/", "/api/deployments/{id}/change-requests/"):
        assert "Location" in headers(started, "post", "202")


@pytest.mark.django_db(transaction=True)
def test_every_answer_of_the_provisioning_flow_matches_the_schema(live_server):
    call_command("load_catalog", verbosity=0)
    user = make_member("provisioner", "Mail team")
    api = Client(live_server.url, api_key(user))

    # A provisioning tool upserts its document (twice), edits it, and reads it back.
    document = copy.deepcopy(FULL_DEPLOYMENT)
    created = api.call("POST", "/api/deployments/upsert/", 201, json=document).json()
    assert api.call("POST", "/api/deployments/upsert/", 200, json=document).headers["Deployment-Outcome"] == "unchanged"
    pk = created["id"]
    api.call("PATCH", f"/api/deployments/{pk}/", 200, json={"dlp_base_port": 18000})
    api.call("PUT", f"/api/deployments/{pk}/", 200, json=document)
    api.call("GET", "/api/deployments/", 200)
    api.call("GET", f"/api/deployments/{pk}/", 200)
    api.call("GET", "/api/catalog/versions/", 200)
    api.call("GET", "/api/catalog/requirements/", 200)
    api.call("GET", "/api/catalog/requirements/fes.appliance.25-tcp/", 200)
    api.call("GET", "/api/me/", 200)

    # The checklist, as JSON and CSV, and a status change with If-Match.
    checklist = api.call("GET", f"/api/deployments/{pk}/checklist/", 200).json()
    api.call("GET", f"/api/deployments/{pk}/checklist.csv", 200, headers={"Accept": "text/csv"})  # its own type
    unlisted = api.session.get(f"{live_server.url}/api/deployments/{pk}/checklist/?format=csv", timeout=30)
    assert unlisted.status_code == 200 and unlisted.headers["Content-Type"] == "text/csv; charset=utf-8"
    api.call("GET", f"/api/deployments/{pk}/checklist/?status=todo&port=25", 200)
    item_id = checklist["items"][0]["id"]
    item = api.call("GET", f"/api/checklist-items/{item_id}/", 200)
    api.call(
        "PATCH",
        f"/api/checklist-items/{item_id}/",
        200,
        json={"status": "requested", "comment": "CHG-1"},
        headers={"If-Match": item.headers["ETag"]},
    )
    api.call("GET", "/api/checklist-items/", 200)

    # Probe runs: one whose results a worker recorded, then another, so that results carry a
    # previous state; a live heartbeat keeps the run open for the results to come.
    now = timezone.now()
    for site in ("default", "hq", "office"):
        WorkerHeartbeat.objects.create(worker=f"w@{site}", site=site, started=now, last_seen=now)
    items = [entry["id"] for entry in checklist["items"][:3]]
    for state in ("open", "filtered"):
        run = api.call("POST", f"/api/deployments/{pk}/probe-runs/", 202, json={"items": items}).json()
        outcome = {"state": state, "summary": f"{state} in test", "latency_ms": 1.5, "evidence": {"seen": state}}
        ProbeRun.record(run["id"], "w@default", dict.fromkeys(items, outcome))
        detail = api.call("GET", f"/api/probe-runs/{run['id']}/", 200).json()
    assert {result["previous_state"] for result in detail["results"]} == {"open"}
    # The checklist builds its latest results directly; they read as the serializer's would.
    for result in LatestProbe.objects.all():
        assert LatestResultSerializer.represent(result) == LatestResultSerializer(result).data
    api.call("GET", f"/api/deployments/{pk}/probe-runs/", 200)
    api.call("GET", "/api/probe-runs/", 200)
    api.call("GET", "/api/probe-sites/", 200)
    api.call("GET", f"/api/checklist-items/{items[0]}/", 200)
    api.call("GET", f"/api/deployments/{pk}/checklist/", 200)
    api.call(
        "POST", f"/api/deployments/{pk}/tls-pins/", 201, json={"host": "127.0.4.1", "port": 9443, "pin": "ab" * 32}
    )
    api.call("GET", f"/api/deployments/{pk}/tls-pins/", 200)

    # Exports' metadata: a queued change request, the diff since an export.
    job = api.call("POST", f"/api/deployments/{pk}/change-requests/", 202, json={"scope": "selection", "items": items})
    api.call("GET", f"/api/change-requests/{job.json()['id']}/", 200)
    since = api.call("GET", f"/api/deployments/{pk}/firewall/nftables/", 200).headers["Checklist-Fingerprint"]
    api.call("PATCH", f"/api/deployments/{pk}/", 200, json={"dlp_base_port": 18100})
    diff = api.call("GET", f"/api/deployments/{pk}/checklist/diff/?since={since}", 200).json()
    assert diff["added"] and diff["removed"]

    # The errors a tool meets, each in the declared shape (Client.call validates every answer).
    bad = {**document, "appliances": [{"hostname": "esa9", "c_address": "not-an-address"}]}
    invalid = api.call("POST", "/api/deployments/upsert/", 400, json=bad).json()
    assert invalid["appliances"][0]["c_address"]  # a list's errors, one per item
    assert "dry_run" in api.call("PATCH", f"/api/deployments/{pk}/?dry_run=maybe", 400, json={}).json()
    api.call("GET", f"/api/deployments/{pk}/checklist/?port=http", 400)
    api.call("GET", "/api/deployments/?offset=-1", 400)
    api.call("POST", f"/api/deployments/{pk}/checklist/status/", 400, json={"status": "waived", "filter": {}})
    not_json = {"Content-Type": "application/json"}
    assert api.call("POST", "/api/deployments/upsert/", 400, data=b"{", headers=not_json).json()["detail"]
    api.call("GET", "/api/me/", 401, headers={"Authorization": None})
    browser = BrowserClient()
    browser.force_login(user)
    cookie = {"Cookie": f"sessionid={browser.cookies['sessionid'].value}", "Authorization": None}
    api.call("POST", f"/api/deployments/{pk}/checklist/verify-open/", 403, headers=cookie)
    api.call("GET", "/api/deployments/999999/", 404)
    api.call("GET", f"/api/deployments/{pk}/firewall/nftables/?since={'0' * 64}", 400, headers={"Accept": "text/plain"})
    stale = api.call(
        "PATCH", f"/api/checklist-items/{item_id}/", 412, json={"status": "opened"}, headers={"If-Match": '"1-1"'}
    )
    assert stale.json()["detail"] and stale.headers["ETag"]
    with override_settings(API_MAX_BODY_BYTES=1024):
        api.call("POST", "/api/deployments/upsert/", 413, json={**document, "name": "x" * 2000})
    api.call("POST", "/api/deployments/upsert/", 415, data="name=x", headers={"Content-Type": "text/plain"})
    caches[CACHE].delete(f"throttle_user_{user.pk}")
    with override_settings(API_RATE_USER="1/min"):
        api.call("GET", "/api/me/", 200)
        api.call("GET", "/api/me/", 429)
    met = {entry.rsplit(" ", 1)[1] for entry in api.checked}
    assert {"400", "401", "403", "404", "412", "413", "415", "429"} <= met
    assert len(api.checked) >= 45
