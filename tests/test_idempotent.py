"""Every write says whether it changed something, the same way (the `outcome` field and the `Outcome`
header), and a write sent again changes nothing: a status the item already has, a pin or a channel
created twice."""

from __future__ import annotations

import base64

from rest_framework.test import APIClient

from ports.models import ChecklistItem, Deployment
from probes.models import AlertChannel, TlsPin


def said(response: object, code: int, outcome: str) -> dict:
    """The answer's body, after checking its status and that field and header say `outcome`."""
    assert response.status_code == code, response.content
    body = response.json()
    assert body["outcome"] == response.headers["Outcome"] == outcome, (body.get("outcome"), response.headers)
    return body


def revision(deployment: Deployment) -> int:
    return Deployment.objects.values_list("checklist_revision", flat=True).get(pk=deployment.pk)


# --- A status change --------------------------------------------------------------------


def test_a_status_the_item_already_has_changes_nothing_comment_or_not(
    deployment, api, django_capture_on_commit_callbacks
):
    item = deployment.checklist.order_by("pk").first()
    url = f"/api/checklist-items/{item.pk}/"
    checklist = f"/api/deployments/{deployment.pk}/checklist/"
    with django_capture_on_commit_callbacks(execute=True):
        first = api.patch(url, {"status": "requested", "comment": "CHG-1"}, format="json")
    body = said(first, 200, "updated")
    assert body["revision"] == 2 and len(body["history"]) == 1
    etag, listed = first.headers["ETag"], api.get(checklist).headers["ETag"]
    moved = revision(deployment)

    # The same status again, with a comment, then without: nothing is written, the ETags stay.
    for change in ({"status": "requested", "comment": "CHG-1 again"}, {"status": "requested"}):
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            again = api.patch(url, change, format="json", HTTP_IF_MATCH=etag)
        body = said(again, 200, "unchanged")
        assert not callbacks  # no revision bump waiting for the commit either
        assert again.headers["ETag"] == etag and body["etag"] == etag and body["revision"] == 2
        assert [h["comment"] for h in body["history"]] == ["CHG-1"]
    item.refresh_from_db()
    assert (item.status, item.revision, item.history.count()) == ("requested", 2, 1)
    assert revision(deployment) == moved
    assert api.get(checklist, HTTP_IF_NONE_MATCH=listed).status_code == 304  # the checklist's ETag stands


def test_a_new_item_sent_its_own_status_says_unchanged(deployment, api):
    item = deployment.checklist.order_by("pk").first()
    body = said(api.patch(f"/api/checklist-items/{item.pk}/", {"status": "todo"}, format="json"), 200, "unchanged")
    assert body["history"] == [] and body["revision"] == 1


def test_a_stale_etag_is_still_a_conflict_even_for_the_status_the_item_has(deployment, api):
    """If-Match is checked first, as before: ten clients sending the same change with one ETag get
    one 200 and nine 412s (test_hardening), and a stale tag is never told unchanged."""
    item = deployment.checklist.order_by("pk").first()
    url = f"/api/checklist-items/{item.pk}/"
    tag = api.get(url).headers["ETag"]
    fresh = api.patch(url, {"status": "opened"}, format="json", HTTP_IF_MATCH=tag)
    said(fresh, 200, "updated")
    assert api.patch(url, {"status": "opened"}, format="json", HTTP_IF_MATCH=tag).status_code == 412
    said(api.patch(url, {"status": "opened"}, format="json", HTTP_IF_MATCH=fresh.headers["ETag"]), 200, "unchanged")
    item.refresh_from_db()
    assert (item.status, item.revision, item.history.count()) == ("opened", 2, 1)


def test_the_model_says_whether_a_status_changed(deployment, user):
    item = deployment.checklist.order_by("pk").first()
    assert item.change_status("opened", user, "CHG-2") is True
    assert ChecklistItem.objects.get(pk=item.pk).change_status("opened", user, "again") is False
    assert item.history.count() == 1


def test_a_bulk_change_says_updated_then_unchanged(deployment, api):
    url = f"/api/deployments/{deployment.pk}/checklist/status/"
    ids = list(deployment.checklist.order_by("pk").values_list("pk", flat=True)[:3])
    change = {"status": "requested", "comment": "CHG-3", "items": ids}
    assert said(api.post(url, {**change, "dry_run": True}, format="json"), 200, "updated")["changed"] == 3
    assert said(api.post(url, change, format="json"), 200, "updated")["changed"] == 3
    assert said(api.post(url, change, format="json"), 200, "unchanged")["changed"] == 0


# --- Deployments ------------------------------------------------------------------------


