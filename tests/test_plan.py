"""Plan before apply: `?dry_run=true` on a deployment's create, upsert, PUT and PATCH, and the form's
"Preview the changes", answer what the write would do (its outcome, the rules it would add and remove,
with their numbers) and save nothing; the write afterwards does exactly that."""

from __future__ import annotations

import copy
import json

import pytest
from django.apps import apps
from django.core.management import call_command
from django.test import Client as PageClient

from ports.checklist import NumberedRule
from ports.models import ApiToken, ChecklistItem, Deployment
from ports.serializers import RuleSerializer

from .conftest import FULL_DEPLOYMENT, api_key, make_member, token_client
from .test_browser import pytestmark as browser_marks
from .test_one_rule import form_data
from .test_pages import DESKTOP, PHONE, Visits
from .test_schema import Client

# A rule in a plan: its number and the columns of Rule.as_dict(), as the checklist shows them.
PLAN_KEYS = ["number", *RuleSerializer().fields]
IDENTITY = ["requirement", "source", "destination", "protocol", "port_start", "port_end"]


def database() -> dict[str, list[dict]]:
    """Every row of the portal's own tables (the catalog, deployments, their parts, checklists,
    history, rule sets remembered, probes, alerts), to show that a plan wrote none. API tokens
    aside: the request's token notes its use (ApiToken.last_used), whatever the request does."""
    return {
        model._meta.label: list(model.objects.order_by("pk").values())
        for app in ("ports", "probes")
        for model in apps.get_app_config(app).get_models()
        if model is not ApiToken
    }


def rules_of(checklist: dict) -> dict[tuple, dict]:
    """A checklist's rules by identity, each as a plan shows a rule."""
    return {tuple(item[k] for k in IDENTITY): {k: item[k] for k in PLAN_KEYS} for item in checklist["items"]}


def canonical(rules: list[dict]) -> list[str]:
    return sorted(json.dumps(rule, sort_keys=True) for rule in rules)


def came_true(plan: dict, before: dict, after: dict) -> None:
    """The write did exactly what its plan said: these rules added (with these numbers), these
    removed (with theirs), the others kept."""
    old, new = rules_of(before), rules_of(after)
    assert canonical(plan["added"]) == canonical([new[key] for key in new.keys() - old.keys()])
    assert canonical(plan["removed"]) == canonical([old[key] for key in old.keys() - new.keys()])
    assert plan["unchanged"] == len(old.keys() & new.keys())


def planned(response: object, outcome: str) -> dict:
    """The plan of a dry run's answer, after checking its shape and both outcome headers."""
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"dry_run", "outcome", "plan"} and body["dry_run"] is True
    assert body["outcome"] == response.headers["Outcome"] == response.headers["Deployment-Outcome"] == outcome
    for rule in body["plan"]["added"] + body["plan"]["removed"]:
        assert set(rule) == set(PLAN_KEYS)
    return body["plan"]


def test_a_planned_patch_saves_nothing_and_the_patch_then_does_exactly_that(
    deployment, api, django_capture_on_commit_callbacks
):
    url, checklist = f"/api/deployments/{deployment.pk}/", f"/api/deployments/{deployment.pk}/checklist/"
    shown = api.get(checklist)
    before, etag, rows = shown.json(), shown.headers["ETag"], database()
    change = {"dlp_base_port": 18000, "probe_schedule": "hourly"}  # new rules, and a probe schedule

    with django_capture_on_commit_callbacks() as callbacks:
        plan = planned(api.patch(f"{url}?dry_run=true", change, format="json"), "updated")
    assert not callbacks  # nothing left to run after the commit either
    assert database() == rows  # no row, no revision, no rule set remembered, no next probe time
    assert api.get(checklist, HTTP_IF_NONE_MATCH=etag).status_code == 304  # the same ETag: no cache moved
    assert (len(plan["added"]), len(plan["removed"]), plan["unchanged"]) == (9, 9, len(before["items"]) - 9)
    assert {rule["ports"] for rule in plan["added"]} == {"18000-18015"}
    # A removed rule reads as the checklist showed it, number included.
    assert all(rule in rules_of(before).values() for rule in plan["removed"])
    # Added rules take numbers never given: above every number the checklist has had.
    assert min(rule["number"] for rule in plan["added"]) > max(item["number"] for item in before["items"])

    assert api.patch(url, change, format="json").status_code == 200
    came_true(plan, before, api.get(checklist).json())


