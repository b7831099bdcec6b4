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

from ports.models import CatalogVersion, Deployment
from probes.models import ProbeRun

from .conftest import FULL_DEPLOYMENT, api_key, make_member

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


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        ("/api/checklist-items/{item}/", {"status": "requested", "comment": 0}, "comment"),
        ("/api/deployments/{pk}/", {"name": 5}, "name"),
        ("/api/deployments/{pk}/", {"hosts": [{"role": "dns", "name": ["d"], "address": "127.0.0.1"}]}, "hosts"),
    ],
)
def test_a_number_or_list_where_text_belongs_is_a_400_and_changes_nothing(deployment, api, url, body, field):
    """DRF would store 0 as the text "0": out of the schema, so refused."""
    url = url.format(pk=deployment.pk, item=deployment.checklist.first().pk)

    def state() -> tuple:
        deployment.refresh_from_db()
        return deployment.name, list(deployment.checklist.values("status", "revision")), deployment.hosts.count()

    before = state()
    response = api.patch(url, body, format="json", HTTP_IF_MATCH="")
    assert response.status_code == 400 and field in response.json(), response.content
    assert state() == before


@pytest.mark.parametrize("query", ["syntax=", "requested_date=", "scope="])
def test_an_empty_export_parameter_is_a_400_naming_it(deployment, api, query):
    """An empty value is a value: "syntax=" names no syntax (DRF's form rules read it as absent)."""
    response = api.get(f"/api/deployments/{deployment.pk}/change-request.pdf?{query}")
    assert response.status_code == 400 and query.rstrip("=") in response.json(), response.content


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
import json, sys, time, urllib.request
url, token, at, method, body, headers = sys.argv[1], sys.argv[2], float(sys.argv[3]), *sys.argv[4:7]
time.sleep(max(0, at - time.time()))
request = urllib.request.Request(url, data=body.encode(), method=method,
    headers={"Authorization": "Token " + token, "Content-Type": "application/json", **json.loads(headers)})
try:
    print(urllib.request.urlopen(request, timeout=30).status)
except urllib.error.HTTPError as answer:
    print(answer.code)
"""


def at_once(count: int, url: str, token: str, method: str = "POST", body: str = "{}", **headers: str) -> list[int]:
    """The answers to `count` requests sent at the same moment from as many processes, sorted."""
    import json

    at = time.time() + 1.5
    command = [sys.executable, "-c", STARTER, url, token, str(at), method, body, json.dumps(headers)]
    starters = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(count)]
    return sorted(int(process.communicate(timeout=60)[0]) for process in starters)


@pytest.mark.django_db(transaction=True)
@override_settings(PROBE_RUNS_PER_MINUTE=3)
def test_limits_and_etags_hold_for_concurrent_requests_from_several_processes(live_server):
    call_command("load_catalog", verbosity=0)
    user = make_member("racer", "Mail team")
    from ports.deployments import save_deployment

    deployment = save_deployment({**copy.deepcopy(FULL_DEPLOYMENT), "team": "Mail team"}).deployment
    token = api_key(user)
    codes = at_once(8, f"{live_server.url}/api/deployments/{deployment.pk}/probe-runs/", token)
    assert codes == [202] * 3 + [429] * 5
    assert ProbeRun.objects.filter(deployment=deployment).count() == 3

    # Ten status changes with the same ETag at once: one wins, nine are told it is stale.
    item = deployment.checklist.first()
    url = f"{live_server.url}/api/checklist-items/{item.pk}/"
    codes = at_once(10, url, token, "PATCH", '{"status": "opened"}', **{"If-Match": item.etag})
    assert codes == [200] + [412] * 9
    assert item.history.count() == 1


# --- Settings in production ------------------------------------------------------------------


def compose_services() -> dict:
    """docker-compose.yml as the Compose Specification's model reads it (YAML anchors resolved, as
    `docker compose config` does)."""
    import yaml
    from compose_spec import PyCompose
    from compose_spec.models import ComposeSpecification
    from django.conf import settings

    document = yaml.safe_load((settings.BASE_DIR / "docker-compose.yml").read_text())
    compose = PyCompose.from_dict(ComposeSpecification.model_validate(document))
    compose.validate()
    return {name: compose.get_service(name) for name in compose.service_names()}


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default} and ${NAME:?error}, from `variables`."""
    import re

    def one(match: re.Match) -> str:
        name, operator, rest = match.group(1), match.group(2) or "", match.group(3) or ""
        if name in variables:
            return variables[name]
        assert operator != ":?", f"{name} must be set: {rest}"
        return rest

    return re.sub(r"\$\{(\w+)(:[-?])?([^}]*)\}", one, value)


