"""The change log's pages: a deployment's History tab and the team change log (/changes/). Each
entry says when, who, through what and in which request, with its diff in words (a list's rows
that went and came); only the user's teams' entries; a filter that does not parse is said next
to its field; a page costs the same queries whatever its length. Then in Chromium at three widths:
an address typed into the deployment's form shows in its History tab, and in the change log."""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from portal.pages.changes import ENTRIES_PER_PAGE, FieldChange, field_changes
from ports.acting import Actor, acting
from ports.choices import ChangeAction, ChangedObject, ChangeSource
from ports.deployments import delete_deployment, save_deployment
from ports.models import Deployment, ObjectChange

from .conftest import FULL_DEPLOYMENT, create_deployment, make_member, signed_in
from .test_browser import pytestmark as browser_marks
from .test_pages import PHONE, TABLET, Visits

DESKTOP = {"width": 1280, "height": 800}
OLD, NEW = "127.0.4.9", "127.0.4.99"  # dns1's address, and the one typed in its place


def in_chromium(test: Callable) -> Callable:
    """The browser tests' marks (Chromium and Redis), on this module's browser test alone."""
    for mark in browser_marks:
        test = mark(test)
    return test


def edited(deployment: Deployment, user: object, **changes: object) -> None:
    """Save the deployment with `changes` to its document, as `user` on the pages would."""
    document = {**FULL_DEPLOYMENT, "team": deployment.team.name, "name": deployment.name, **changes}
    with acting(Actor(ChangeSource.PAGE, user=user, request_id="req-0123456789abcdef")):
        save_deployment(document, user=user, instance=Deployment.objects.get(pk=deployment.pk))


def moved_dns1() -> list[dict]:
    return [{**host, "address": NEW} if host["address"] == OLD else host for host in FULL_DEPLOYMENT["hosts"]]


def entries_shown(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'<li class="change" id="change-(\d+)"', html)]


def many_entries(deployment: Deployment, count: int) -> None:
    """`count` entries of bob's rule status changes of the deployment, two days ago, a minute apart."""
    start = timezone.now() - datetime.timedelta(days=2)
    ObjectChange.objects.bulk_create(
        ObjectChange(
            team_id=deployment.team_id,
            deployment_id=deployment.pk,
            deployment_name=deployment.name,
            time=start + datetime.timedelta(minutes=n),
            user_name="bob",
            source=ChangeSource.API_TOKEN,
            request_id=f"bulk-{n}",
            action=ChangeAction.UPDATED,
            object_type=ChangedObject.RULE,
            object_id=n + 1,
            object_repr=f"rule {n + 1}",
            before={"status": "todo"},
            after={"status": "requested", "comment": f"CHG-{n}"},
        )
        for n in range(count)
    )


def test_a_diff_in_words_names_the_rows_that_went_and_came_and_the_values_before_and_after():
    entry = ObjectChange(
        object_type=ChangedObject.DEPLOYMENT,
        before={
            "dlp_base_port": 17500,
            "description": "",  # after it in the document
            "features": ["dlp", "pem"],
            "hosts": [
                {"name": "dns1", "role": "dns", "site": "default", "address": "127.3.0.1"},  # as jsonb has it
                {"role": "ldap", "name": "ldap", "address": "127.3.0.2", "site": "hq"},
                {"role": "dns", "name": "dns2", "address": "127.3.0.3", "site": "default"},
                {"role": "dns", "name": "dns2", "address": "127.3.0.3", "site": "default"},
            ],
            "name": "Gateways",
        },
        after={
            "dlp_base_port": 17600,
            "description": "Mail",
            "features": ["pem", "snmp"],
            "hosts": [
                {"role": "ldap", "name": "ldap", "address": "127.3.0.2", "site": "hq"},
                {"role": "dns", "name": "dns1", "address": "127.3.0.9", "site": "default"},
                {"role": "dns", "name": "dns2", "address": "127.3.0.3", "site": "default"},
            ],
            "name": "Gateways",
        },
    )
    assert field_changes(entry) == [  # in the document's order, whatever the JSON's
        FieldChange("description", before="", after="Mail"),
        FieldChange("dlp_base_port", before="17500", after="17600"),
        FieldChange("features", removed=["dlp"], added=["snmp"], is_list=True),
        # A row held twice and now once lost one; a row that only moved is no change.
        FieldChange(
            "hosts", removed=["dns dns1 127.3.0.1", "dns dns2 127.3.0.3"], added=["dns dns1 127.3.0.9"], is_list=True
        ),
    ]
    # A rule's status by its label; a field that was not there is nothing (the page shows a dash).
    rule = ObjectChange(
        object_type=ChangedObject.RULE, before={"status": "todo"}, after={"status": "waived", "comment": "no DLP"}
    )
    assert field_changes(rule) == [
        FieldChange("status", before="To do", after="Waived"),
        FieldChange("comment", before="", after="no DLP"),
    ]
    # A deletion: every field as it was, every row removed; a site that is not the default is said.
    gone = ObjectChange(object_type=ChangedObject.DEPLOYMENT, before=entry.before, after=None)
    hosts = next(change for change in field_changes(gone) if change.name == "hosts")
    assert hosts.added == [] and "ldap ldap 127.3.0.2 (site hq)" in hosts.removed and len(hosts.removed) == 4