@pytest.mark.django_db(transaction=True)
def test_a_planned_create_leaves_no_trace_even_as_its_own_transaction(django_capture_on_commit_callbacks):
    """With no test transaction around it, the plan's transaction is the outermost: rolled back, it
    leaves no row, and no callback waiting for a commit runs."""
    call_command("load_catalog", verbosity=0)
    api = token_client(make_member("planner", "Mail team"))
    document, rows = copy.deepcopy(FULL_DEPLOYMENT), database()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        plan = planned(api.post("/api/deployments/?dry_run=true", document, format="json"), "created")
    assert not callbacks and database() == rows and not Deployment.objects.exists()
    assert plan["removed"] == [] and plan["unchanged"] == 0
    numbers = sorted({rule["number"] for rule in plan["added"]})
    assert numbers == list(range(1, len(numbers) + 1))  # a new checklist's numbers, from 1

    created = api.post("/api/deployments/", document, format="json")
    assert created.status_code == 201
    came_true(plan, {"items": []}, api.get(f"/api/deployments/{created.json()['id']}/checklist/").json())


def test_a_planned_upsert_says_unchanged_created_or_updated(deployment, api, full_document):
    plan = planned(api.post("/api/deployments/upsert/?dry_run=true", full_document, format="json"), "unchanged")
    assert plan == {"added": [], "removed": [], "unchanged": deployment.checklist.count()}

    other = {**full_document, "name": "Another"}
    assert planned(api.post("/api/deployments/upsert/?dry_run=true", other, format="json"), "created")["added"]
    assert not Deployment.objects.filter(name="Another").exists()

    # One DNS server less: its rules go, with their numbers.
    full_document["hosts"] = [host for host in full_document["hosts"] if host["name"] != "dns2"]
    checklist = f"/api/deployments/{deployment.pk}/checklist/"
    before = api.get(checklist).json()
    plan = planned(api.post("/api/deployments/upsert/?dry_run=true", full_document, format="json"), "updated")
    assert plan["added"] == [] and {rule["destination"] for rule in plan["removed"]} == {"127.0.4.10"}
    assert api.post("/api/deployments/upsert/", full_document, format="json").headers["Outcome"] == "updated"
    came_true(plan, before, api.get(checklist).json())


def test_a_planned_put_is_the_put(deployment, api, full_document):
    url, checklist = f"/api/deployments/{deployment.pk}/", f"/api/deployments/{deployment.pk}/checklist/"
    planned(api.put(f"{url}?dry_run=true", full_document, format="json"), "unchanged")
    full_document["appliances"][2]["p1_address"] = "127.0.2.9"  # esa3's data address moves
    before, rows = api.get(checklist).json(), database()
    plan = planned(api.put(f"{url}?dry_run=true", full_document, format="json"), "updated")
    assert database() == rows
    assert {"127.0.2.9"} <= {rule["destination"] for rule in plan["added"]} | {rule["source"] for rule in plan["added"]}
    assert {"127.0.2.3"} <= {rule["destination"] for rule in plan["removed"]} | {r["source"] for r in plan["removed"]}
    assert api.put(url, full_document, format="json").status_code == 200
    came_true(plan, before, api.get(checklist).json())


def test_a_plan_validates_as_the_write_does(deployment, api, full_document):
    url = f"/api/deployments/{deployment.pk}/"
    rows = database()
    bad = [
        ("post", "/api/deployments/", full_document),  # the name is taken
        ("post", "/api/deployments/upsert/", {"features": ["dlp"]}),  # no name
        ("patch", url, {"dlp_base_port": 17430}),  # the range overlaps 17443 and 17444
        ("put", url, {**full_document, "appliances": [{"hostname": "esa1", "c_address": "300.1.1.1"}]}),
        ("patch", url, {"colour": "blue"}),  # a field nobody knows
    ]
    for method, path, body in bad:
        plan = getattr(api, method)(f"{path}?dry_run=true", body, format="json")
        write = getattr(api, method)(path, body, format="json")
        assert plan.status_code == write.status_code == 400, (path, plan.content)
        assert plan.json() == write.json(), (path, plan.json(), write.json())
        assert "Outcome" not in plan.headers
    assert database() == rows