def manage(environment: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    from django.conf import settings

    env = {"PATH": "/usr/bin:/bin", "PORTAL_VAR_DIR": "/tmp/portal-settings-check", **environment}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=settings.BASE_DIR, env=env, capture_output=True, text=True
    )


def test_the_compose_file_is_valid_and_its_production_settings_pass_check_deploy():
    import secrets

    services = compose_services()
    assert {"postgres", "redis", "migrate", "web", "worker", "beat"} <= set(services)
    assert "http://localhost:8000/healthz" in str(services["web"].healthcheck.test)
    assert "inspect ping" in str(services["worker"].healthcheck.test)
    # The recorder reads what remote sites report, with the database; it is no Celery worker.
    assert services["recorder"].command == ["python", "manage.py", "record"]
    assert services["recorder"].environment["DATABASE_URL"].startswith("postgres://")

    # The commented remote-site worker, once uncommented, is a valid service with only its broker.
    import yaml
    from compose_spec.models import Service
    from django.conf import settings

    text = (settings.BASE_DIR / "docker-compose.yml").read_text()
    block = text.split("  # site-dmz:\n", 1)[1].split("\n\n", 1)[0]
    site = yaml.safe_load("site-dmz:\n" + "\n".join(line.replace("  #", "", 1) for line in block.splitlines()))
    service = Service.model_validate(site["site-dmz"])
    environment = service.environment.root if hasattr(service.environment, "root") else service.environment
    assert "DATABASE_URL" not in environment and environment["REDIS_URL"].startswith("redis://site-dmz:")
    assert environment["WORKER_REMOTE_CONTROL"] == "0" and environment["BROKER_UNACKED_KEY"] == "unacked.dmz"
    assert "probes.dmz" in service.command and service.command[:3] == ["celery", "-A", "portal.probe_site"]
    variables = {"DJANGO_SECRET_KEY": secrets.token_urlsafe(50), "POSTGRES_PASSWORD": "not-used"}
    web = {name: interpolate(str(value), variables) for name, value in services["web"].environment.items()}
    assert web["DJANGO_SSL_REDIRECT"] == "1" and int(web["DJANGO_HSTS_SECONDS"]) >= 31536000
    assert web["DJANGO_ALLOWED_HOSTS"].split(",")[-1] == "localhost"  # what the health check calls
    checked = manage(web, "check", "--deploy", "--fail-level", "WARNING")
    assert checked.returncode == 0 and "no issues" in checked.stdout, checked.stdout + checked.stderr

    proxy = "from django.conf import settings; print(getattr(settings, 'SECURE_PROXY_SSL_HEADER', None))"
    assert "HTTP_X_FORWARDED_PROTO" in manage(web, "shell", "-c", proxy).stdout
    untrusted = {name: value for name, value in web.items() if name != "DJANGO_TRUST_X_FORWARDED_PROTO"}
    assert manage(untrusted, "shell", "-c", proxy).stdout.strip().endswith("\nNone")

    short = manage({**web, "DJANGO_SECRET_KEY": "x"}, "check")
    assert short.returncode != 0 and "at least 50 random characters" in short.stderr


# --- What a user types is data ----------------------------------------------------------------

TRICKY = [
    '=HYPERLINK("http://x.invalid","click")',
    "+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1+1)",
    'esa\'s "quoted"; # ! gateway',
    "Zürich – 東京 ☃",
]


def tricky_document() -> dict:
    document = copy.deepcopy(FULL_DEPLOYMENT)
    document["name"] = "=cmd|' /C calc'!A0 ; flush ruleset # !"
    for host, name in zip(document["hosts"], TRICKY, strict=False):
        host["name"] = name
    document["peer_networks"][0]["name"] = "=1+1"
    return document