def test_the_history_tab_shows_the_deployments_changes_in_words_to_its_team_only(deployment, user):
    edited(deployment, user, hosts=moved_dns1(), dlp_base_port=17600)
    item = deployment.checklist.order_by("number").first()
    item.change_status("requested", user, comment="CHG-42")
    client = signed_in(user)

    # The checklist links its History tab, beside its other actions.
    checklist = client.get(f"/deployments/{deployment.pk}/").content.decode()
    assert f'<a class="button secondary" href="/deployments/{deployment.pk}/history/">History</a>' in checklist

    response = client.get(f"/deployments/{deployment.pk}/history/")
    assert response.status_code == 200
    html = response.content.decode()
    # Newest first: the rule's status, the edit, the creation.
    entries = list(ObjectChange.objects.filter(deployment_id=deployment.pk))
    assert [entry.object_type for entry in entries] == ["rule", "deployment", "deployment"]
    assert entries_shown(html) == [entry.pk for entry in entries]
    status, edit, creation = re.split(r'<li class="change" id="change-\d+">', html)[1:]
    # A status changed outside any request names its user, through the portal itself (a worker's).
    assert "<strong>alice</strong> via The portal itself" in status
    assert f"Rule <strong>rule {item.number}</strong> updated" in status and "Requested" in status
    assert "<strong>alice</strong> via Page" in edit and "Deployment <strong>Mail gateways</strong> updated" in edit
    assert '<code class="request-id"' in edit and "req-0123456789abcdef" in edit
    assert f'<li class="removed">dns dns1 {OLD}</li>' in edit and f'<li class="added">dns dns1 {NEW}</li>' in edit
    assert '<span class="removed">17500</span>' in edit and '<span class="added">17600</span>' in edit
    assert "fsm" not in edit  # only the rows that changed
    assert edit.index("<code>dlp_base_port</code>") < edit.index("<code>hosts</code>")  # the document's order
    assert re.search(r"<strong>the portal</strong>\s+· Deployment", creation)  # no user, no request: the portal's own
    assert "<code>description</code>" not in creation  # blank at its creation: nothing to show
    assert "<time datetime=" in edit  # the pages' one way to write a moment

    # Another team's member: 404 on the tab, none of the entries in their change log.
    mallory = signed_in(make_member("mallory", "Other team"))
    assert mallory.get(f"/deployments/{deployment.pk}/history/").status_code == 404
    theirs = create_deployment({**FULL_DEPLOYMENT, "name": "Elsewhere"}, team="Other team")
    listed = entries_shown(mallory.get("/changes/").content.decode())
    assert listed == list(ObjectChange.objects.filter(deployment_id=theirs.pk).values_list("pk", flat=True))
    assert not set(listed) & {entry.pk for entry in entries}
    assert mallory.get("/changes/", {"deployment": "Mail gateways"}).content.decode().count('class="change"') == 0
    # Not signed in: the login page.
    assert Client().get(f"/deployments/{deployment.pk}/history/").status_code == 302
    assert Client().get("/changes/").status_code == 302


