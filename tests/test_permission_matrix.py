"""Who may do what: every API operation and every page, for each role of a team (viewer, editor,
approver, admin), a member of another team (the outsider) and an anonymous client.

MATRIX is the one table of what each operation and page needs. The API's rows must be exactly the
operations of the live OpenAPI schema (plus the API's URLs the schema leaves out), and the pages'
rows exactly the names of portal.urls: an endpoint added without its row fails
test_the_matrix_covers_every_operation_and_page, saying which row to add.

A call allowed answers the row's status (a body that is valid is sent); one refused answers 403
to a member whose role is too low (the API saying which role it needs), 404 to the outsider on
the team's objects, 401 to an anonymous API client and a redirect to the login page for an
anonymous browser. The world is built once for the module; each case runs in a savepoint rolled
back after it, so that a write of one case is seen by no other.
"""

from __future__ import annotations

import base64
import datetime
import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import caches
from django.core.management import call_command
from django.db import transaction
from django.test import Client
from django.urls import Resolver404, URLPattern, URLResolver, get_resolver, resolve, reverse
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from portal.api import urls as api_urls
from ports.choices import RequestAction, TeamRole
from ports.deployments import save_deployment
from ports.models import ApiToken, CatalogVersion, ChangeRequest, ChangeRequestJob, Membership, ObjectChange, Team
from ports.rows import RENDERED_ROWS
from probes.alerts.raising import send_test_alert
from probes.models import AlertChannel, ProbeRun, TlsPin

# --- What each operation needs ------------------------------------------------------------

PUBLIC = "public"  # anyone, signed in or not
SIGNED_IN = "signed-in"  # any signed-in user: nothing of a team's
STAFF = "staff"  # Django's admin site: staff users only (none of the actors is)
VIEWER, EDITOR, APPROVER, ADMIN = TeamRole.VIEWER, TeamRole.EDITOR, TeamRole.APPROVER, TeamRole.ADMIN

# What the outsider (an editor of another team) reaches:
OBJECT = "object"  # one of the team's objects: 404, as if absent
LISTED = "listed"  # a list of the user's teams' objects: 200, and none of the team's in it
CREATE = "create"  # a create naming the team: the team is not found (API 400 on `team`, page form error)
ANY = "any"  # nothing of the team's: as for a member

ACTORS = ["anonymous", "outsider", "viewer", "editor", "approver", "admin"]

Body = Callable[["World"], dict] | None


@dataclass(frozen=True)
class Need:
    """A row: the least role, the status of an allowed call, what the outsider reaches, and how to
    call it: `obj` names the World attribute whose pk fills the path's {id} (a page's `pk`), `args`
    builds the other path or URL arguments, `mine` fills {token_key} (a page's `token_key`) with the
    caller's own token, `query` and `body` what is sent; `session`: the API called with the actor's
    browser session rather than their token (what a token may not do)."""

    role: str
    ok: int
    reach: str = OBJECT
    obj: str = ""
    args: Callable[[World], dict] | None = None
    query: Body = None
    body: Body = None
    # A page's text that an allowed call shows (a LISTED page's: of the team's, which the outsider
    # does not see; a preview's: its plan, where a form refused shows the form again, also 200).
    marker: str = ""
    mine: bool = False
    session: bool = False


# A TLS pin: sha256/<base64 of 32 bytes>.
PIN = "sha256/" + base64.b64encode(bytes(range(32))).decode()
OTHER_PIN = "sha256/" + base64.b64encode(bytes(range(1, 33))).decode()

SMALL_DEPLOYMENT = {
    "name": "Matrix gateways",
    "features": ["pem", "smd"],
    "appliances": [{"hostname": "esa1.example.test", "c_address": "127.0.1.1", "p1_address": "127.0.2.1"}],
    "hosts": [{"role": "dns", "name": "dns1", "address": "127.0.4.9"}],
    "peer_networks": [],
}


def document(**changes: object) -> dict:
    return {**SMALL_DEPLOYMENT, "team": "Mail team", **changes}


