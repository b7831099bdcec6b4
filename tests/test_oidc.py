"""Sign-in with OpenID Connect against a real provider on loopback: node-oidc-provider (OpenID
Certified), from tests/oidc_provider/, with one confidential client that must use PKCE and the
accounts of a file each test writes. In Chromium: the login page's button, the provider's login
and consent pages, back signed in, in the teams the groups claim gives; a second sign-in follows
the groups as they have changed since. The failures (consent denied, no PKCE, a state that is not
the browser's, a code the provider refuses, claims the portal does not sign in with) land on the
login page saying why. npm reaches its registry once, to install the provider into
var/oidc-provider/, which keeps it; everything else goes to 127.0.0.1 and localhost alone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.contrib.auth import get_user_model
from django.test import Client

from portal.settings import parse_group_teams
from ports.choices import ChangeSource
from ports.models import DirectoryAccount, Membership, ObjectChange

from .conftest import ARTIFACTS, CHROMIUM, make_member
from .npm import npm_ci
from .waiting import wait_until

# Playwright's sync API runs an event loop in this thread; the ORM calls of the test are safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "oidc_provider"
# The provider's packages, installed from SOURCE's package-lock.json and kept between runs.
INSTALLED = HERE.parent / "var" / "oidc-provider"
CLIENT_ID, CLIENT_SECRET = "portal", "test-only-client-secret"
BUTTON = "Sign in with the test provider"
needs_chromium = pytest.mark.skipif(
    not shutil.which(CHROMIUM), reason="needs Debian's chromium (make test installs it)"
)

GROUP_TEAMS = {
    "mail-admins": {"Mail team": "admin"},
    "mail-operators": {"Mail team": "editor"},
    "dns-readers": {"DNS team": "viewer"},
}


def installed_provider() -> Path:
    """INSTALLED with the packages of SOURCE's lockfile (tests.npm), and the provider's script."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are not installed (make test installs them: TEST_TOOLS)")
    npm_ci(SOURCE, INSTALLED, "the OpenID Connect provider")
    shutil.copy(SOURCE / "provider.mjs", INSTALLED / "provider.mjs")
    return INSTALLED


