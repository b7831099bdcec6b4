"""The portal under hostile or careless input: what a user types stays data, unknown fields and
races are refused, the settings hold in production."""

from __future__ import annotations

import copy
import subprocess
import sys
import time

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings
from rest_framework.authtoken.models import Token

from ports.models import CatalogVersion, Deployment
from probes.models import ProbeRun

from .conftest import FULL_DEPLOYMENT, make_member

# --- Strict input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url", "body", "field"),
    [
        ("post", "/api/deployments/", {**FULL_DEPLOYMENT, "owner": "x"}, ["owner"]),
        ("post", "/api/deployments/upsert/", {**FULL_DEPLOYMENT, "dlp_base": 17600}, ["dlp_base"]),
        ("patch", "/api/deployments/{pk}/", {"hosts": [{"role": "dns", "name": "d", "adress": "127.0.0.1"}]}, None),
        ("patch", "/api/checklist-items/{item}/", {"status": "opened", "note": "CHG-1"}, ["note"]),
        ("post", "/api/deployments/{pk}/probe-runs/", {"host": "127.0.0.1", "ports": [22]}, ["host", "ports"]),
        ("post", "/api/deployments/{pk}/tls-pins/", {"host": "h", "port": 443, "pin": "ab" * 32, "x": 1}, ["x"]),
        ("post", "/api/deployments/{pk}/change-requests/", {"scope": "all", "format": "pdf"}, ["format"]),
    ],
)
def test_an_unknown_field_is_a_400_that_names_it_and_changes_nothing(deployment, api, method, url, body, field):
    url = url.format(pk=deployment.pk, item=deployment.checklist.first().pk)
    before = (ProbeRun.objects.count(), Deployment.objects.count(), list(deployment.checklist.values("status")))
    response = getattr(api, method)(url, body, format="json")
    assert response.status_code == 400, response.content
    errors = response.json()
    if field is None:  # inside a list: the row and the field
        assert "Unknown field" in errors["hosts"][0]["adress"][0]
    else:
        assert all("Unknown field" in errors[name][0] for name in field), errors
    after = (ProbeRun.objects.count(), Deployment.objects.count(), list(deployment.checklist.values("status")))
    assert after == before


def test_a_field_read_from_the_api_can_be_sent_back(deployment, api):
    document = api.get(f"/api/deployments/{deployment.pk}/").json()
    response = api.put(f"/api/deployments/{deployment.pk}/", document, format="json")
    assert response.status_code == 200, response.json()


def test_a_catalog_with_an_unknown_field_loads_nothing(db, tmp_path, settings):
    source = (settings.BASE_DIR / "ports/catalogs/forcepoint-email-security-2026.1.yaml").read_text()
    good = tmp_path / "a-good.yaml"
    good.write_text(source.replace('version: "2026.1"', 'version: "2027.1"'))
    bad = tmp_path / "b-bad.yaml"
    bad.write_text(
        source.replace('version: "2026.1"', 'version: "2027.2"').replace("    row: 1\n", "    row: 1\n    rows: 2\n", 1)
    )
    with pytest.raises(CommandError) as refused:
        call_command("load_catalog", str(good), str(bad))
    assert "b-bad.yaml: requirement 1" in str(refused.value) and "rows: Unknown field" in str(refused.value)
    assert "Nothing was loaded" in str(refused.value)
    assert not CatalogVersion.objects.exists()


# --- Races --------------------------------------------------------------------------------

STARTER = """
import sys, time, urllib.request
url, token, at = sys.argv[1], sys.argv[2], float(sys.argv[3])
time.sleep(max(0, at - time.time()))
request = urllib.request.Request(url, data=b"{}", method="POST",
    headers={"Authorization": "Token " + token, "Content-Type": "application/json"})
try:
    print(urllib.request.urlopen(request, timeout=30).status)
except urllib.error.HTTPError as answer:
    print(answer.code)
"""


@pytest.mark.django_db(transaction=True)
@override_settings(PROBE_RUNS_PER_MINUTE=3)
def test_the_run_limit_holds_for_concurrent_starts_from_several_processes(live_server):
    call_command("load_catalog", verbosity=0)
    user = make_member("racer", "Mail team")
    from ports.deployments import save_deployment

    deployment = save_deployment({**copy.deepcopy(FULL_DEPLOYMENT), "team": "Mail team"}).deployment
    token = Token.objects.create(user=user).key
    url = f"{live_server.url}/api/deployments/{deployment.pk}/probe-runs/"
    at = time.time() + 1.5  # every process sends at the same moment
    starters = [
        subprocess.Popen([sys.executable, "-c", STARTER, url, token, str(at)], stdout=subprocess.PIPE, text=True)
        for _ in range(8)
    ]
    codes = sorted(int(process.communicate(timeout=60)[0]) for process in starters)
    assert codes == [202] * 3 + [429] * 5
    assert ProbeRun.objects.filter(deployment=deployment).count() == 3