def form_data(doc: dict) -> dict:
    """The deployment form's POST data for a document, as a browser sends it."""
    data = {
        "team": doc["team"],
        "name": doc["name"],
        "description": doc.get("description", ""),
        "dlp_base_port": 17500,
        "features": doc["features"],
    }
    for prefix, fields in [
        ("appliances", ["hostname", "c_address", "p1_address", "p2_address", "site"]),
        ("hosts", ["role", "name", "address", "site"]),
        ("peer_networks", ["role", "name", "network", "site"]),
    ]:
        rows = doc[prefix]
        data |= {f"{prefix}-TOTAL_FORMS": len(rows), f"{prefix}-INITIAL_FORMS": len(rows)}
        for index, row in enumerate(rows):
            data |= {f"{prefix}-{index}-{name}": row.get(name) or "" for name in fields}
            data[f"{prefix}-{index}-site"] = row.get("site") or "default"
    return data


CHANNEL = {"team": "Mail team", "name": "Night desk", "kind": "email", "target": "night@example.test"}

# The one table: (method, API path as the schema writes it) or (method, page name), either with
# "#variant" when one URL does several things (a step, an action, a button of the same form).
MATRIX: dict[tuple[str, str], Need] = {
    # --- API: the schema's operations --------------------------------------------------
    ("GET", "/api/alert-channels/"): Need(VIEWER, 200, LISTED),
    ("POST", "/api/alert-channels/"): Need(
        EDITOR, 201, CREATE, body=lambda w: {**CHANNEL, "name": "Day desk", "target": "day@example.test"}
    ),
    ("GET", "/api/alert-channels/{id}/"): Need(VIEWER, 200, obj="channel"),
    ("PUT", "/api/alert-channels/{id}/"): Need(
        EDITOR, 200, obj="channel", body=lambda w: {**CHANNEL, "target": "desk@example.test", "enabled": True}
    ),
    ("PATCH", "/api/alert-channels/{id}/"): Need(EDITOR, 200, obj="channel", body=lambda w: {"enabled": False}),
    ("DELETE", "/api/alert-channels/{id}/"): Need(EDITOR, 204, obj="channel"),
    ("POST", "/api/alert-channels/{id}/test/"): Need(EDITOR, 202, obj="channel"),
    ("GET", "/api/alerts/"): Need(VIEWER, 200, LISTED),
    ("GET", "/api/alerts/{id}/"): Need(VIEWER, 200, obj="alert"),
    ("GET", "/api/catalog/diff/"): Need(
        SIGNED_IN, 200, ANY, query=lambda w: {"from": w.catalog.version, "to": w.catalog.version}
    ),
    ("GET", "/api/catalog/requirements/"): Need(SIGNED_IN, 200, ANY),
    ("GET", "/api/catalog/requirements/{uid}/"): Need(SIGNED_IN, 200, ANY),
    ("GET", "/api/catalog/versions/"): Need(SIGNED_IN, 200, ANY),
    ("GET", "/api/catalog/versions/{id}/"): Need(SIGNED_IN, 200, ANY, obj="catalog"),
    ("GET", "/api/change-requests/{id}/"): Need(VIEWER, 200, obj="job"),
    ("GET", "/api/change-requests/{id}/pdf/"): Need(VIEWER, 200, obj="job"),
    ("GET", "/api/changes/"): Need(VIEWER, 200, LISTED),
    ("GET", "/api/changes/{id}/"): Need(VIEWER, 200, obj="change"),
    ("GET", "/api/checklist-items/"): Need(VIEWER, 200, LISTED),
    ("GET", "/api/checklist-items/{id}/"): Need(VIEWER, 200, obj="item"),
    ("PATCH", "/api/checklist-items/{id}/"): Need(EDITOR, 200, obj="item", body=lambda w: {"status": "requested"}),
    ("GET", "/api/deployments/"): Need(VIEWER, 200, LISTED),
    ("POST", "/api/deployments/"): Need(EDITOR, 201, CREATE, body=lambda w: document(name="Matrix new")),
    ("GET", "/api/deployments/{id}/"): Need(VIEWER, 200, obj="deployment"),
    ("PUT", "/api/deployments/{id}/"): Need(EDITOR, 200, obj="deployment", body=lambda w: document(description="Put.")),
    ("PATCH", "/api/deployments/{id}/"): Need(
        EDITOR, 200, obj="deployment", body=lambda w: {"description": "Patched."}
    ),
    ("DELETE", "/api/deployments/{id}/"): Need(EDITOR, 204, obj="deployment"),
    ("GET", "/api/deployments/{id}/change-request.pdf"): Need(VIEWER, 200, obj="deployment"),
    ("POST", "/api/deployments/{id}/change-requests/"): Need(EDITOR, 202, obj="deployment", body=lambda w: {}),
    ("GET", "/api/deployments/{id}/checklist/"): Need(VIEWER, 200, obj="deployment"),
    ("GET", "/api/deployments/{id}/checklist.csv"): Need(VIEWER, 200, obj="deployment"),
    ("GET", "/api/deployments/{id}/checklist.xlsx"): Need(VIEWER, 200, obj="deployment"),
    ("GET", "/api/deployments/{id}/checklist/diff/"): Need(
        VIEWER, 200, obj="deployment", query=lambda w: {"since": w.fingerprint}
    ),
    ("POST", "/api/deployments/{id}/checklist/status/"): Need(
        EDITOR, 200, obj="deployment", body=lambda w: {"status": "requested", "items": [w.item.pk]}
    ),
    ("POST", "/api/deployments/{id}/checklist/verify-open/"): Need(EDITOR, 200, obj="deployment"),
    ("GET", "/api/deployments/{id}/firewall/{syntax}/"): Need(VIEWER, 200, obj="deployment"),
    ("GET", "/api/deployments/{id}/probe-runs/"): Need(VIEWER, 200, obj="deployment"),
    ("POST", "/api/deployments/{id}/probe-runs/"): Need(EDITOR, 202, obj="deployment", body=lambda w: {}),
    ("GET", "/api/deployments/{id}/tls-pins/"): Need(VIEWER, 200, obj="deployment"),
    ("POST", "/api/deployments/{id}/tls-pins/"): Need(
        EDITOR, 201, obj="deployment", body=lambda w: {"host": "127.0.0.1", "port": 9443, "pin": OTHER_PIN}
    ),
    ("POST", "/api/deployments/upsert/"): Need(EDITOR, 200, CREATE, body=lambda w: document(description="Upsert.")),
    ("GET", "/api/me/"): Need(SIGNED_IN, 200, ANY),
    ("GET", "/api/probe-runs/"): Need(VIEWER, 200, LISTED),
    ("GET", "/api/probe-runs/{id}/"): Need(VIEWER, 200, obj="run"),
    ("POST", "/api/probe-runs/{id}/cancel/"): Need(EDITOR, 200, obj="run"),
    ("GET", "/api/probe-sites/"): Need(VIEWER, 200, LISTED),
    ("DELETE", "/api/tls-pins/{id}/"): Need(EDITOR, 204, obj="pin"),
    ("GET", "/api/deployments/{id}/requests/"): Need(VIEWER, 200, obj="deployment"),
    ("POST", "/api/deployments/{id}/requests/"): Need(
        EDITOR, 201, obj="deployment", body=lambda w: {"title": "Open DNS", "items": [w.item.pk]}
    ),
    ("GET", "/api/requests/"): Need(VIEWER, 200, LISTED),
    ("GET", "/api/requests/{id}/"): Need(VIEWER, 200, obj="cr_draft"),
    ("GET", "/api/requests/{id}/pdf/"): Need(VIEWER, 200, obj="cr_approved"),
    # One row per step: the path's {action} is the row's #step, each on a request in the state it moves.
    ("POST", "/api/requests/{id}/{action}/#submit"): Need(EDITOR, 200, obj="cr_draft"),
    ("POST", "/api/requests/{id}/{action}/#approve"): Need(APPROVER, 200, obj="cr_submitted"),
    ("POST", "/api/requests/{id}/{action}/#reject"): Need(
        APPROVER, 200, obj="cr_submitted", body=lambda w: {"comment": "Not now."}
    ),
    ("POST", "/api/requests/{id}/{action}/#implement"): Need(EDITOR, 200, obj="cr_approved"),
    ("POST", "/api/requests/{id}/{action}/#verify"): Need(EDITOR, 200, obj="cr_implemented"),
    ("POST", "/api/requests/{id}/{action}/#close"): Need(EDITOR, 200, obj="cr_verified"),
    ("GET", "/api/tokens/"): Need(SIGNED_IN, 200, ANY),
    # A token makes no token: a person signed in does (test_tokens has the token's 403).
    ("POST", "/api/tokens/"): Need(SIGNED_IN, 201, ANY, body=lambda w: {"name": "Matrix", "days": 7}, session=True),
    ("DELETE", "/api/tokens/{token_key}/"): Need(SIGNED_IN, 204, ANY, mine=True),
    ("GET", "/api/teams/{id}/tokens/"): Need(ADMIN, 200, obj="team"),
    ("DELETE", "/api/teams/{id}/tokens/{token_key}/"): Need(
        ADMIN, 204, obj="team", args=lambda w: {"token_key": w.token_keys["tara"]}
    ),
    # --- API: its URLs that the schema leaves out --------------------------------------
    ("GET", "/api/"): Need(SIGNED_IN, 200, ANY),
    ("GET", "/api/schema/"): Need(SIGNED_IN, 200, ANY),  # API_SCHEMA_PUBLIC=1 would open it
    ("GET", "/api/docs/"): Need(SIGNED_IN, 200, ANY),
    # --- Pages: portal.urls by name ----------------------------------------------------
    ("GET", "deployments"): Need(VIEWER, 200, LISTED, marker="Matrix gateways"),
    ("GET", "deployment-create"): Need(EDITOR, 200, ANY),  # an editor of any team; the outsider is one
    ("POST", "deployment-create"): Need(EDITOR, 302, CREATE, body=lambda w: form_data(document(name="Matrix new"))),
    ("POST", "deployment-create#preview"): Need(
        EDITOR,
        200,
        CREATE,
        body=lambda w: {**form_data(document(name="Matrix new")), "preview": "1"},
        marker="What saving would change",
    ),
    ("GET", "checklist"): Need(VIEWER, 200, obj="deployment"),
    ("GET", "checklist-panel"): Need(VIEWER, 200, obj="deployment"),
    ("GET", "checklist-rows"): Need(VIEWER, 200, obj="deployment", query=lambda w: {"items": str(w.item.pk)}),
    ("GET", "deployment-edit"): Need(EDITOR, 200, obj="deployment"),
    ("POST", "deployment-edit"): Need(
        EDITOR, 302, obj="deployment", body=lambda w: form_data(document(description="Edited."))
    ),
    ("POST", "deployment-edit#preview"): Need(
        EDITOR,
        200,
        obj="deployment",
        body=lambda w: {**form_data(document(description="Edited.")), "preview": "1"},
        marker="What saving would change",
    ),
    ("POST", "deployment-delete"): Need(EDITOR, 302, obj="deployment"),
    ("GET", "deployment-history"): Need(VIEWER, 200, obj="deployment"),
    ("GET", "changes"): Need(VIEWER, 200, LISTED, marker="Matrix gateways"),
    ("GET", "teams"): Need(VIEWER, 200, LISTED, marker="Mail team"),
    ("GET", "team"): Need(VIEWER, 200, obj="team"),
    ("POST", "team"): Need(ADMIN, 302, obj="team", body=lambda w: {"username": "newcomer", "role": "viewer"}),
    ("POST", "team-member#role"): Need(
        ADMIN, 302, obj="team", args=lambda w: {"user_id": w.users["tara"].pk}, body=lambda w: {"role": "editor"}
    ),
    ("POST", "team-member#remove"): Need(
        ADMIN, 302, obj="team", args=lambda w: {"user_id": w.users["tara"].pk}, body=lambda w: {"remove": "1"}
    ),
    ("POST", "team-token-revoke"): Need(ADMIN, 302, obj="team", args=lambda w: {"token_key": w.token_keys["tara"]}),
    ("GET", "tokens"): Need(SIGNED_IN, 200, ANY),
    # Made, then shown once on the page it redirects to (test_tokens follows it).
    ("POST", "tokens"): Need(SIGNED_IN, 302, ANY, body=lambda w: {"name": "Matrix", "days": 7}),
    ("POST", "token-revoke"): Need(SIGNED_IN, 302, ANY, mine=True),
    ("GET", "catalog"): Need(SIGNED_IN, 200, ANY),
    ("GET", "alerts"): Need(VIEWER, 200, LISTED, marker="Night desk"),
    ("POST", "alerts"): Need(
        EDITOR,
        302,
        CREATE,
        body=lambda w: {"team": w.team.pk, "name": "Day desk", "kind": "email", "target": "day@example.test"},
    ),
    ("GET", "alert-rows"): Need(VIEWER, 200, LISTED, marker="Test alert to Night desk"),
    ("POST", "alert-channel-action#test"): Need(EDITOR, 302, obj="channel", args=lambda w: {"action": "test"}),
    ("POST", "alert-channel-action#toggle"): Need(EDITOR, 302, obj="channel", args=lambda w: {"action": "toggle"}),
    ("POST", "alert-channel-action#delete"): Need(EDITOR, 302, obj="channel", args=lambda w: {"action": "delete"}),
    ("GET", "deployment-change-requests"): Need(VIEWER, 200, obj="deployment"),
    ("GET", "change-request"): Need(VIEWER, 200, obj="cr_draft"),
    ("POST", "change-request-step#submit"): Need(EDITOR, 302, obj="cr_draft", args=lambda w: {"action": "submit"}),
    ("POST", "change-request-step#approve"): Need(
        APPROVER, 302, obj="cr_submitted", args=lambda w: {"action": "approve"}
    ),
    ("POST", "change-request-step#reject"): Need(
        APPROVER, 302, obj="cr_submitted", args=lambda w: {"action": "reject"}, body=lambda w: {"comment": "Not now."}
    ),
    ("POST", "change-request-step#implement"): Need(
        EDITOR, 302, obj="cr_approved", args=lambda w: {"action": "implement"}
    ),
    ("POST", "change-request-step#verify"): Need(
        EDITOR, 302, obj="cr_implemented", args=lambda w: {"action": "verify"}
    ),
    ("POST", "change-request-step#close"): Need(EDITOR, 302, obj="cr_verified", args=lambda w: {"action": "close"}),
    ("GET", "healthz"): Need(PUBLIC, 200, ANY),
    ("GET", "readyz"): Need(PUBLIC, 200, ANY),
    ("GET", "metrics"): Need(PUBLIC, 200, ANY),  # unless METRICS_TOKEN is set
    # --- Pages: the included apps' entries -----------------------------------------------
    ("GET", "login"): Need(PUBLIC, 200, ANY),
    ("GET", "rest_framework:login"): Need(PUBLIC, 200, ANY),
    ("GET", "admin:index"): Need(STAFF, 302, ANY),
}