def test_names_with_control_characters_are_refused(catalog, api):
    for change in [
        lambda d: d.update(name="Mail gateways\nflush ruleset"),
        lambda d: d.update(name="tab\there"),
        lambda d: d["hosts"][0].update(name="fsm\x1b[31m"),
        lambda d: d["peer_networks"][0].update(name="a\u2028b"),
        lambda d: d.update(description="bell\x07"),
    ]:
        document = copy.deepcopy(FULL_DEPLOYMENT)
        change(document)
        response = api.post("/api/deployments/", document, format="json")
        assert response.status_code == 400 and "control characters" in str(response.json()), response.json()
    response = api.post("/api/deployments/upsert/", {"name": "nul\x00name"}, format="json")
    assert response.status_code == 400 and "name" in response.json()
    response = api.post("/api/deployments/", {**FULL_DEPLOYMENT, "catalog_version": "2026\x00"}, format="json")
    assert response.status_code == 400 and "catalog_version" in response.json()
    assert api.get("/api/catalog/diff/", {"from": "2026.1\x00", "to": "2026.1"}).status_code == 400
    assert api.get("/api/catalog/diff/", {"from": "2026.1", "to": "2026.1"}).status_code == 200
    assert not Deployment.objects.exists()


def test_cells_that_look_like_formulas_stay_text(catalog, user, api):
    import csv
    import io

    from openpyxl import load_workbook

    from ports.deployments import save_deployment

    deployment = save_deployment({**tricky_document(), "team": "Mail team"}).deployment
    rows = list(csv.reader(io.StringIO(api.get(f"/api/deployments/{deployment.pk}/checklist/?format=csv").text)))
    cells = {cell for row in rows for cell in row}
    for name in [*TRICKY[:4], "=1+1"]:
        assert f"'{name}" in cells and name not in cells, name
    assert TRICKY[4] in cells and TRICKY[5] in cells  # nothing to escape: kept as typed

    workbook = load_workbook(io.BytesIO(api.get(f"/api/deployments/{deployment.pk}/checklist.xlsx").content))
    cells = {cell.value: cell for row in workbook["Rules"].iter_rows() for cell in row}
    for name in [*TRICKY[:4], "=1+1"]:
        assert cells[name].data_type == "s", name  # the text as typed, typed as text: never a formula
    about = {row[0].value: row[1] for row in workbook["About"].iter_rows()}
    assert about["Checklist"].value.startswith("=cmd") and about["Checklist"].data_type == "s"


def test_every_firewall_syntax_keeps_typed_text_out_of_its_lines(catalog, user, api, tmp_path):
    from ports.deployments import save_deployment

    deployment = save_deployment({**tricky_document(), "team": "Mail team"}).deployment
    for syntax, command in [
        ("nftables", ["nft", "-c", "-f"]),
        ("iptables", ["iptables-restore", "--test"]),
        ("ip6tables", ["ip6tables-restore", "--test"]),
        ("asa", None),
        ("panos", None),
    ]:
        text = api.get(f"/api/deployments/{deployment.pk}/firewall/{syntax}/").content.decode()
        for line in text.splitlines():
            if "cmd|" in line or "flush ruleset" in line:
                assert line.startswith(("#", "!")), (syntax, line)  # only ever inside a comment
        if command:
            path = tmp_path / syntax
            path.write_text(text)
            checked = subprocess.run([*command, str(path)], capture_output=True, text=True)
            assert checked.returncode == 0, (syntax, checked.stderr)


# --- The probe target policy -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "field"),
    [
        ("0.0.0.0", "address"),
        ("::", "address"),
        ("169.254.169.254", "address"),
        ("fe80::1%lo", "address"),
        ("224.0.0.1", "address"),
        ("255.255.255.255", "address"),
        ("fd00:ec2::254", "address"),
        ("::ffff:169.254.169.254", "address"),
        ("0x7f000001", "address"),
        ("0177.0.0.1", "address"),
        ("2130706433", "address"),
        # IPv6 forms that lead to the metadata address or loopback through a translator
        ("::a9fe:a9fe", "address"),  # IPv4-compatible
        ("64:ff9b:1::a9fe:a9fe", "address"),  # local-use NAT64
        ("::ffff:0:a9fe:a9fe", "address"),  # SIIT
        ("127.0.0.1\x00", "address"),  # a NUL: a 400, never a 500
        ("host\x00.example", "address"),
    ],
)
def test_addresses_no_rule_can_name_are_refused_at_input(catalog, api, address, field):
    document = copy.deepcopy(FULL_DEPLOYMENT)
    document["hosts"][0]["address"] = address
    response = api.post("/api/deployments/", document, format="json")
    assert response.status_code == 400 and response.json()["hosts"][0][field], response.json()
    document = copy.deepcopy(FULL_DEPLOYMENT)
    if ":" in address or address.count(".") == 3:
        document["appliances"][0]["c_address"] = address
        assert api.post("/api/deployments/", document, format="json").status_code == 400
    assert not Deployment.objects.exists()