def test_dry_run_is_a_boolean_of_the_query_only(deployment, api):
    url = f"/api/deployments/{deployment.pk}/"
    rows = database()
    misspelt = api.patch(f"{url}?dry_run=ture", {"dlp_base_port": 18000}, format="json")
    assert misspelt.status_code == 400 and misspelt.json() == {"dry_run": ["Must be a valid boolean."]}
    # In the body it is no parameter: an unknown field, refused (never the write done for real).
    in_body = api.patch(url, {"dlp_base_port": 18000, "dry_run": True}, format="json")
    assert in_body.status_code == 400 and list(in_body.json()) == ["dry_run"]
    assert database() == rows
    done = api.patch(f"{url}?dry_run=false", {"dlp_base_port": 18000}, format="json")
    assert done.status_code == 200 and done.json()["outcome"] == "updated"
    assert Deployment.objects.get(pk=deployment.pk).dlp_base_port == 18000


def test_another_teams_deployment_is_not_planned_either(deployment, other_api):
    url = f"/api/deployments/{deployment.pk}/?dry_run=true"
    assert other_api.patch(url, {"dlp_base_port": 18000}, format="json").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_the_plans_match_the_schema(live_server):
    """Each plan's answer, from a real server, validated against /api/schema/ (openapi-core)."""
    call_command("load_catalog", verbosity=0)
    user = make_member("provisioner", "Mail team")
    api = Client(live_server.url, api_key(user))
    document = copy.deepcopy(FULL_DEPLOYMENT)
    api.call("POST", "/api/deployments/?dry_run=true", 200, json=document)
    api.call("POST", "/api/deployments/upsert/?dry_run=true", 200, json=document)
    pk = api.call("POST", "/api/deployments/upsert/", 201, json=document).json()["id"]
    api.call("POST", "/api/deployments/upsert/?dry_run=true", 200, json=document)
    api.call("PATCH", f"/api/deployments/{pk}/?dry_run=true", 200, json={"dlp_base_port": 18000})
    api.call("PUT", f"/api/deployments/{pk}/?dry_run=true", 200, json=document)
    api.call("PATCH", f"/api/deployments/{pk}/", 200, json={"dlp_base_port": 18000})
    schema = api.schema["paths"]
    for path, method in [
        ("/api/deployments/", "post"),
        ("/api/deployments/upsert/", "post"),
        ("/api/deployments/{id}/", "put"),
        ("/api/deployments/{id}/", "patch"),
    ]:
        operation = schema[path][method]
        assert "dry_run" in [parameter["name"] for parameter in operation["parameters"]], (path, method)
        assert {"Outcome", "Deployment-Outcome"} <= set(operation["responses"]["200"]["headers"]), (path, method)
        assert "Plan" in json.dumps(operation["responses"]["200"]["content"]), (path, method)


# --- The browser form -------------------------------------------------------------------


def in_the_browser(test: object) -> object:
    """The browser tests' marks (Chromium and Redis, test_browser.pytestmark), on one test: the
    API's tests of this file need neither."""
    for mark in browser_marks:
        test = mark(test)
    return test


def lines_of(items: list[ChecklistItem]) -> list[str]:
    """Rules as the form's plan lists them: "#12 127.0.0.1 → 127.0.4.2 9449/tcp: purpose"."""
    return sorted(str(NumberedRule(item.number, item.rule)) for item in items)


def items_by_key(deployment: Deployment) -> dict[str, ChecklistItem]:
    return {item.key: item for item in deployment.checklist.select_related("requirement")}


def shown(page: object, list_id: str) -> list[str]:
    found = page.locator(f"#{list_id} li")
    return sorted(found.all_inner_texts()) if found.count() else []