# portal.urls' includes, and the rows above that stand for them.
INCLUDES = {
    "api/": "the API: its rows are the schema's operations and the API URLs the schema leaves out",
    "accounts/": "django.contrib.auth.urls: its login page",
    "oidc/": "OpenID Connect sign-in: 404 unless configured (tests/test_oidc.py)",
    "admin/": "Django's admin site: staff only",
    "api-auth/": "DRF's login page",
}

API_ROWS = [key for key in MATRIX if key[1].startswith("/api/")]
PAGE_ROWS = [key for key in MATRIX if not key[1].startswith("/api/")]


# --- The world ------------------------------------------------------------------------------


@dataclass
class World:
    catalog: CatalogVersion
    team: Team
    users: dict[str, object]
    tokens: dict[str, str]  # each user's API token
    token_keys: dict[str, str]  # each user's token's token_key, which names it
    sessions: dict[str, str]  # each user's session key: signed in once, not at every case
    deployment: object
    item: object
    pin: TlsPin
    channel: AlertChannel
    alert: object
    run: ProbeRun
    job: ChangeRequestJob
    change: ObjectChange
    fingerprint: str
    # Change requests in each state a step moves from, requested and submitted by erin (an editor
    # who is none of the actors: four eyes let every actor approve them).
    cr_draft: ChangeRequest
    cr_submitted: ChangeRequest
    cr_approved: ChangeRequest
    cr_implemented: ChangeRequest
    cr_verified: ChangeRequest