def test_addresses_are_kept_in_one_form(catalog, api):
    document = copy.deepcopy(FULL_DEPLOYMENT)
    document["appliances"][0]["c_address"] = "::ffff:127.0.1.1"
    document["hosts"][0]["address"] = "::FFFF:127.0.4.1"
    document["hosts"][1]["address"] = "0:0:0:0:0:0:0:1"
    body = api.post("/api/deployments/", document, format="json").json()
    assert body["appliances"][0]["c_address"] == "127.0.1.1"
    assert [host["address"] for host in body["hosts"] if host["name"] in ("fsm", "log")] == ["::1", "127.0.4.1"]


def test_the_worker_refuses_targets_outside_its_sites_networks_after_resolving(db):
    import asyncio
    import ipaddress

    from probes.engine import Check, Engine, refusal
    from probes.responders import Listeners

    everything = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))
    for address in ["0.0.0.0", "::", "169.254.169.254", "fe80::1", "224.0.0.251", "255.255.255.255", "fd00:ec2::254",
                    "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::1", "::a9fe:a9fe",
                    "64:ff9b:1::a9fe:a9fe", "::ffff:0:a9fe:a9fe"]:  # fmt: skip
        assert "never probed" in refusal(address, everything), address  # whatever is allowed
    assert refusal("127.0.0.1", Engine().allowed) is None  # loopback by default
    assert "outside the networks" in refusal("10.1.2.3", Engine().allowed)

    listeners = Listeners()
    try:
        port = listeners.open_tcp("127.0.0.1")
        found = {}
        checks = [Check(1, "127.0.0.1", port, port, "tcp", "tcp"), Check(2, "localhost", port, port, "tcp", "tcp")]
        engine = Engine(timeout=1, allowed=(ipaddress.ip_network("127.0.0.2/32"),))
        asyncio.run(engine.run(checks, lambda check, result: found.__setitem__(check.key, result)))
        assert {result.state for result in found.values()} == {"not_probed"}
        assert "is outside the networks this probe site may reach (127.0.0.2/32)" in found[2].summary
        assert found[2].address in ("127.0.0.1", "::1")  # localhost, as resolved
        assert listeners.accepted == {}  # nothing was sent
    finally:
        listeners.close()


def test_probe_sites_networks_come_from_the_operator(settings):
    import ipaddress

    from django.core.exceptions import ImproperlyConfigured

    from portal.settings import parse_allowed_networks
    from probes.probing import allowed_networks

    text = "*=127.0.0.0/8; dmz=127.0.5.0/24,::1/128"
    settings.PROBE_ALLOWED_NETWORKS = parse_allowed_networks(text)
    assert settings.PROBE_ALLOWED_NETWORKS == {"*": ["127.0.0.0/8"], "dmz": ["127.0.5.0/24", "::1/128"]}
    for wrong, said in [
        ("*=127.0.0.1/8", "host bits"),
        ("127.0.0.0/8", "not site=networks"),
        ("dmz=nowhere", "nowhere"),
    ]:
        with pytest.raises(ImproperlyConfigured, match=said):
            parse_allowed_networks(wrong)
    assert allowed_networks("dmz") == (ipaddress.ip_network("127.0.5.0/24"), ipaddress.ip_network("::1/128"))
    assert allowed_networks("default") == (ipaddress.ip_network("127.0.0.0/8"),)


# --- Limits and no server errors ----------------------------------------------------------------


