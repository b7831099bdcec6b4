"""The checklist that follows from a deployment, and how it survives changes."""

from __future__ import annotations

from collections import Counter

import pytest

from ports.checklist import regenerate_checklist
from ports.deployments import save_deployment
from ports.models import ChecklistItem, Deployment
from ports.rules import PortRange

from .conftest import create_deployment


def rules(deployment: Deployment) -> set[tuple]:
    return {
        (i.requirement.uid, i.source, i.destination, i.interface, i.protocol, str(i.ports))
        for i in deployment.checklist.select_related("requirement")
    }


def update(deployment: Deployment, **changes) -> Deployment:
    return save_deployment(changes, instance=deployment, partial=True).deployment


def test_every_requirement_becomes_rules_for_every_appliance_and_role(deployment):
    per_requirement = Counter(deployment.checklist.values_list("requirement__uid", flat=True))
    # 3 appliances; esa3 has no P2, which no rule needs when P1 is there.
    assert per_requirement == {
        "fes.appliance.9449-tcp.end-users": 3,
        "fes.appliance.9449-tcp.peer-appliances": 6,  # a full mesh of 3
        "fes.appliance.6671-tcp": 3,
        "fes.appliance.6643-tcp": 3,
        "fes.appliance.17700-17714-tcp": 3,
        "fes.appliance.25-tcp": 3,
        "fes.appliance.2525-tcp": 3,
        "fes.dlp.17500-17515-tcp.fingerprint-status": 3,
        "fes.dlp.17500-17515-tcp.fingerprint-repository": 3,
        "fes.dlp.17443-tcp": 3,
        "fes.dlp.17444-tcp": 3,
        "fes.dlp.17500-17515-tcp.message-analysis": 3,
        "fes.off-appliance.9443-tcp": 3,
        "fes.off-appliance.50800-tcp": 3,
        "fes.off-appliance.1433-tcp": 3,
        "fes.off-appliance.1434-udp": 3,
        "fes.off-appliance.443-tcp": 3,
        "fes.off-appliance.15868-tcp": 3,
        "fes.off-appliance.56992-tcp": 3,
        "fes.off-appliance.389-tcp": 3,
        "fes.off-appliance.636-tcp": 3,
        "fes.off-appliance.53-tcp": 6,  # two DNS servers
        "fes.off-appliance.53-udp": 6,
        "fes.off-appliance.162-udp": 3,
    }
    assert deployment.checklist_warnings == []
    assert deployment.checklist_generated_at is not None


def test_rules_have_concrete_endpoints_interfaces_ports_and_protocols(deployment):
    got = rules(deployment)
    expected = {
        # Into the appliance: SMTP on P1 from anywhere; the SSL proxy on the recommended C.
        ("fes.appliance.25-tcp", "any", "127.0.2.1", "P1", "tcp", "25"),
        ("fes.appliance.6671-tcp", "127.0.4.1", "127.0.1.2", "C", "tcp", "6671"),
        ("fes.appliance.6643-tcp", "127.0.8.0/24", "127.0.1.3", "C", "tcp", "6643"),
        ("fes.appliance.17700-17714-tcp", "127.0.4.4", "127.0.2.1", "P1", "tcp", "17700-17714"),
        ("fes.appliance.9449-tcp.peer-appliances", "127.0.1.2", "127.0.1.1", "C", "tcp", "9449"),
        # Out of the appliance, from the interface the page allows.
        ("fes.dlp.17500-17515-tcp.message-analysis", "127.0.1.1", "127.0.4.4", "C", "tcp", "17500-17515"),
        ("fes.off-appliance.1434-udp", "127.0.2.3", "127.0.4.3", "P1", "udp", "1434"),
        ("fes.off-appliance.53-udp", "127.0.2.2", "127.0.4.10", "P1", "udp", "53"),
        ("fes.off-appliance.53-tcp", "127.0.2.2", "127.0.4.10", "P1", "tcp", "53"),
        ("fes.off-appliance.162-udp", "127.0.1.3", "127.0.4.11", "C", "udp", "162"),
        ("fes.off-appliance.443-tcp", "127.0.2.1", "localhost", "P1", "tcp", "443"),
    }
    assert expected <= got
    item = deployment.checklist.get(requirement__uid="fes.appliance.6671-tcp", destination="127.0.1.2")
    assert (item.source_role, item.source_name, item.source_site) == ("security_manager", "fsm", "hq")
    assert (item.destination_role, item.destination_name) == ("appliance", "esa2.example.test")


def test_interface_falls_back_in_page_order_and_missing_interfaces_are_reported(catalog, user, full_document):
    full_document["appliances"] = [
        {"hostname": "data-only", "p2_address": "127.0.9.2"},
        {"hostname": "mgmt-only", "c_address": "127.0.9.3"},
    ]
    deployment = create_deployment(full_document)
    ssl_proxy = deployment.checklist.get(requirement__uid="fes.appliance.6671-tcp", destination_name="data-only")
    assert (ssl_proxy.interface, ssl_proxy.destination) == ("P2", "127.0.9.2")
    assert not deployment.checklist.filter(requirement__uid="fes.appliance.25-tcp", destination_name="mgmt-only")
    assert "mgmt-only has no address on P1/P2: fes.appliance.25-tcp (SMTP, 25/tcp) has no rule." in (
        deployment.checklist_warnings
    )
    assert deployment.checklist.filter(requirement__uid="fes.off-appliance.162-udp").get().source == "127.0.9.3"


