from __future__ import annotations

import copy
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import caches
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from ports.choices import TeamRole
from ports.deployments import save_deployment
from ports.models import ApiToken, CatalogVersion, Deployment, Team
from ports.rows import RENDERED_ROWS

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"

# Three appliances, a host for every role and both kinds of peer network; loopback only.
FULL_DEPLOYMENT = {
    "name": "Mail gateways",
    "features": ["dlp", "hybrid", "pem", "smd", "snmp", "web_protection"],
    "appliances": [
        {
            "hostname": "esa1.example.test",
            "c_address": "127.0.1.1",
            "p1_address": "127.0.2.1",
            "p2_address": "127.0.3.1",
        },
        {
            "hostname": "esa2.example.test",
            "c_address": "127.0.1.2",
            "p1_address": "127.0.2.2",
            "p2_address": "127.0.3.2",
        },
        {"hostname": "esa3.example.test", "c_address": "127.0.1.3", "p1_address": "127.0.2.3"},
    ],
    "hosts": [
        {"role": "security_manager", "name": "fsm", "address": "127.0.4.1", "site": "hq"},
        {"role": "log_server", "name": "log", "address": "127.0.4.2"},
        {"role": "sql_server", "name": "sql", "address": "127.0.4.3"},
        {"role": "dlp_server", "name": "dlp", "address": "127.0.4.4", "site": "hq"},
        {"role": "hybrid_service", "name": "hybrid", "address": "localhost"},
        {"role": "filtering_service", "name": "filtering", "address": "127.0.4.6"},
        {"role": "linking_service", "name": "linking", "address": "127.0.4.7"},
        {"role": "ldap", "name": "ldap", "address": "127.0.4.8"},
        {"role": "dns", "name": "dns1", "address": "127.0.4.9"},
        {"role": "dns", "name": "dns2", "address": "127.0.4.10"},
        {"role": "snmp_trap", "name": "nms", "address": "127.0.4.11"},
    ],
    "peer_networks": [
        {"role": "end_users", "name": "Staff", "network": "127.0.8.0/24", "site": "office"},
        {"role": "mail_senders", "name": "Internet", "network": "any"},
    ],
}


@pytest.fixture(autouse=True)
def _nothing_kept_from_another_test() -> None:
    """What a process keeps of checklists is named by deployment and revision, and on SQLite a
    test rolled back gives the next one its pks again (its sequence is rolled back too), at the
    same revisions: a deployment that a running portal never sees twice."""
    RENDERED_ROWS.clear()
    for name in ("checklists", "counts"):
        caches[name].clear()


@pytest.fixture(autouse=True)
def _no_api_rate_limits(settings) -> None:
    """The suite makes many requests, from one address and a few users, in a cache (Redis) that
    outlives each test: the API's rate limits are off, and their own tests set them."""
    settings.API_RATE_USER = settings.API_RATE_ANON = None


@pytest.fixture
def catalog(db) -> CatalogVersion:
    call_command("load_catalog", verbosity=0)
    return CatalogVersion.objects.get()


@pytest.fixture
def full_document() -> dict:
    return copy.deepcopy(FULL_DEPLOYMENT)


def make_member(username: str, team_name: str, role: str = TeamRole.EDITOR):
    user = get_user_model().objects.create_user(username, password="not-used-in-tests")
    team, _ = Team.objects.get_or_create(name=team_name)
    team.members.add(user, through_defaults={"role": role})
    return user


def signed_in(user: object) -> Client:
    """A browser's session of `user` (test client)."""
    client = Client()
    client.force_login(user)
    return client


def api_key(user: object, name: str = "Test client") -> str:
    """A new API token's key for `user`, made as every token is (ApiToken.issue)."""
    return ApiToken.issue(user, name)[1]


def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_key(user)}")
    return client


@pytest.fixture
def user(db):
    return make_member("alice", "Mail team")


@pytest.fixture
def api(user) -> APIClient:
    return token_client(user)


@pytest.fixture
def other_api(db) -> APIClient:
    return token_client(make_member("mallory", "Other team"))


def recorded_run(
    deployment: Deployment,
    states: list[tuple[object, str]],
    summary: str = "{state} in test",
    evidence: dict | None = None,
    **run: object,
) -> object:
    """A probe run of these items (pairs of item and state) whose results the recorder took,
    as a site worker sends them; each result's summary is `summary` with its state, and its
    evidence what `evidence` holds for its item (by item), if anything."""
    from probes.models import ProbeRun

    fields = {"timeout": 1, "deadline": "2100-01-01T00:00Z", **run}
    run = ProbeRun.objects.create(
        deployment=deployment, total=len(states), pending={"default": sorted(item.pk for item, _ in states)}, **fields
    )
    outcomes = {item.pk: {"state": state, "summary": summary.format(state=state)} for item, state in states}
    for item, found in (evidence or {}).items():
        outcomes[item.pk]["evidence"] = found
    ProbeRun.record(run.pk, "w@default", outcomes)
    run.refresh_from_db()
    return run


def create_deployment(document: dict, team: str = "Mail team") -> Deployment:
    return save_deployment({**document, "team": team}).deployment


@pytest.fixture
def deployment(catalog, user, full_document) -> Deployment:
    return create_deployment(full_document)


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"],
        )  # fmt: skip
        yield chromium
        chromium.close()


@pytest.fixture
def lab(live_server) -> tuple[Deployment, str]:
    """The pages' lab: a live server, alice of the Mail team, and a deployment whose every host
    is in the default site; with the server's URL."""
    call_command("load_catalog", verbosity=0)
    make_member("alice", "Mail team")
    document = {**FULL_DEPLOYMENT, "name": "Pages lab"}
    document["hosts"] = [{**host, "site": "default"} for host in document["hosts"]]
    document["peer_networks"] = [{**network, "site": "default"} for network in document["peer_networks"]]
    return create_deployment(document), live_server.url