class Provider:
    """provider.mjs in a process of its own, on a free loopback port, sending the browser back to
    `redirect_uri`; its output is kept, line by line."""

    def __init__(self, redirect_uri: str, accounts: Path) -> None:
        self.accounts_file = accounts
        self.accounts({})
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(accounts.parent),
            "CLIENT_ID": CLIENT_ID,
            "CLIENT_SECRET": CLIENT_SECRET,
            "REDIRECT_URI": redirect_uri,
            "ACCOUNTS_FILE": str(accounts),
            "PORT": "0",
        }
        self.process = subprocess.Popen(
            ["node", "provider.mjs"],
            cwd=installed_provider(),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        try:
            ready = wait_until(self._ready, 30, lambda: f"the provider did not start: {self.log()}")
        except BaseException:
            self.stop()
            raise
        self.issuer = ready.removeprefix("ready ")
        self.discovery = requests.get(f"{self.issuer}/.well-known/openid-configuration", timeout=10).json()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def _ready(self) -> str | None:
        if self.process.poll() is not None:
            pytest.fail(f"the provider exited: {self.log()}")
        return next((line for line in self.lines if line.startswith("ready http://127.0.0.1:")), None)

    def log(self, tail: int = 40) -> str:
        """The provider's output: each authorization request and each error it answered."""
        return "\n".join(self.lines[-tail:])

    def accounts(self, accounts: dict[str, dict]) -> None:
        """The provider's users from now on: username -> password and claims (groups, email, ...)."""
        self.accounts_file.write_text(json.dumps(accounts))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def provider(live_server, tmp_path_factory):
    started = Provider(f"{live_server.url}/oidc/callback/", tmp_path_factory.mktemp("oidc") / "accounts.json")
    yield started
    started.stop()


@pytest.fixture
def oidc(provider, settings) -> Provider:
    """The portal configured as the README says, with the endpoints of the provider's discovery document."""
    settings.AUTHENTICATION_BACKENDS = [
        "axes.backends.AxesStandaloneBackend",
        "portal.directory.oidc.DirectoryOIDCBackend",
        "django.contrib.auth.backends.ModelBackend",
    ]
    settings.OIDC_RP_CLIENT_ID, settings.OIDC_RP_CLIENT_SECRET = CLIENT_ID, CLIENT_SECRET
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = provider.discovery["authorization_endpoint"]
    settings.OIDC_OP_TOKEN_ENDPOINT = provider.discovery["token_endpoint"]
    settings.OIDC_OP_USER_ENDPOINT = provider.discovery["userinfo_endpoint"]
    settings.OIDC_OP_JWKS_ENDPOINT = provider.discovery["jwks_uri"]
    settings.OIDC_RP_SCOPES = "openid email profile groups"
    settings.OIDC_PROVIDER_NAME = "the test provider"
    settings.DIRECTORY_GROUP_TEAMS = parse_group_teams("DIRECTORY_GROUP_TEAMS", json.dumps(GROUP_TEAMS))
    return provider


def roles_of(username: str) -> dict[str, str]:
    return dict(Membership.objects.filter(user__username=username).values_list("team__name", "role"))


class Browsing:
    """A Chromium page whose every request is recorded; one beyond loopback is refused (aborted)."""

    def __init__(self, browser, width: int, height: int) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.requests: list[str] = []
        self.context.on("request", lambda request: self.requests.append(request.url))
        self.context.route("**/*", self._loopback_only)
        self.page = self.context.new_page()

    @staticmethod
    def _loopback_only(route) -> None:
        if urlsplit(route.request.url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            route.abort()

    def authorization_requests(self, provider: Provider) -> list[dict[str, str]]:
        """The query of each authorization request the browser made, as the provider got it."""
        endpoint = provider.discovery["authorization_endpoint"]
        found = [urlsplit(url) for url in self.requests if url.startswith(endpoint + "?")]
        return [{name: values[0] for name, values in parse_qs(url.query).items()} for url in found]

    def beyond_loopback(self) -> list[str]:
        return [url for url in self.requests if urlsplit(url).hostname not in ("127.0.0.1", "localhost", None)]


def who(page) -> str:
    """The header's user, their teams and the logout button, as one line."""
    return " ".join(page.locator(".who").inner_text().split())


def no_overflow(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


@needs_chromium
def test_a_user_signs_in_at_the_provider_and_their_teams_follow_the_groups_claim(live_server, oidc, browser):
    base = live_server.url
    alice = {
        "password": "alice-at-the-provider",
        "email": "alice@corp.example",
        "given_name": "Alice",
        "family_name": "Liddell",
        "groups": ["Mail-Admins", "dns-readers", "cafeteria"],  # a group's case does not matter
    }
    oidc.accounts({"alice": alice})
    make_member("carol", "Mail team")  # given on the Teams page: the directory's now, from her next sign-in
    browsing = Browsing(browser, 1280, 900)
    page = browsing.page

    page.goto(f"{base}/teams/")
    page.wait_for_url(f"{base}/accounts/login/?next=/teams/")
    page.get_by_role("link", name=BUTTON).click()
    # The provider's own page, at the provider.
    page.get_by_role("heading", name="Sign in to the test provider").wait_for()
    assert page.url.startswith(f"{oidc.issuer}/interaction/"), page.url
    (authorization,) = browsing.authorization_requests(oidc)
    assert authorization["code_challenge_method"] == "S256" and len(authorization["code_challenge"]) == 43
    assert authorization["response_type"] == "code" and authorization["client_id"] == CLIENT_ID
    assert authorization["redirect_uri"] == f"{base}/oidc/callback/"
    assert authorization["scope"] == "openid email profile groups" and authorization["state"] and authorization["nonce"]
    page.screenshot(path=ARTIFACTS / "oidc-provider-login.png")

    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("alice-at-the-provider")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Allow access").wait_for()
    assert "groups" in page.locator("main p").inner_text()
    page.get_by_role("button", name="Allow").click()

    # Back at the portal, signed in, where the user was going: the teams of the groups claim.
    page.wait_for_url(f"{base}/teams/")
    assert who(page) in ("alice · DNS team, Mail team Log out", "alice · Mail team, DNS team Log out")
    rows = page.locator("table tbody tr").all_inner_texts()
    assert sorted(" ".join(row.split()) for row in rows) == ["DNS team Viewer", "Mail team Team admin"], rows
    page.screenshot(path=ARTIFACTS / "oidc-signed-in.png", full_page=True)
    user = get_user_model().objects.get(username="alice")
    assert (user.email, user.first_name, user.last_name) == ("alice@corp.example", "Alice", "Liddell")
    assert not user.has_usable_password()
    assert roles_of("carol") == {"Mail team": "editor"}  # alice's sign-in changes no one else's
    assert set(ObjectChange.objects.filter(user=user).values_list("source", flat=True)) == {ChangeSource.DIRECTORY}

    # The groups change at the provider: the next sign-in follows them. The provider remembers the
    # browser and the consent, so it sends it straight back.
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(f"{base}/accounts/login/")
    oidc.accounts({"alice": {**alice, "groups": ["mail-operators"]}})
    page.get_by_role("link", name=BUTTON).click()
    page.wait_for_url(f"{base}/")
    assert who(page) == "alice · Mail team Log out"
    assert roles_of("alice") == {"Mail team": "editor"}
    assert len(browsing.authorization_requests(oidc)) == 2
    assert all(request["code_challenge"] for request in browsing.authorization_requests(oidc))
    assert get_user_model().objects.filter(username__iexact="alice").count() == 1
    assert browsing.beyond_loopback() == []
    browsing.context.close()


@needs_chromium
def test_consent_denied_on_a_phone_lands_on_the_login_page_saying_so(live_server, oidc, browser):
    base = live_server.url
    oidc.accounts({"bob": {"password": "bob-at-the-provider", "groups": ["mail-admins"]}})
    browsing = Browsing(browser, 390, 844)
    page = browsing.page

    page.goto(f"{base}/accounts/login/")
    assert no_overflow(page)
    page.screenshot(path=ARTIFACTS / "oidc-login-phone.png", full_page=True)
    page.get_by_role("link", name=BUTTON).click()
    page.get_by_label("Username").fill("bob")
    page.get_by_label("Password").fill("bob-at-the-provider")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Deny").click()

    page.wait_for_url(f"{base}/accounts/login/")
    assert page.get_by_role("status").inner_text() == (
        "Signing in with the test provider failed: you did not allow it, or cancelled it."
    )
    assert page.get_by_role("link", name=BUTTON).is_visible() and no_overflow(page)
    page.screenshot(path=ARTIFACTS / "oidc-denied-phone.png", full_page=True)
    assert not get_user_model().objects.filter(username="bob").exists()
    assert browsing.beyond_loopback() == []
    browsing.context.close()


# --- Without a browser: the same flow walked with requests, to the live server and the provider ---


@pytest.fixture
def browsers(settings) -> Iterator[Callable[[], requests.Session]]:
    """New requests sessions, a browser each, closed after the test; the portal's cookies without
    Secure (DJANGO_SECURE_COOKIES): Chromium sends them to http://localhost, a secure context to
    it, but requests does not."""
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = False
    opened: list[requests.Session] = []

    def new() -> requests.Session:
        opened.append(requests.Session())
        return opened[-1]

    yield new
    for session in opened:
        session.close()


def sign_in(session: requests.Session, base: str, username: str, password: str) -> requests.Response:
    """The flow as a browser walks it, from the portal's button to where the callback sends it."""
    at_provider = session.get(f"{base}/oidc/authenticate/", timeout=30)
    assert "Sign in to the test provider" in at_provider.text, at_provider.text[:2000]
    uid = urlsplit(at_provider.url).path.split("/")[2]
    issuer = f"{urlsplit(at_provider.url).scheme}://{urlsplit(at_provider.url).netloc}"
    consent = session.post(
        f"{issuer}/interaction/{uid}/login", data={"username": username, "password": password}, timeout=30
    )
    uid = urlsplit(consent.url).path.split("/")[2]
    return session.post(f"{issuer}/interaction/{uid}/consent", timeout=30)


def message_on(response: requests.Response) -> str:
    """The login page's message (one), as it reads."""
    assert urlsplit(response.url).path == "/accounts/login/" and response.status_code == 200, response.url
    start = response.text.index('role="status">') + len('role="status">')
    return response.text[start : response.text.index("</p>", start)].replace("&#x27;", "'")


def test_a_client_without_pkce_is_refused_by_the_provider(live_server, oidc, settings, browsers):
    settings.OIDC_USE_PKCE = False
    oidc.accounts({"dave": {"password": "x", "groups": []}})
    session = browsers()
    response = session.get(f"{live_server.url}/oidc/authenticate/", timeout=30)
    refused = "Signing in with the test provider failed: the provider refused it (invalid_request)."
    assert message_on(response) == refused
    assert "Authorization Server policy requires PKCE" in oidc.log()
    assert not get_user_model().objects.filter(username="dave").exists()


def test_a_callback_whose_state_or_code_is_not_the_browsers_lands_on_the_login_page(live_server, oidc, browsers):
    base = live_server.url
    session = browsers()
    at_provider = session.get(f"{base}/oidc/authenticate/?next=/teams/", timeout=30)
    assert at_provider.url.startswith(oidc.issuer)
    (authorization,) = [parse_qs(urlsplit(r.url).query) for r in at_provider.history if "/auth?" in r.url]

    # A state that this browser's sign-in did not start (forged, or another window's).
    tampered = session.get(f"{base}/oidc/callback/", params={"code": "x", "state": "not-the-state"}, timeout=30)
    assert message_on(tampered) == (
        "Signing in with the test provider failed: it was started in another window or too long ago. Please try again."
    )
    # The state, but a code the provider never gave: the provider refuses it, the portal says so.
    refused = session.get(
        f"{base}/oidc/callback/", params={"code": "made-up", "state": authorization["state"][0]}, timeout=30
    )
    assert message_on(refused).startswith(
        "Signing in with the test provider failed: the portal could not complete it with the provider."
    )
    assert urlsplit(refused.url).query == "next=%2Fteams%2F"  # the user still goes where they were going
    assert "grant.error: invalid_grant" in oidc.log()
    # Used once: the same state again is unknown.
    again = session.get(f"{base}/oidc/callback/", params={"code": "x", "state": authorization["state"][0]}, timeout=30)
    assert "started in another window" in message_on(again)


def test_a_user_without_a_username_claim_or_with_a_local_accounts_name_is_not_signed_in(
    live_server, oidc, settings, browsers
):
    base = live_server.url
    oidc.accounts(
        {
            "Erin": {"password": "x", "groups": ["mail-admins"]},
            "Root": {"password": "y", "groups": []},
            "ANSIBLE": {"password": "z", "groups": []},
        }
    )
    get_user_model().objects.create_superuser("root", password="local-only")
    get_user_model().objects.create_superuser("ansible", password=None)  # no password: tokens only

    settings.OIDC_USERNAME_CLAIM = "upn"  # a claim this provider does not give
    response = sign_in(browsers(), base, "Erin", "x")
    assert message_on(response) == (
        "Signing in with the test provider failed: the provider did not say your username "
        "(its 'upn' claim); please tell an administrator."
    )
    assert not get_user_model().objects.filter(username__iexact="erin").exists()

    # A provider's user named like a local account, in any case, does not sign in as it: one with a
    # password of the portal's (here the superuser's), nor one without (made for its tokens).
    settings.OIDC_USERNAME_CLAIM = "preferred_username"
    for name, password in (("Root", "y"), ("ANSIBLE", "z")):
        response = sign_in(browsers(), base, name, password)
        assert message_on(response) == (
            "Signing in with the test provider failed: this name is already an account of the portal's, "
            "which does not sign in this way."
        )
    assert not DirectoryAccount.objects.exists()
    # The same flow signs a user in (named in lower case, as LDAP's), to the page they were going to,
    # linked to the provider's sub: the next sign-in finds them by it.
    for _ in range(2):
        response = sign_in(browsers(), base, "Erin", "x")
        assert urlsplit(response.url).path == "/" and "erin" in response.text
    assert roles_of("erin") == {"Mail team": "admin"}
    assert DirectoryAccount.objects.get().user.username == "erin"


def test_a_password_sign_in_beside_oidc_redeems_no_code(db, settings):
    """The OIDC backend takes only the callback's call: a login form posted to a URL that carries
    ?code=&state= signs in with the password, and asks no provider anything (it is unreachable)."""
    settings.AUTHENTICATION_BACKENDS = [
        "axes.backends.AxesStandaloneBackend",
        "portal.directory.oidc.DirectoryOIDCBackend",
        "django.contrib.auth.backends.ModelBackend",
    ]
    settings.OIDC_RP_CLIENT_ID, settings.OIDC_RP_CLIENT_SECRET = CLIENT_ID, CLIENT_SECRET
    unreachable = "http://127.0.0.1:9"  # discard: nothing answers
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = f"{unreachable}/auth"
    settings.OIDC_OP_TOKEN_ENDPOINT = f"{unreachable}/token"
    settings.OIDC_OP_USER_ENDPOINT = f"{unreachable}/userinfo"
    settings.OIDC_OP_JWKS_ENDPOINT = f"{unreachable}/keys"
    make_member("frank", "Mail team")
    client = Client()
    response = client.post("/accounts/login/?code=x&state=y", {"username": "frank", "password": "not-used-in-tests"})
    assert response.status_code == 302 and client.session["_auth_user_backend"].endswith("ModelBackend")
    assert "Sign in with" in Client().get("/accounts/login/").text


def test_a_link_to_the_callback_made_elsewhere_signs_nobody_out(db, settings):
    """?error= with a state that is not this browser's is someone else's link: the user stays signed in."""
    settings.OIDC_RP_CLIENT_ID, settings.OIDC_RP_CLIENT_SECRET = CLIENT_ID, CLIENT_SECRET
    client = Client()
    client.force_login(make_member("frank", "Mail team"))
    followed = client.get("/oidc/callback/", {"error": "access_denied", "state": "made-elsewhere"})
    assert followed.status_code == 302
    assert client.get("/teams/").status_code == 200


def test_unconfigured_the_oidc_urls_answer_404_and_the_login_page_has_no_button(db, settings):
    settings.OIDC_RP_CLIENT_ID = ""
    client = Client()
    assert client.get("/oidc/authenticate/").status_code == 404
    assert client.get("/oidc/callback/?code=x&state=y").status_code == 404
    login = client.get("/accounts/login/")
    assert login.status_code == 200 and "Sign in with" not in login.text
