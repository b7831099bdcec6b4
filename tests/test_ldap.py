"""LDAP / Active Directory sign-in against a real OpenLDAP server: slapd, started by these tests on
loopback with a directory of their own (tests/ldap/directory.ldif) and a CA and certificate they
make, that answers only over TLS (StartTLS or LDAPS). Signing in goes through the login form, as a
browser posts it; the settings are made from LDAP_* environment variables as the portal makes them."""

from __future__ import annotations

import datetime
import importlib
import ipaddress
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest
from axes.models import AccessAttempt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

import portal.settings.ldap
from portal.settings import parse_group_teams
from ports.choices import ChangeSource, TeamRole
from ports.models import DirectoryAccount, Membership, ObjectChange, Team

from .conftest import ARTIFACTS, CHROMIUM

# Playwright's sync API runs an event loop in this thread; the ORM calls of the test are safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

SLAPD = "/usr/sbin/slapd"
LDIF = Path(__file__).resolve().parent / "ldap" / "directory.ldif"
BASE_DIR = Path(__file__).resolve().parent.parent
SUFFIX = "dc=corp,dc=example"
ADMIN_DN, ADMIN_PASSWORD = f"cn=admin,{SUFFIX}", "admin-password"  # slapd's rootdn, for ldapmodify
MAIL_ADMINS = f"cn=Mail-Admins,ou=groups,{SUFFIX}"
MAIL_OPERATORS = f"cn=mail-operators,ou=groups,{SUFFIX}"
DNS_VIEWERS = f"cn=dns-viewers,ou=groups,{SUFFIX}"
GROUP_TEAMS = f"""{{
    "{MAIL_ADMINS}": {{"Mail team": "admin"}},
    "{MAIL_OPERATORS}": {{"Mail team": "editor"}},
    "{DNS_VIEWERS}": {{"DNS team": "viewer"}}
}}"""
LDAP_BACKEND = "portal.directory.ldap.DirectoryLDAPBackend"
MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"
LOGIN = "/accounts/login/"
# What the login page says for a wrong password, and for a directory that could not be used.
WRONG = "Your username and password didn't match."
UNAVAILABLE = "directory accounts cannot sign in right now. Local accounts still can."


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def certificate(subject: str, key, issuer: x509.Certificate | None, issuer_key, ca: bool) -> x509.Certificate:
    """A certificate for a day: a CA's (self-signed when no issuer), or 127.0.0.1's as a server."""
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def write_pem(path: Path, item) -> Path:
    if isinstance(item, x509.Certificate):
        path.write_bytes(item.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(
            item.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return path


@dataclass
class Slapd:
    """The running directory: plain LDAP (StartTLS) and LDAPS on loopback ports, its CA and another."""

    process: subprocess.Popen
    home: Path
    port: int
    tls_port: int
    ca: Path
    other_ca: Path

    def environment(self) -> dict[str, str]:
        """The portal's variables for it: StartTLS with its CA, the search account, users and groups."""
        return {
            "LDAP_SERVER_URI": f"ldap://127.0.0.1:{self.port}",
            "LDAP_START_TLS": "true",
            "LDAP_CA_FILE": str(self.ca),
            "LDAP_BIND_DN": f"cn=portal,ou=services,{SUFFIX}",
            "LDAP_BIND_PASSWORD": "portal-search-password",
            "LDAP_USER_SEARCH_BASE": f"ou=people,{SUFFIX}",
            "LDAP_GROUP_SEARCH_BASE": f"ou=groups,{SUFFIX}",
            "LDAP_GROUP_TYPE": "groupOfNames",
            "LDAP_TIMEOUT": "2",
        }

    def modify(self, ldif: str) -> None:
        """Change the directory as its administrator would, with ldapmodify (over StartTLS)."""
        subprocess.run(
            ["ldapmodify", "-x", "-ZZ", "-H", f"ldap://127.0.0.1:{self.port}", "-D", ADMIN_DN, "-w", ADMIN_PASSWORD],
            input=ldif,
            text=True,
            capture_output=True,
            check=True,
            env={**os.environ, "LDAPTLS_CACERT": str(self.ca), "LDAPTLS_REQCERT": "demand"},
            timeout=30,
        )


def slapd_config(home: Path) -> str:
    return f"""
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
pidfile {home}/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
TLSCACertificateFile {home}/ca.pem
TLSCertificateFile {home}/server.pem
TLSCertificateKeyFile {home}/server.key
# Every operation over TLS: a sign-in that worked went over TLS.
security tls=1
database mdb
maxsize 10485760
suffix "{SUFFIX}"
rootdn "{ADMIN_DN}"
rootpw {ADMIN_PASSWORD}
directory {home}/data
# Anonymous may only bind; the portal's search account and users read the directory.
access to attrs=userPassword by anonymous auth by * none
access to * by users read by * none
"""


@pytest.fixture(scope="module")
def slapd() -> Iterator[Slapd]:
    """slapd with its own configuration, data and certificates in a temporary directory, listening
    on 127.0.0.1 only; stopped and removed afterwards."""
    if not (Path(SLAPD).exists() and shutil.which("slapadd") and shutil.which("ldapmodify")):
        pytest.fail("needs OpenLDAP's slapd and ldap-utils (make test installs them)")
    pytest.importorskip("django_auth_ldap", reason="needs requirements-ldap.txt (make test installs it)")
    home = Path(tempfile.mkdtemp(prefix="portal-slapd-"))
    process = None
    try:
        ca_key, other_key, server_key = private_key(), private_key(), private_key()
        ca = certificate("Portal test CA", ca_key, None, ca_key, ca=True)
        write_pem(home / "ca.pem", ca)
        write_pem(home / "other-ca.pem", certificate("Some other CA", other_key, None, other_key, ca=True))
        write_pem(home / "server.pem", certificate("127.0.0.1", server_key, ca, ca_key, ca=False))
        write_pem(home / "server.key", server_key)
        (home / "data").mkdir()
        config = home / "slapd.conf"
        config.write_text(slapd_config(home))
        subprocess.run(["slapadd", "-f", str(config), "-l", str(LDIF)], check=True, capture_output=True, timeout=60)
        port, tls_port = free_port(), free_port()
        log = (home / "slapd.log").open("w")
        process = subprocess.Popen(
            [SLAPD, "-f", str(config), "-h", f"ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{tls_port}/", "-d", "0"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                pytest.fail(f"slapd stopped: {(home / 'slapd.log').read_text()}")
            try:
                for listening in (port, tls_port):
                    socket.create_connection(("127.0.0.1", listening), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"slapd does not listen: {(home / 'slapd.log').read_text()}")
                time.sleep(0.05)
        yield Slapd(process, home, port, tls_port, home / "ca.pem", home / "other-ca.pem")
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(home, ignore_errors=True)


def ldap_settings(environment: dict[str, str]) -> tuple[dict[str, object], list[str]]:
    """The AUTH_LDAP_* settings and the backends that portal/settings/ldap.py makes of these
    variables, as at the portal's start: the module is read again with them, then without."""
    try:
        with mock.patch.dict(os.environ, environment):
            module = importlib.reload(portal.settings.ldap)
        made = {name: getattr(module, name) for name in dir(module) if name.startswith("AUTH_LDAP_")}
        return made, list(module.LDAP_BACKENDS)
    finally:
        importlib.reload(portal.settings.ldap)


@pytest.fixture
def use_directory(settings, slapd) -> Callable[..., None]:
    """Sign-ins go to the test directory, with its variables changed by those given; its groups map
    to teams as GROUP_TEAMS says."""

    def use(**changed: str) -> None:
        made, backends = ldap_settings({**slapd.environment(), **changed})
        for name, value in made.items():
            setattr(settings, name, value)
        settings.AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", *backends, MODEL_BACKEND]
        settings.DIRECTORY_GROUP_TEAMS = parse_group_teams("DIRECTORY_GROUP_TEAMS", GROUP_TEAMS)

    use()
    return use


def sign_in(client: Client, username: str, password: str):
    return client.post(LOGIN, {"username": username, "password": password})


def signed_in_through(client: Client) -> str | None:
    """The backend that signed the client in, if any."""
    return client.session.get("_auth_user_backend")


def roles(username: str) -> dict[str, str]:
    return dict(Membership.objects.filter(user__username=username).values_list("team__name", "role"))


def failures(username: str) -> int:
    return sum(AccessAttempt.objects.filter(username=username).values_list("failures_since_start", flat=True))


def test_a_user_in_a_group_is_a_member_with_its_role_from_their_first_sign_in(db, use_directory):
    browser = Client()
    answer = sign_in(browser, "Carol", "carol-directory-password")
    assert answer.status_code == 302 and signed_in_through(browser) == LDAP_BACKEND
    carol = get_user_model().objects.get(username="carol")
    assert (carol.first_name, carol.last_name, carol.email) == ("Carol", "Jones", "carol@corp.example")
    assert not carol.has_usable_password()  # the directory checks it, not the portal
    assert roles("carol") == {"Mail team": TeamRole.ADMIN, "DNS team": TeamRole.VIEWER}
    entries = ObjectChange.objects.filter(source=ChangeSource.DIRECTORY)
    assert sorted(entries.values_list("action", "object_repr", "user")) == [
        ("created", "carol in DNS team", carol.pk),
        ("created", "carol in Mail team", carol.pk),
    ]
    # A user in no mapped group signs in too, a member of nothing.
    assert sign_in(Client(), "erin", "erin-directory-password").status_code == 302
    assert roles("erin") == {}


def test_a_user_taken_out_of_a_group_loses_its_team_at_the_next_sign_in_and_a_new_group_changes_the_role(
    db, use_directory, slapd, settings
):
    assert sign_in(Client(), "dave", "dave-directory-password").status_code == 302
    # Given a team the directory does not name, on the Teams pages: the directory leaves it alone.
    dave = get_user_model().objects.get(username="dave")
    Team.objects.create(name="Lab team").members.add(dave, through_defaults={"role": TeamRole.VIEWER})
    assert roles("dave") == {"Mail team": TeamRole.EDITOR, "Lab team": TeamRole.VIEWER}
    try:
        slapd.modify(f"dn: {MAIL_OPERATORS}\nchangetype: modify\ndelete: member\nmember: uid=dave,ou=people,{SUFFIX}\n")
        assert roles("dave") == {"Mail team": TeamRole.EDITOR, "Lab team": TeamRole.VIEWER}  # until they sign in
        assert sign_in(Client(), "dave", "dave-directory-password").status_code == 302
        assert roles("dave") == {"Lab team": TeamRole.VIEWER}
        slapd.modify(f"dn: {MAIL_ADMINS}\nchangetype: modify\nadd: member\nmember: uid=dave,ou=people,{SUFFIX}\n")
        assert sign_in(Client(), "dave", "dave-directory-password").status_code == 302
        assert roles("dave") == {"Mail team": TeamRole.ADMIN, "Lab team": TeamRole.VIEWER}
    finally:
        slapd.modify(
            f"dn: {MAIL_ADMINS}\nchangetype: modify\ndelete: member\nmember: uid=dave,ou=people,{SUFFIX}\n\n"
            f"dn: {MAIL_OPERATORS}\nchangetype: modify\nadd: member\nmember: uid=dave,ou=people,{SUFFIX}\n"
        )
    # The mapping changes: the group's role changes at the next sign-in.
    settings.DIRECTORY_GROUP_TEAMS = parse_group_teams(
        "DIRECTORY_GROUP_TEAMS", f'{{"{MAIL_OPERATORS}": {{"Mail team": "approver"}}}}'
    )
    assert sign_in(Client(), "dave", "dave-directory-password").status_code == 302
    assert roles("dave") == {"Mail team": TeamRole.APPROVER, "Lab team": TeamRole.VIEWER}
    changes = ObjectChange.objects.filter(source=ChangeSource.DIRECTORY, object_repr="dave in Mail team")
    assert list(changes.order_by("pk").values_list("action", flat=True)) == ["created", "deleted", "created", "updated"]


def test_a_wrong_password_is_refused_and_counted_until_the_pair_is_locked_out(db, use_directory, settings):
    browser = Client()
    answers = [sign_in(browser, "heidi", "a-guess") for _ in range(settings.AXES_FAILURE_LIMIT)]
    assert [answer.status_code for answer in answers[:-1]] == [200] * (settings.AXES_FAILURE_LIMIT - 1)
    assert WRONG in answers[0].content.decode() and UNAVAILABLE not in answers[0].content.decode()
    assert answers[-1].status_code == settings.AXES_HTTP_RESPONSE_CODE == 429
    assert failures("heidi") == settings.AXES_FAILURE_LIMIT
    locked = sign_in(browser, "heidi", "heidi-directory-password")
    assert locked.status_code == 429 and signed_in_through(browser) is None
    # The directory compares names without regard to case, and so does the lockout.
    for other_case in ("HEIDI", " Heidi"):
        assert sign_in(Client(), other_case, "heidi-directory-password").status_code == 429
    # Nobody the directory knows is refused the same way, and counted.
    assert sign_in(Client(), "mallory", "a-guess").status_code == 200 and failures("mallory") == 1


@pytest.mark.parametrize("tls", ["StartTLS", "LDAPS"])
def test_tls_with_the_ca_of_the_settings_signs_in_and_with_another_ca_fails_saying_so(db, use_directory, slapd, tls):
    ldaps = {"LDAP_SERVER_URI": f"ldaps://127.0.0.1:{slapd.tls_port}", "LDAP_START_TLS": "false"}
    over = ldaps if tls == "LDAPS" else {}
    use_directory(**over, LDAP_CA_FILE=str(slapd.other_ca))
    refused = sign_in(Client(), "frank", "frank-directory-password")
    assert refused.status_code == 200
    assert "could not be reached securely" in refused.content.decode() and UNAVAILABLE in refused.content.decode()
    assert failures("frank") == 0  # no password was checked
    use_directory(**over)
    browser = Client()
    assert sign_in(browser, "frank", "frank-directory-password").status_code == 302
    assert signed_in_through(browser) == LDAP_BACKEND and roles("frank") == {"Mail team": TeamRole.EDITOR}


def test_without_tls_the_directory_refuses_and_the_page_says_so(db, use_directory):
    use_directory(LDAP_START_TLS="false")
    answer = sign_in(Client(), "frank", "frank-directory-password")
    assert answer.status_code == 200
    assert "answered the portal with an error (the portal&#x27;s log says which)" in answer.content.decode()
    assert "Confidentiality required" not in answer.content.decode()  # the directory's words, logged only


def test_a_directory_that_is_down_is_a_message_and_local_accounts_still_sign_in(db, use_directory):
    use_directory(LDAP_SERVER_URI=f"ldap://127.0.0.1:{free_port()}")  # nothing listens there
    local = get_user_model().objects.create_user("victor", password="the-right-password-1")
    answer = sign_in(Client(), "carol", "carol-directory-password")
    assert answer.status_code == 200
    page = answer.content.decode()
    assert "could not be reached securely" in page and UNAVAILABLE in page and WRONG not in page
    assert failures("carol") == 0  # retrying during an outage locks nobody out
    browser = Client()
    assert sign_in(browser, "victor", "the-right-password-1").status_code == 302
    assert signed_in_through(browser) == MODEL_BACKEND and browser.session["_auth_user_id"] == str(local.pk)
    # A local account's wrong password is still refused and counted.
    wrong = sign_in(Client(), "victor", "a-guess")
    assert wrong.status_code == 200 and WRONG in wrong.content.decode() and failures("victor") == 1


def test_a_directory_that_does_not_answer_fails_within_the_timeout(db, use_directory):
    with socket.socket() as silent:  # accepts connections (the kernel does) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        use_directory(LDAP_SERVER_URI=f"ldap://127.0.0.1:{silent.getsockname()[1]}", LDAP_TIMEOUT="1")
        started = time.monotonic()
        answer = sign_in(Client(), "carol", "carol-directory-password")
        took = time.monotonic() - started
    assert answer.status_code == 200 and UNAVAILABLE in answer.content.decode()
    assert took < 5


def test_groups_that_cannot_be_read_refuse_the_sign_in_and_leave_the_teams(db, use_directory):
    assert sign_in(Client(), "carol", "carol-directory-password").status_code == 302
    use_directory(LDAP_GROUP_SEARCH_BASE=f"ou=missing,{SUFFIX}")
    browser = Client()
    answer = sign_in(browser, "carol", "carol-directory-password")
    assert answer.status_code == 200 and signed_in_through(browser) is None
    assert "answered the portal with an error" in answer.content.decode()
    assert "No such object" not in answer.content.decode()
    assert roles("carol") == {"Mail team": TeamRole.ADMIN, "DNS team": TeamRole.VIEWER}


def test_a_local_account_stays_local_when_the_directory_has_the_same_name(db, use_directory):
    get_user_model().objects.create_user("grace", password="grace-local-password", is_superuser=True)
    assert sign_in(Client(), "grace", "grace-directory-password").status_code == 200
    browser = Client()
    assert sign_in(browser, "grace", "grace-local-password").status_code == 302
    assert signed_in_through(browser) == MODEL_BACKEND and roles("grace") == {}
    # Nor one without a password (an account for its API tokens, a superuser made without one).
    get_user_model().objects.create_superuser("Heidi", password=None)
    assert sign_in(Client(), "heidi", "heidi-directory-password").status_code == 200
    assert not DirectoryAccount.objects.exists()


def test_a_user_deactivated_in_the_portal_is_signed_out_of_their_directory_session(db, use_directory):
    browser = Client()
    assert sign_in(browser, "carol", "carol-directory-password").status_code == 302
    linked = DirectoryAccount.objects.get()
    assert linked.user.username == "carol" and linked.subject == "uid=carol,ou=people,dc=corp,dc=example"
    assert browser.get("/teams/").status_code == 200
    get_user_model().objects.filter(username="carol").update(is_active=False)
    assert browser.get("/teams/").status_code == 302  # to the login page


@pytest.mark.parametrize(
    ("changed", "says"),
    [
        ({"LDAP_SERVER_URI": "127.0.0.1:389"}, "each must be ldap://… or ldaps://…"),
        ({"LDAP_USER_SEARCH_BASE": ""}, "needs LDAP_USER_SEARCH_BASE"),
        ({"LDAP_USER_FILTER": "(uid=carol)"}, "must contain %\\(user\\)s"),
        ({"LDAP_CA_FILE": "/nonexistent/ca.pem"}, "is not a file"),
        ({"LDAP_GROUP_TYPE": "groups"}, "is none of groupOfNames, nestedGroupOfNames"),
    ],
)
def test_settings_that_are_wrong_stop_the_portal_saying_what(slapd, changed, says):
    with pytest.raises(ImproperlyConfigured, match=says):
        ldap_settings({**slapd.environment(), **changed})


def test_without_ldap_server_uri_there_is_no_ldap_backend_and_python_ldap_is_not_imported():
    environment = {name: value for name, value in os.environ.items() if not name.startswith("LDAP_")}
    code = (
        "import sys, django; django.setup()\n"
        "from django.conf import settings\n"
        "from django.contrib.auth import get_backends\n"
        "from django.urls import resolve\n"
        "get_backends(); resolve('/accounts/login/')\n"
        "print(settings.AUTHENTICATION_BACKENDS)\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] in ('ldap', 'django_auth_ldap')))\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", code],
        env={**environment, "DJANGO_SETTINGS_MODULE": "portal.settings"},
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert found.returncode == 0, found.stderr
    backends, imported = found.stdout.splitlines()[-2:]
    assert "ldap" not in backends.lower() and imported == "[]"


@pytest.mark.integration
@pytest.mark.skipif(not shutil.which(CHROMIUM), reason="needs Debian's chromium (make test installs it)")
def test_a_directory_user_signs_in_on_a_phone_and_sees_the_message_when_the_directory_is_down(
    live_server, browser, use_directory
):
    base = live_server.url
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto(f"{base}/")
    page.get_by_label("Username").fill("frank")
    page.get_by_label("Password").fill("frank-directory-password")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/")
    # Their team, from their group, on their Teams page. (Read there rather than from the database:
    # the ORM would open a connection of its own here, in Playwright's greenlet, and keep it.)
    page.goto(f"{base}/teams/")
    assert page.locator("table tbody td").all_inner_texts() == ["Mail team", "Editor"]
    page.close()

    use_directory(LDAP_SERVER_URI=f"ldap://127.0.0.1:{free_port()}")
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto(f"{base}{LOGIN}")
    page.get_by_label("Username").type("frank")
    page.get_by_label("Password").type("frank-directory-password")
    page.get_by_role("button", name="Log in").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "could not be reached securely" in alert.inner_text() and UNAVAILABLE in alert.inner_text()
    # The message wraps within the phone's width: nothing to scroll sideways.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=ARTIFACTS / "login-directory-down-390.png", full_page=True)
    page.close()
