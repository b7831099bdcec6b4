"""What `make run` sets up, and the browser's way into the API (session with CSRF)."""

from __future__ import annotations

import ipaddress

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