def build_world() -> World:
    call_command("load_catalog", verbosity=0)
    mail, other = Team.objects.create(name="Mail team"), Team.objects.create(name="Other team")
    names = {
        "viewer": (mail, VIEWER),
        "editor": (mail, EDITOR),
        "approver": (mail, APPROVER),
        "admin": (mail, ADMIN),
        "tara": (mail, VIEWER),  # whose role the admin changes, or whom they take out
        "erin": (mail, EDITOR),  # who requested the change requests
        "outsider": (other, EDITOR),
    }
    users = {name: get_user_model().objects.create_user(name) for name in [*names, "newcomer"]}  # no password: fast
    Membership.objects.bulk_create(
        Membership(team=team, user=users[name], role=role) for name, (team, role) in names.items()
    )
    deployment = save_deployment(document()).deployment
    item = deployment.checklist.order_by("number").first()
    assert item is not None, "the small deployment has no rule"
    pin, _ = TlsPin.expect(deployment, "127.0.0.1", 8443, PIN)
    channel = AlertChannel.objects.create(team=mail, name="Night desk", kind="email", target="night@example.test")
    alert = send_test_alert(channel, users["admin"])  # its delivery is enqueued on commit: never, here
    run = ProbeRun.objects.create(
        deployment=deployment,
        total=1,
        pending={"default": [item.pk]},
        timeout=1,
        deadline=timezone.now() + datetime.timedelta(hours=1),
    )
    job = ChangeRequestJob.objects.create(
        deployment=deployment,
        requested_by=users["admin"],
        params={"scope": "all"},
        status=ChangeRequestJob.Status.DONE,
        progress=100,
        pdf=b"%PDF-1.4\n% matrix\n",
        fingerprint=deployment.checklist_fingerprint,
    )
    change = ObjectChange.objects.filter(team=mail).order_by("pk").first()
    assert change is not None, "creating the deployment logged no change"
    export = deployment.exports.order_by("pk").first()
    assert export is not None, "the generated checklist was not kept as an export"
    requests = change_requests(deployment, item, users)
    tokens = {name: ApiToken.issue(user, "Matrix")[1] for name, user in users.items()}
    token_keys = dict(ApiToken.objects.values_list("user__username", "token_key"))
    sessions = {}
    for name, user in users.items():
        client = Client()
        client.force_login(user)
        sessions[name] = client.cookies[settings.SESSION_COOKIE_NAME].value
    return World(
        catalog=CatalogVersion.objects.get(),
        team=mail,
        users=users,
        tokens=tokens,
        token_keys=token_keys,
        sessions=sessions,
        deployment=deployment,
        item=item,
        pin=pin,
        channel=channel,
        alert=alert,
        run=run,
        job=job,
        change=change,
        fingerprint=export.fingerprint,
        **requests,
    )