def test_the_change_log_filters_and_says_next_to_a_field_what_does_not_parse(deployment, user):
    edited(deployment, user, hosts=moved_dns1())
    make_member("bob", "Mail team")
    many_entries(deployment, 3)
    client = signed_in(user)
    everything = entries_shown(client.get("/changes/").content.decode())
    assert len(everything) == ObjectChange.objects.count() == 5

    def shown(**query: str) -> list[int]:
        response = client.get("/changes/", query)
        assert response.status_code == 200, query
        return entries_shown(response.content.decode())

    edit = ObjectChange.objects.get(action="updated", object_type="deployment")
    assert shown(user="ALI") == [edit.pk]  # part of the name, any case
    assert len(shown(user="bob")) == 3
    assert len(shown(object_type="rule")) == 3 and shown(object_type="deployment", action="updated") == [edit.pk]
    creation = ObjectChange.objects.get(action="created")
    assert shown(deployment="mail gate", action="created") == [creation.pk]
    assert shown(deployment="nothing like it") == []
    assert len(shown(since=timezone.now().date().isoformat())) == 2  # bob's are from two days ago
    assert shown(since="2000-01-01", user="", object_type="", action="") == everything  # blank fields: no filter

    # A filter that does not parse is said next to its field, and selects nothing.
    for query, field, message in [
        ({"since": "yesterday"}, "since", "Enter a valid date."),
        ({"object_type": "router"}, "object_type", "Select a valid choice. router is not one of the available"),
        ({"action": "exploded", "user": "alice"}, "action", "Select a valid choice."),
    ]:
        response = client.get("/changes/", query)
        html = response.content.decode()
        assert response.status_code == 200 and entries_shown(html) == [], query
        label = re.search(rf'<label class="invalid">[^<]*<(input|select)[^>]*name="{field}".*?</label>', html, re.S)
        assert label and message in label[0], (query, html)
        assert 'role="alert">Fix the filter above' in html


def test_the_pages_go_fifty_entries_at_a_time_keeping_the_filter(deployment, user):
    many_entries(deployment, ENTRIES_PER_PAGE + 10)  # and the deployment's creation: 61 in all
    client = signed_in(user)
    for url in (f"/deployments/{deployment.pk}/history/", "/changes/"):
        first = client.get(url).content.decode()
        newest = list(ObjectChange.objects.values_list("pk", flat=True))
        assert entries_shown(first) == newest[:50]
        assert "Changes 1–50 of 61" in first and "Page 1 of 2 (61 changes)" in first
        assert '<a href="?page=2" rel="next">Next' in first
        second = client.get(url, {"page": 2}).content.decode()
        assert entries_shown(second) == newest[50:] and '<a href="?page=1" rel="prev">' in second
        assert entries_shown(client.get(url, {"page": 99}).content.decode()) == newest[50:]
        assert entries_shown(client.get(url, {"page": "x"}).content.decode()) == newest[:50]
    filtered = client.get("/changes/", {"user": "bob", "page": 2}).content.decode()
    assert '<a href="?user=bob&amp;page=1" rel="prev">' in filtered and len(entries_shown(filtered)) == 10


def test_a_page_of_entries_costs_the_same_queries_whatever_its_length(deployment, user, django_assert_max_num_queries):
    client = signed_in(user)
    urls = [f"/deployments/{deployment.pk}/history/", "/changes/", "/changes/?user=bob&since=2000-01-01"]

    def queries() -> list[int]:
        counts = []
        for url in urls:
            with CaptureQueriesContext(connection) as captured:
                assert client.get(url).status_code == 200
            counts.append(len(captured))
        return counts

    many_entries(deployment, 1)  # one of bob's, for the filtered log to show one
    few = queries()
    many_entries(deployment, ENTRIES_PER_PAGE)
    assert queries() == few
    # The session and its user, the header's teams, the entries' count and page (and on the change
    # log the deployments that still exist among them): no query per entry.
    assert max(few) <= 7, few
    with django_assert_max_num_queries(7):
        client.get("/changes/")