def test_limits_are_clear_4xx_that_name_them(deployment, api, full_document, settings):
    settings.API_MAX_BODY_BYTES = 4000
    response = api.post("/api/deployments/upsert/", {**full_document, "description": "x" * 5000}, format="json")
    assert response.status_code == 413 and "4000 bytes" in response.json()["detail"]
    deep = "[" * 50_000 + "]" * 50_000
    settings.API_MAX_BODY_BYTES = 200_000
    response = api.generic("POST", "/api/deployments/upsert/", deep, content_type="application/json")
    assert response.status_code == 400 and "nested too deeply" in response.json()["detail"]

    settings.MAX_APPLIANCES = 2
    response = api.put(f"/api/deployments/{deployment.pk}/", full_document, format="json")
    assert response.status_code == 400 and "At most 2 appliances" in str(response.json()["appliances"])
    settings.MAX_APPLIANCES, settings.MAX_RULES = 200, 50
    response = api.put(f"/api/deployments/{deployment.pk}/", full_document | {"dlp_base_port": 18000}, format="json")
    assert response.status_code == 400 and "at most 50 (MAX_RULES)" in str(response.json())
    assert deployment.checklist.count() == 81 and not deployment.checklist.filter(port_start=18000).exists()

    settings.MAX_PROBE_ITEMS = 3
    ids = list(deployment.checklist.values_list("pk", flat=True)[:4])
    response = api.post(f"/api/deployments/{deployment.pk}/probe-runs/", {"items": ids}, format="json")
    assert response.status_code == 400 and "At most 3 items" in response.json()["items"][0]

    assert api.get("/api/deployments/", {"limit": 2**64}).status_code == 200
    assert api.get("/api/deployments/", {"offset": 2**64}).status_code == 400
    assert api.get("/api/checklist-items/", {"limit": "x"}).status_code == 200  # the default page
    for offset in ("-3", "null", "1.5"):  # not an offset: said, never read as 0
        assert api.get("/api/checklist-items/", {"offset": offset}).status_code == 400, offset
    checklist = f"/api/deployments/{deployment.pk}/checklist/"
    for port in ("0.5", "70000", "abc"):
        response = api.get(checklist, {"port": port})
        assert response.status_code == 400 and "port" in response.json(), (port, response.content)


def test_old_data_with_control_characters_still_exports(deployment, api):
    deployment.hosts.filter(name="fsm").update(name="fsm\x07\x1b")  # stored before names were checked
    deployment.checklist.filter(source_name="fsm").update(source_name="fsm\x07\x1b")
    response = api.get(f"/api/deployments/{deployment.pk}/checklist.xlsx")
    assert response.status_code == 200


@pytest.mark.django_db(transaction=True)
def test_an_export_of_a_deployment_deleted_meanwhile_is_404():
    from django.http import Http404

    from ports.deployments import save_deployment
    from ports.exports import RuleSet

    call_command("load_catalog", verbosity=0)
    make_member("exporter", "Mail team")
    deployment = save_deployment({**copy.deepcopy(FULL_DEPLOYMENT), "team": "Mail team"}).deployment
    rule_set = RuleSet.build(deployment, {"scope": "unverified"})
    deployment.checklist.filter(pk=rule_set.items[0].pk).update(status="verified")  # another rule set than kept
    Deployment.objects.filter(pk=deployment.pk).delete()
    with pytest.raises(Http404):
        rule_set.remember("pdf", None)


def test_wrong_passwords_lock_the_login_out(db):
    from django.contrib.auth import get_user_model
    from django.test import Client

    get_user_model().objects.create_user("victim", password="the-right-password-1")
    browser = Client()
    answers = [browser.post("/accounts/login/", {"username": "victim", "password": "guess"}) for _ in range(5)]
    assert [answer.status_code for answer in answers] == [200] * 4 + [429]  # the fifth wrong one locks
    locked = browser.post("/accounts/login/", {"username": "victim", "password": "the-right-password-1"})
    assert locked.status_code == 429 and "_auth_user_id" not in browser.session
    api = Client().post("/api-auth/login/", {"username": "victim", "password": "the-right-password-1"})
    assert api.status_code == 429  # the API's session login too, from the same address
    other = Client().post("/accounts/login/", {"username": "someone-else", "password": "x"})
    assert other.status_code == 200  # another username is not locked out


def test_behind_the_proxy_a_lockout_is_by_the_clients_address(db, settings):
    from django.contrib.auth import get_user_model
    from django.test import Client

    settings.TRUST_X_FORWARDED_FOR = True
    get_user_model().objects.create_user("victim", password="the-right-password-1")
    attacker = Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="127.0.9.9")
    for _ in range(5):
        attacker.post("/accounts/login/", {"username": "victim", "password": "guess"})
    assert attacker.post("/accounts/login/", {"username": "victim", "password": "x"}).status_code == 429
    # The victim comes through the same proxy (same REMOTE_ADDR) from another address: not locked out.
    victim = Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="127.0.7.7")
    answer = victim.post("/accounts/login/", {"username": "victim", "password": "the-right-password-1"})
    assert answer.status_code == 302