def change_requests(deployment: object, item: object, users: dict) -> dict[str, ChangeRequest]:
    """A change request in each state a step moves from. The approved one has a rule: implementing
    it starts its probe run (no worker: its rule is reported not probed at once). The others have
    none, so that nothing holds the implemented one back from being verified."""
    erin, approver = users["erin"], users["approver"]
    submitted = [(RequestAction.SUBMIT, erin)]
    approved = [*submitted, (RequestAction.APPROVE, approver)]
    implemented = [*approved, (RequestAction.IMPLEMENT, erin)]
    steps = {
        "draft": [],
        "submitted": submitted,
        "approved": approved,
        "implemented": implemented,
        "verified": [*implemented, (RequestAction.VERIFY, erin)],
    }
    found = {}
    for state, taken in steps.items():
        items = [item] if state == "approved" else []
        request = ChangeRequest.draft(deployment, erin, items, title=f"Matrix {state}")
        for action, user in taken:
            request.take(action, user, "In the matrix's world.")
        assert request.state == state, (state, request.state)
        found[f"cr_{state}"] = request
    return found


@pytest.fixture(scope="module")
def built_world(django_db_setup, django_db_blocker):
    """The world, built once: every case runs in a savepoint inside this transaction, which is
    rolled back after the module. Nothing is committed, so nothing is ever sent on commit (probe
    tasks, alert deliveries, change request jobs): no probe, mail or webhook leaves the test, and
    only /readyz and /metrics speak to the suite's Redis, on loopback."""
    with django_db_blocker.unblock(), transaction.atomic():
        yield build_world()
        transaction.set_rollback(True)