def test_only_features_in_use_and_roles_with_hosts_give_rules(catalog, user, full_document):
    full_document["features"] = ["pem"]
    full_document["hosts"] = [h for h in full_document["hosts"] if h["role"] != "ldap"]
    deployment = create_deployment(full_document)
    uids = set(deployment.checklist.values_list("requirement__uid", flat=True))
    assert not any(uid.startswith("fes.dlp.") for uid in uids)
    assert not uids & {"fes.off-appliance.443-tcp", "fes.off-appliance.162-udp", "fes.off-appliance.15868-tcp"}
    assert {"fes.appliance.6643-tcp", "fes.appliance.9449-tcp.peer-appliances"} <= uids
    assert not uids & {"fes.off-appliance.389-tcp", "fes.off-appliance.636-tcp"}
    assert deployment.checklist_warnings[0] == (
        "Missing roles: LDAP server (389/tcp, 636/tcp). Add a host for each: 2 requirements have no rule until then."
    )


def test_dlp_base_port_moves_the_configurable_range_only(deployment):
    update(deployment, dlp_base_port=18000)
    moved = deployment.checklist.filter(requirement__uid__startswith="fes.dlp.17500-17515")
    assert {(i.port_start, i.port_end) for i in moved} == {(18000, 18015)}
    assert moved.count() == 9
    fixed = deployment.checklist.get(requirement__uid="fes.appliance.17700-17714-tcp", destination="127.0.2.1")
    assert (fixed.port_start, fixed.port_end) == (17700, 17714)
    assert deployment.checklist.filter(requirement__uid="fes.dlp.17443-tcp").first().ports == PortRange(17443, 17443)


def test_regeneration_keeps_status_and_history_of_rules_that_still_exist(deployment, user):
    smtp = deployment.checklist.get(requirement__uid="fes.appliance.25-tcp", destination_name="esa1.example.test")
    smtp.change_status("opened", user, comment="CHG-1 implemented")
    gone = deployment.checklist.get(requirement__uid="fes.appliance.25-tcp", destination_name="esa3.example.test")
    gone.change_status("requested", user)
    before = deployment.checklist.count()

    appliances = [a for a in deployment.appliances.values("hostname", "c_address", "p1_address", "p2_address")]
    appliances = [a for a in appliances if a["hostname"] != "esa3.example.test"]
    appliances.append({"hostname": "esa4.example.test", "c_address": "127.0.1.4", "p1_address": "127.0.2.4"})
    update(deployment, appliances=appliances)

    kept = ChecklistItem.objects.get(pk=smtp.pk)
    assert kept.status == "opened"
    assert [(h.from_status, h.to_status, h.user, h.comment) for h in kept.history.all()] == [
        ("todo", "opened", user, "CHG-1 implemented")
    ]
    assert not ChecklistItem.objects.filter(pk=gone.pk).exists()
    new = deployment.checklist.get(requirement__uid="fes.appliance.25-tcp", destination_name="esa4.example.test")
    assert new.status == "todo"
    assert deployment.checklist.count() == before


def test_regenerating_an_unchanged_deployment_changes_no_item(deployment):
    before = list(deployment.checklist.values_list("pk", "key", "position", "status", "revision"))
    result = regenerate_checklist(deployment)
    assert (result.added, result.removed, result.kept) == ([], [], len(before))
    assert list(deployment.checklist.values_list("pk", "key", "position", "status", "revision")) == before


def test_renaming_a_host_keeps_its_rules_and_relabels_them(deployment, user):
    item = deployment.checklist.get(requirement__uid="fes.off-appliance.50800-tcp", source_name="esa1.example.test")
    item.change_status("verified", user)
    hosts = list(deployment.hosts.values("role", "name", "address", "site"))
    for host in hosts:
        if host["role"] == "log_server":
            host["name"] = "log-server-renamed"
    update(deployment, hosts=hosts)
    item.refresh_from_db()
    assert (item.status, item.destination_name) == ("verified", "log-server-renamed")


def test_a_deployment_without_appliances_has_an_empty_checklist_that_says_why(catalog, user):
    deployment = create_deployment({"name": "Draft"})
    assert deployment.checklist.count() == 0
    assert deployment.checklist_warnings == ["The deployment has no appliances yet."]


@pytest.mark.parametrize("count", [1, 2])
def test_peer_appliance_rules_need_a_second_appliance(catalog, user, full_document, count):
    full_document["appliances"] = full_document["appliances"][:count]
    deployment = create_deployment(full_document)
    peers = deployment.checklist.filter(requirement__uid="fes.appliance.9449-tcp.peer-appliances").count()
    assert peers == count * (count - 1)
    assert not any("Peer appliance" in w for w in deployment.checklist_warnings)