def test_a_deleted_deployments_entries_stay_with_its_name_and_its_last_state(deployment, user):
    pk, name = deployment.pk, deployment.name
    with acting(Actor(ChangeSource.PAGE, user=user)):
        delete_deployment(Deployment.objects.get(pk=pk))
    client = signed_in(user)
    assert client.get(f"/deployments/{pk}/history/").status_code == 404
    html = client.get("/changes/", {"deployment": name}).content.decode()
    deletion, creation = ObjectChange.objects.filter(deployment_id=pk)
    assert entries_shown(html) == [deletion.pk, creation.pk]
    last = html[html.index(f'id="change-{deletion.pk}"') : html.index(f'id="change-{creation.pk}"')]
    assert f"Deployment <strong>{name}</strong> deleted · {name} (deleted)" in last
    assert f"/deployments/{pk}/history/" not in html  # no link to a tab that is gone
    assert f'<li class="removed">dns dns1 {OLD}</li>' in last and "esa1.example.test 127.0.1.1" in last


@in_chromium
@pytest.mark.parametrize("viewport", [DESKTOP, TABLET, PHONE], ids=["desktop", "tablet", "phone"])
def test_an_address_typed_into_the_form_shows_in_the_history_tab_and_the_change_log(lab, browser, viewport):
    deployment, base = lab
    visits = Visits(browser, base, viewport).logged_in("alice")
    page = visits.page
    page.goto(f"{base}/deployments/{deployment.pk}/")
    actions = page.locator(".heading .actions")  # the deployment's actions, beside its name
    actions.get_by_role("link", name="Edit", exact=True).click()
    page.wait_for_url(f"**/deployments/{deployment.pk}/edit/")

    # A person's edit: click into dns1's address, select it, type the new one, save.
    field = page.locator(f"input[name^=hosts-][name$=-address][value='{OLD}']")
    field.click()
    field.press("ControlOrMeta+a")
    field.press_sequentially(NEW)
    page.get_by_role("button", name="Save and show the checklist").click()
    page.locator(".message.success", has_text="Pages lab saved (updated)").wait_for()
    visits.check("change-log-checklist")  # its new link neither overflows nor is too small a target

    # The History tab, through its link: a target of 24 px at least, on the first screen.
    tab = actions.get_by_role("link", name="History", exact=True)
    box = tab.bounding_box()
    assert box["height"] >= 24 and box["width"] >= 24 and box["x"] + box["width"] <= viewport["width"], box
    tab.click()
    page.wait_for_url(f"**/deployments/{deployment.pk}/history/")
    newest = page.locator("li.change").first
    assert "alice via Page" in newest.locator(".change-head").inner_text()
    assert "Deployment Pages lab updated" in newest.locator(".change-head").inner_text()
    assert newest.locator("li.removed").all_inner_texts() == [f"dns dns1 {OLD}"]
    assert newest.locator("li.added").all_inner_texts() == [f"dns dns1 {NEW}"]
    assert re.fullmatch(r"[0-9a-f]{32}", newest.locator(".request-id").inner_text())  # the request's, made up
    visits.check("change-log-history")

    # The change log: a user name typed into its filter and submitted.
    page.get_by_role("link", name="Changes", exact=True).click()
    page.wait_for_url(f"{base}/changes/")
    page.get_by_label("User", exact=True).click()
    page.get_by_label("User", exact=True).press_sequentially("alice")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/changes/?*user=alice*")
    entry = page.locator("li.change", has_text=f"dns dns1 {NEW}")
    assert entry.count() == 1 and f"dns dns1 {OLD}" in entry.locator("li.removed").inner_text()
    assert page.locator("li.change").count() == 1  # the creation was the portal's (a fixture), not alice's
    visits.check("change-log-changes")
    page.close()