@pytest.fixture
def world(built_world, db) -> World:
    for name in ("default", "checklists", "counts"):
        caches[name].clear()  # in the process: renderings of a state a rolled back case made
    RENDERED_ROWS.clear()
    return built_world


# --- Calling and judging --------------------------------------------------------------------

RANKS = {role: index for index, role in enumerate(TeamRole.values)}


def api_client(world: World, actor: str, session: bool = False) -> APIClient:
    client = APIClient()
    if actor == "anonymous":
        pass
    elif session:
        client.cookies[settings.SESSION_COOKIE_NAME] = world.sessions[actor]
    else:
        client.credentials(HTTP_AUTHORIZATION=f"Token {world.tokens[actor]}")
    return client


def browser(world: World, actor: str) -> Client:
    client = Client()
    if actor != "anonymous":
        client.cookies[settings.SESSION_COOKIE_NAME] = world.sessions[actor]
    return client


def own_token(world: World, actor: str) -> dict[str, str]:
    """The path argument that names the actor's own token (anonymous has none: any)."""
    return {"token_key": world.token_keys.get(actor, "0" * 15)}


def api_path(world: World, row: str, need: Need, actor: str) -> str:
    template, _, step = row.partition("#")
    values = {
        "id": str(getattr(world, need.obj).pk) if need.obj else "",
        "uid": world.item.requirement.uid,
        "syntax": "iptables",
        "action": step,
    }
    values |= need.args(world) if need.args else {}
    values |= own_token(world, actor) if need.mine else {}
    return re.sub(r"\{(\w+)\}", lambda found: values[found.group(1)], template)


