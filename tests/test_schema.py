"""The OpenAPI schema describes every answer a provisioning tool gets, exactly: each answer of
the whole flow, from a real server, is validated against /api/schema/ with openapi-core."""

from __future__ import annotations

import copy

import pytest
import requests
import yaml
from django.core.management import call_command
from django.utils import timezone
from openapi_core import Config, OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse
from openapi_core.deserializing.media_types.util import plain_loads
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from probes.models import LatestProbe, ProbeRun, WorkerHeartbeat
from probes.serializers import LatestResultSerializer

from .conftest import FULL_DEPLOYMENT, make_member


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


@pytest.mark.django_db(transaction=True)
def test_every_answer_of_the_provisioning_flow_matches_the_schema(live_server):
    call_command("load_catalog", verbosity=0)
    user = make_member("provisioner", "Mail team")
    api = Client(live_server.url, Token.objects.create(user=user).key)

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
    api.call("GET", f"/api/deployments/{pk}/checklist/?format=csv", 200)
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
    assert len(api.checked) >= 30