@in_the_browser
def test_the_form_previews_its_changes_saves_nothing_then_saves_exactly_them(lab, browser):
    deployment, base = lab
    visits = Visits(browser, base, DESKTOP).logged_in("alice")
    page = visits.page
    before, rows = items_by_key(deployment), database()

    # Nothing typed: nothing changes.
    page.goto(f"{base}/deployments/{deployment.pk}/edit/")
    page.get_by_role("button", name="Preview the changes").click()
    plan = page.get_by_role("region", name="What saving would change")
    plan.wait_for()
    assert "Nothing changes" in plan.inner_text() and f"its {len(before)} rules" in plan.inner_text()

    # A moved DLP range and a third DNS server, typed, then previewed.
    page.fill("#id_dlp_base_port", "18000")
    hosts = page.locator("fieldset", has_text="Hosts of the other roles")
    hosts.get_by_role("button", name="Add a row").click()
    row = hosts.locator("tbody tr").count() - 1
    page.select_option(f"#id_hosts-{row}-role", "dns")
    page.fill(f"#id_hosts-{row}-name", "dns3")
    page.fill(f"#id_hosts-{row}-address", "127.0.4.12")
    page.get_by_role("button", name="Preview the changes").click()
    page.get_by_role("heading", name="Rules added").wait_for()
    added, removed = shown(page, "plan-added"), shown(page, "plan-removed")
    text = plan.inner_text()
    assert f"{len(added)} rules added, {len(removed)} removed" in text and "Nothing is saved yet" in text
    assert len(removed) == 9 and any("127.0.4.12" in line for line in added)
    assert page.get_by_role("heading", name=f"Rules removed ({len(removed)})").is_visible()
    # Nothing saved; what was typed stays in the form.
    assert database() == rows
    assert page.input_value("#id_dlp_base_port") == "18000" and page.input_value(f"#id_hosts-{row}-name") == "dns3"
    visits.check("form-plan")

    page.get_by_role("button", name="Save and show the checklist").click()
    page.locator(".message.success", has_text="Pages lab saved (updated)").wait_for()
    after = items_by_key(deployment)
    assert added == lines_of([after[key] for key in after.keys() - before.keys()])
    assert removed == lines_of([before[key] for key in before.keys() - after.keys()])


@in_the_browser
def test_a_new_deployment_is_previewed_on_a_phone_errors_as_before(lab, browser):
    _, base = lab
    visits = Visits(browser, base, PHONE).logged_in("alice")
    page = visits.page
    page.goto(f"{base}/deployments/new/")
    page.fill("#id_name", "Preview lab")
    for name, value in {"hostname": "esa9", "c_address": "127.0.60.1", "p1_address": "300.1.1.1"}.items():
        page.fill(f"#id_appliances-0-{name}", value)
    page.select_option("#id_hosts-0-role", "dns")
    page.fill("#id_hosts-0-name", "dns")
    page.fill("#id_hosts-0-address", "127.0.60.3")

    # A bad address: said in place, as a save says it, and no plan.
    page.get_by_role("button", name="Preview the changes").click()
    page.locator("td.invalid .error").first.wait_for()
    assert page.get_by_role("region", name="What saving would change").count() == 0

    page.fill("#id_appliances-0-p1_address", "127.0.60.2")
    page.get_by_role("button", name="Preview the changes").click()
    plan = page.get_by_role("region", name="What saving would change")
    plan.wait_for()
    added = shown(page, "plan-added")
    assert "Saving creates the deployment" in plan.inner_text() and added and not shown(page, "plan-removed")
    assert added[0].startswith("#1 ")  # sorted as text; a new checklist's numbers start at 1
    assert not Deployment.objects.filter(name="Preview lab").exists()
    assert page.input_value("#id_name") == "Preview lab"
    visits.check("form-plan-new")

    page.get_by_role("button", name="Save and show the checklist").click()
    page.locator(".message.success", has_text="Preview lab saved (created)").wait_for()
    created = Deployment.objects.get(name="Preview lab")
    assert added == lines_of(list(items_by_key(created).values()))


def test_the_form_preview_is_a_plain_post_that_keeps_the_form_and_saves_nothing(deployment, user, full_document):
    """The preview is the form's own: a POST with `preview`, answered with the page (no redirect)."""
    page = PageClient()
    page.force_login(user)
    url = f"/deployments/{deployment.pk}/edit/"
    data, rows = form_data({**full_document, "dlp_base_port": 18000}), database()
    response = page.post(url, {**data, "preview": "1"})
    assert response.status_code == 200 and response.context["plan"].outcome == "updated"
    html = response.content.decode()
    assert 'value="18000"' in html and '<h2 id="plan-heading">What saving would change</h2>' in html
    assert database() == rows
    assert page.post(url, data).status_code == 302  # the same form, saved
    assert Deployment.objects.get(pk=deployment.pk).dlp_base_port == 18000