def page_path(world: World, name: str, need: Need, actor: str) -> str:
    kwargs = {"pk": getattr(world, need.obj).pk} if need.obj else {}
    kwargs |= need.args(world) if need.args else {}
    kwargs |= own_token(world, actor) if need.mine else {}
    return reverse(name.partition("#")[0], kwargs=kwargs)


def listed_count(body: object) -> int:
    """How many entries an API list answer holds (paginated, plain, or the probe sites')."""
    if isinstance(body, dict):
        return len(body.get("results", body.get("sites", [])))
    return len(body)


def expectation(need: Need, actor: str, api: bool) -> str:
    """What the actor must get, in words: "allowed", "refused 403" and so on."""
    if need.role == PUBLIC:
        return "allowed"
    if need.role == STAFF:
        return "redirect to the admin's login"
    if actor == "anonymous":
        return "refused 401" if api else "redirect to the login page"
    if need.role == SIGNED_IN:
        return "allowed"
    if actor == "outsider":
        return {
            OBJECT: "refused 404",
            LISTED: "allowed, none of the team's listed",
            CREATE: "refused: the team not found (API 400 on `team`, page form error)",
            ANY: "allowed",
        }[need.reach]
    if RANKS[actor] < RANKS[need.role]:
        return "refused 403"
    return "allowed" if need.reach != LISTED else "allowed, the team's listed"


def judge(need: Need, actor: str, method: str, path: str, response: object, api: bool) -> None:
    expected = expectation(need, actor, api)
    status = response.status_code
    content = b"" if getattr(response, "streaming", False) else response.content
    got = f"{status} {response.headers.get('Location', '')} {content[:300]!r}"
    message = f"role {actor}: {method} {path}: expected {expected}, got {got}"
    if expected == "redirect to the login page":
        assert status == 302 and response.headers["Location"].startswith("/accounts/login/?next="), message
    elif expected == "redirect to the admin's login":
        assert status == 302 and response.headers["Location"].startswith("/admin/login/?next="), message
    elif expected == "refused 401":
        assert status == 401, message
    elif expected == "refused 404":
        assert status == 404, message
    elif expected == "refused 403":
        assert status == 403, message
        if api:  # saying which role it needs (and, from require_role, which one the caller has)
            needed = f"This needs the role {TeamRole(need.role).label.lower()} in team Mail team"
            assert str(response.json().get("detail", "")).startswith(needed), message
    elif expected.startswith("refused: the team not found"):
        if api:
            assert status == 400 and "team" in response.json(), message
        else:
            assert status == 200 and b"Select a valid choice" in content, message
    else:
        assert status == need.ok, message
        if need.reach == LISTED or need.marker:
            seen = listed_count(response.json()) if api else need.marker.encode() in content
            hidden = actor == "outsider" and need.reach == LISTED
            assert (not seen) if hidden else seen, message


