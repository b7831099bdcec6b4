"""What `make run` sets up, and the browser's way into the API (session with CSRF)."""

from __future__ import annotations

import ipaddress

from django.core.cache import caches
from django.core.management import call_command
from django.test import Client

from ports.models import Deployment


def addresses(deployment: Deployment) -> list[str]:
    found = []
    for appliance in deployment.appliances.all():
        found += [a for a in (appliance.c_address, appliance.p1_address, appliance.p2_address) if a]
    found += [host.address for host in deployment.hosts.all()]
    return found + [n.network.split("/")[0] for n in deployment.peer_networks.exclude(network="any")]


def test_demo_is_created_once_with_loopback_hosts_only(catalog, capsys):
    call_command("setup_demo")
    call_command("setup_demo")
    output = capsys.readouterr().out
    assert "log in as demo / portal-demo" in output and "API token" in output
    deployment = Deployment.objects.get()
    assert deployment.checklist.count() == 48 and deployment.checklist_warnings == []
    assert all(ipaddress.ip_address(a).is_loopback for a in addresses(deployment))


def test_browser_session_reads_and_needs_csrf_to_write(catalog):
    call_command("setup_demo")
    browser = Client(enforce_csrf_checks=True)
    login = browser.get("/api-auth/login/")
    token = login.cookies["csrftoken"].value
    response = browser.post(
        "/api-auth/login/", {"username": "demo", "password": "portal-demo", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302
    deployment = Deployment.objects.get()
    assert browser.get(f"/api/deployments/{deployment.pk}/checklist/").status_code == 200

    item = deployment.checklist.first()
    url = f"/api/checklist-items/{item.pk}/"
    refused = browser.patch(url, {"status": "opened"}, content_type="application/json")
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    token = browser.cookies["csrftoken"].value
    accepted = browser.patch(url, {"status": "opened"}, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 200
    item.refresh_from_db()
    assert item.status == "opened" and item.history.get().user.username == "demo"


def page_queries(client: Client, url: str) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def test_pages_take_the_same_queries_whatever_the_size(catalog, user, full_document):
    from .conftest import create_deployment

    small = create_deployment(full_document)
    full_document.update(name="Large")
    full_document["appliances"] = [
        {"hostname": f"esa{n}", "c_address": f"127.1.{n}.1", "p1_address": f"127.1.{n}.2"} for n in range(20)
    ]
    large = create_deployment(full_document)
    assert large.checklist.count() > 10 * small.checklist.count()
    browser = Client()
    browser.force_login(user)
    assert page_queries(browser, f"/deployments/{small.pk}/") == page_queries(browser, f"/deployments/{large.pk}/")
    # Counted from nothing (the counts are kept per checklist revision), as many deployments or more.
    caches["counts"].clear()
    one = page_queries(browser, "/")
    create_deployment({**full_document, "name": "Third"})
    caches["counts"].clear()
    assert page_queries(browser, "/") == one


def test_pages_need_a_login_and_hide_other_teams(deployment, other_api):
    from django.contrib.auth import get_user_model

    anonymous = Client()
    for url in ["/", f"/deployments/{deployment.pk}/", f"/deployments/{deployment.pk}/edit/", "/catalog/"]:
        response = anonymous.get(url)
        assert response.status_code == 302 and response.headers["Location"].startswith("/accounts/login/")
    mallory = Client()
    mallory.force_login(get_user_model().objects.get(username="mallory"))
    assert mallory.get(f"/deployments/{deployment.pk}/").status_code == 404
    assert mallory.post(f"/deployments/{deployment.pk}/edit/", {"name": "taken"}).status_code == 404
    assert "Mail gateways" not in mallory.get("/").content.decode()


def test_make_runs_database_migrates_from_nothing_on_sqlite(tmp_path):
    """`make run` is on SQLite: every migration applies there too (the suite runs on PostgreSQL)."""
    import os
    import subprocess
    import sys

    from django.conf import settings

    environment = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    environment |= {"PORTAL_VAR_DIR": str(tmp_path), "DJANGO_DEBUG": "1"}
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=settings.BASE_DIR, env=environment, capture_output=True, text=True,
    )  # fmt: skip
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    assert (tmp_path / "portal.sqlite3").exists()