def test_every_deployment_write_says_its_outcome_in_the_body_and_both_headers(catalog, api, full_document):
    created = api.post("/api/deployments/", full_document, format="json")
    body = said(created, 201, "created")
    assert created.headers["Deployment-Outcome"] == "created"
    url = f"/api/deployments/{body['id']}/"

    # The answer sent back as it is (its `outcome` too) is the same document: unchanged.
    again = api.put(url, body, format="json")
    assert said(again, 200, "unchanged") == body | {"outcome": "unchanged"}
    assert again.headers["Deployment-Outcome"] == "unchanged"
    said(api.patch(url, {"dlp_base_port": 18000}, format="json"), 200, "updated")
    said(api.patch(url, {"dlp_base_port": 18000}, format="json"), 200, "unchanged")
    full_document["dlp_base_port"] = 17500  # back (an upsert leaves a field it is not given as it is)
    said(api.post("/api/deployments/upsert/", full_document, format="json"), 200, "updated")
    upserted = api.post("/api/deployments/upsert/", full_document, format="json")
    said(upserted, 200, "unchanged")
    assert upserted.headers["Deployment-Outcome"] == "unchanged"
    assert "outcome" not in api.get(url).json()  # a read is no write


# --- TLS pins ---------------------------------------------------------------------------


def test_a_pin_sent_twice_is_one_pin_unchanged_and_another_key_replaces_it(deployment, api):
    url = f"/api/deployments/{deployment.pk}/tls-pins/"
    key = bytes.fromhex("ab" * 32)
    first = said(api.post(url, {"host": "127.0.4.1", "port": 9443, "pin": "ab" * 32}, format="json"), 201, "created")
    # The same key, as sha256/<base64>: the same pin.
    same = {"host": "127.0.4.1", "port": 9443, "pin": "sha256/" + base64.b64encode(key).decode()}
    again = said(api.post(url, same, format="json"), 200, "unchanged")
    assert again == first | {"outcome": "unchanged"}

    other = said(api.post(url, {"host": "127.0.4.1", "port": 9443, "pin": "cd" * 32}, format="json"), 200, "updated")
    assert other["id"] == first["id"] and other["pin"] != first["pin"]
    assert TlsPin.objects.filter(deployment=deployment).count() == 1


def test_a_pin_a_probe_trusted_first_becomes_the_expected_one(deployment, api):
    pin = "sha256/" + base64.b64encode(bytes.fromhex("ef" * 32)).decode()
    TlsPin.objects.create(deployment=deployment, host="127.0.4.1", port=9443, pin=pin, source="first_seen", issuer="CA")
    url = f"/api/deployments/{deployment.pk}/tls-pins/"
    body = said(api.post(url, {"host": "127.0.4.1", "port": 9443, "pin": pin}, format="json"), 200, "updated")
    assert (body["source"], body["issuer"]) == ("expected", "")
    said(api.post(url, {"host": "127.0.4.1", "port": 9443, "pin": pin}, format="json"), 200, "unchanged")


# --- Alert channels ---------------------------------------------------------------------


OPS = {"name": "Ops", "kind": "email", "target": "ops@example.test"}


def test_a_channel_sent_twice_is_one_channel_unchanged(api):
    first = said(api.post("/api/alert-channels/", OPS, format="json"), 201, "created")
    again = said(api.post("/api/alert-channels/", OPS, format="json"), 200, "unchanged")
    assert again == first | {"outcome": "unchanged"}  # the same channel: its id, its secret
    spelt_out = {**OPS, "team": "Mail team", "enabled": True}  # the defaults given: the same channel
    said(api.post("/api/alert-channels/", spelt_out, format="json"), 200, "unchanged")
    assert AlertChannel.objects.count() == 1


def test_another_channel_under_a_name_taken_is_refused_as_before(api):
    said(api.post("/api/alert-channels/", OPS, format="json"), 201, "created")
    for clash in ({**OPS, "target": "noc@example.test"}, {**OPS, "enabled": False}):
        refused = api.post("/api/alert-channels/", clash, format="json")
        assert refused.status_code == 400
        assert refused.json() == {"name": ["Team Mail team already has a channel named 'Ops'."]}
    assert AlertChannel.objects.get().target == "ops@example.test"


def test_a_channel_update_says_whether_it_changed_and_takes_its_answer_back(api):
    created = said(api.post("/api/alert-channels/", OPS, format="json"), 201, "created")
    url = f"/api/alert-channels/{created['id']}/"
    said(api.put(url, created, format="json"), 200, "unchanged")  # the answer sent back as it is
    said(api.patch(url, {"enabled": False}, format="json"), 200, "updated")
    said(api.patch(url, {"enabled": False}, format="json"), 200, "unchanged")
    assert AlertChannel.objects.get().enabled is False


def test_another_teams_channel_of_the_same_name_is_its_own(api, other_api):
    said(api.post("/api/alert-channels/", OPS, format="json"), 201, "created")
    said(other_api.post("/api/alert-channels/", OPS, format="json"), 201, "created")
    assert AlertChannel.objects.count() == 2


def test_writes_in_another_teams_deployment_stay_404(deployment, other_api: APIClient):
    url = f"/api/deployments/{deployment.pk}/tls-pins/"
    assert other_api.post(url, {"host": "h", "port": 443, "pin": "ab" * 32}, format="json").status_code == 404
    item = deployment.checklist.order_by("pk").first()
    assert other_api.patch(f"/api/checklist-items/{item.pk}/", {"status": "todo"}, format="json").status_code == 404