# --- The matrix -----------------------------------------------------------------------------


def row_id(key: tuple[str, str]) -> str:
    return f"{key[0]} {key[1]}"


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("key", API_ROWS, ids=row_id)
def test_api(world, key, actor):
    method, template = key
    need = MATRIX[key]
    path = api_path(world, template, need, actor)
    query = need.query(world) if need.query else {}
    body = need.body(world) if need.body else None
    client = api_client(world, actor, need.session)
    if method == "GET":
        response = client.get(path, query)
    else:
        response = getattr(client, method.lower())(path, body, format="json")
    judge(need, actor, method, path, response, api=True)


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("key", PAGE_ROWS, ids=row_id)
def test_page(world, key, actor):
    method, name = key
    need = MATRIX[key]
    path = page_path(world, name, need, actor)
    client = browser(world, actor)
    if method == "GET":
        response = client.get(path, need.query(world) if need.query else {})
    else:
        response = client.post(path, need.body(world) if need.body else {})
    judge(need, actor, method, path, response, api=False)


# --- The matrix covers everything -----------------------------------------------------------


def sample(template: str) -> str:
    """A path of the template, to resolve: {id} as 1, {syntax} as iptables, {token_key} as hex, any other as x."""
    samples = {"id": "1", "syntax": "iptables", "token_key": "0123456789abcde"}
    return re.sub(r"\{(\w+)\}", lambda found: samples.get(found.group(1), "x"), template)


def url_name(template: str) -> str | None:
    try:
        return resolve(sample(template)).url_name
    except Resolver404:
        return None


def test_the_matrix_covers_every_operation_and_page(db):
    schema = SchemaGenerator().get_schema(request=None, public=True)
    operations = {(method.upper(), path) for path, ops in schema["paths"].items() for method in ops}
    in_schema = {url_name(path) for _, path in operations}
    api_names = {p.name for p in api_urls.urlpatterns if p.name}
    api_rows = {(method, row.partition("#")[0]) for method, row in API_ROWS}
    missing = sorted(operations - api_rows)
    assert not missing, f"API operations without a row in MATRIX: add {missing}, with the least role each needs"
    # The rows beyond the schema's: only for the API's URLs that the schema leaves out.
    beyond = {key: url_name(key[1]) for key in sorted(api_rows - operations)}
    gone = [key for key, name in beyond.items() if name is None or name in in_schema]
    assert not gone, f"MATRIX rows of operations that the API no longer has: remove {gone}"
    unlisted = sorted(api_names - in_schema - set(beyond.values()))
    assert not unlisted, f"API URLs outside the schema without a row in MATRIX: add a row for {unlisted}"

    top = get_resolver().url_patterns
    names = {p.name for p in top if isinstance(p, URLPattern)}
    includes = {str(p.pattern) for p in top if isinstance(p, URLResolver)}
    assert not {p for p in top if isinstance(p, URLPattern) and not p.name}, "a page without a name"
    assert includes == set(INCLUDES), f"includes of portal.urls: {sorted(includes)}; MATRIX covers {list(INCLUDES)}"
    rows = {name.partition("#")[0] for _, name in PAGE_ROWS}
    included = {"login", "rest_framework:login", "admin:index"}
    assert not sorted(names - rows), f"pages without a row in MATRIX: add {sorted(names - rows)} (GET and each POST)"
    assert rows - included <= names, f"MATRIX rows of pages that are gone: {sorted(rows - included - names)}"
