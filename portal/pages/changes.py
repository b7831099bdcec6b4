"""The change log in the browser: a deployment's History tab and the team change log (/changes/).

Both list ObjectChange entries newest first, a page at a time, each with its diff in words
(`field_changes`): for a list of rows (a deployment's appliances, hosts, peer networks, features)
the rows that came and went, not two JSON documents; for any other field its two values. The
templates only show what this module gives them (ports/_change.html renders one entry).
"""

from __future__ import annotations

import datetime
import json
from collections import Counter
from dataclasses import dataclass, field

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from ports.choices import ChangeAction, ChangedObject, ChangeSource, ItemStatus
from ports.models import ChangeRequest, Deployment, Membership, ObjectChange
from ports.scoping import team_deployment
from ports.serializers import ApplianceSerializer, DeploymentSerializer, HostSerializer, PeerNetworkSerializer
from probes.models import AlertChannel, TlsPin

ENTRIES_PER_PAGE = 50
# Values that say nothing: a creation's blank fields (None before, "" after) are no change to show.
BLANK: tuple[object, ...] = (None, "", [], {})
# Values shown by their label rather than their stored value, by object type and field.
VALUE_LABELS: dict[tuple[str, str], dict[str, str]] = {
    (ChangedObject.RULE, "status"): dict(ItemStatus.choices),
}
# The order a document writes its fields and its rows' fields in, which the entry's JSON may not
# keep (PostgreSQL's jsonb orders keys by length): a host reads "dns dns1 127.0.4.9" on every
# database. Fields not named here come after, by name.
FIELD_ORDER: dict[str, list[str]] = {
    ChangedObject.DEPLOYMENT: DeploymentSerializer.Meta.fields,
    ChangedObject.RULE: ["status", "comment"],
    ChangedObject.TLS_PIN: list(TlsPin.LOGGED),
    ChangedObject.ALERT_CHANNEL: list(AlertChannel.LOGGED),
    ChangedObject.MEMBERSHIP: list(Membership.LOGGED),
    ChangedObject.CHANGE_REQUEST: [*ChangeRequest.FIELDS, "state", "rules", "comment"],
}
ROW_ORDER: dict[str, list[str]] = {
    "appliances": ApplianceSerializer.Meta.fields,
    "hosts": HostSerializer.Meta.fields,
    "peer_networks": PeerNetworkSerializer.Meta.fields,
}


@dataclass(frozen=True)
class FieldChange:
    """One field of an entry's diff, in words: for a list, the rows removed and added (as short
    text, "dns dns1 127.0.4.9"); for anything else, its value before and after."""

    name: str
    before: str = ""
    after: str = ""
    removed: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    is_list: bool = False


def in_order(names: list[str], order: list[str]) -> list[str]:
    """`names` in `order`, those it does not name after them by name."""
    return [*(name for name in order if name in names), *sorted(name for name in names if name not in order)]


def row_text(row: object, order: list[str]) -> str:
    """A list's row as one short line: a deployment's host {"role": "dns", "name": "dns1",
    "address": "127.0.4.9", "site": "default"} is "dns dns1 127.0.4.9". Empty values are left
    out, and the site when it is the default one, which every row has unless told otherwise."""
    if isinstance(row, dict):
        words = [
            f"(site {row[name]})" if name == "site" else value_text(row[name])
            for name in in_order(list(row), order)
            if row[name] not in (None, "", []) and not (name == "site" and row[name] == "default")
        ]
        return " ".join(words)
    return value_text(row)


def value_text(value: object) -> str:
    """A scalar as people read it: strings as they are, nothing as "" (the page shows a dash),
    the rest as JSON (true, 17500)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def list_change(name: str, before: list | None, after: list | None) -> FieldChange:
    """The rows of a list that went and came, each as row_text, in their lists' order. Rows are
    counted, not just compared: a list that held a row twice and now holds it once lost one."""
    order = ROW_ORDER.get(name, [])
    old, new = [row_text(row, order) for row in before or []], [row_text(row, order) for row in after or []]
    gone, came = Counter(old) - Counter(new), Counter(new) - Counter(old)
    return FieldChange(name, removed=taken(old, gone), added=taken(new, came), is_list=True)


def taken(rows: list[str], counts: Counter[str]) -> list[str]:
    """The rows of `rows` that `counts` names, as many times as it says, in the rows' order."""
    left, found = counts.copy(), []
    for row in rows:
        if left[row] > 0:
            left[row] -= 1
            found.append(row)
    return found


def field_changes(entry: ObjectChange) -> list[FieldChange]:
    """An entry's diff (ObjectChange.diff) in words. A creation has every field as added and a
    deletion every field as removed: a deleted deployment's last entry shows its last state."""
    changes, diff = [], entry.diff
    for name in in_order(list(diff), FIELD_ORDER.get(entry.object_type, list(diff))):
        before, after = diff[name]["before"], diff[name]["after"]
        if before in BLANK and after in BLANK:
            continue
        if isinstance(before, list) or isinstance(after, list):
            changes.append(list_change(name, before, after))
            continue
        labels = VALUE_LABELS.get((entry.object_type, name), {})
        shown = [labels.get(value, value) if isinstance(value, str) else value for value in (before, after)]
        changes.append(FieldChange(name, before=value_text(shown[0]), after=value_text(shown[1])))
    return changes


def entries_page(request: HttpRequest, entries: QuerySet[ObjectChange]) -> Page:
    """A page of entries (`page` of the query), each with its diff in words (`entry.changes`), who
    made it (`entry.who`) and through what (`entry.through`): two queries however many entries it
    shows, its count and its rows."""
    page = Paginator(entries, ENTRIES_PER_PAGE).get_page(request.GET.get("page"))
    for entry in page:
        entry.changes = field_changes(entry)
        entry.who = entry.user_name or "the portal"  # no user: the portal's own work
        # "the portal via The portal itself" says it twice; a user's change in a worker keeps it.
        alone = not entry.user_name and entry.source == ChangeSource.PORTAL
        entry.through = "" if alone else entry.get_source_display()
    return page


def page_query(request: HttpRequest) -> str:
    """The query the pager's links keep (the filters), without the page."""
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


@login_required
def deployment_history(request: HttpRequest, pk: int) -> HttpResponse:
    """A deployment's History tab: its entries (its own, its rules', its TLS pins'), newest first."""
    deployment = team_deployment(request.user, pk)
    entries = ObjectChange.objects.for_user(request.user).filter(deployment_id=deployment.pk)
    context = {"deployment": deployment, "page": entries_page(request, entries), "query": page_query(request)}
    return render(request, "ports/history.html", context)


class ChangeFilter(forms.Form):
    """The change log's filters, as the page's GET form sends them: every field may be blank."""

    deployment = forms.CharField(required=False, max_length=100, label="Deployment")
    object_type = forms.ChoiceField(required=False, choices=[("", "any"), *ChangedObject.choices], label="Object")
    action = forms.ChoiceField(required=False, choices=[("", "any"), *ChangeAction.choices], label="Action")
    user = forms.CharField(required=False, max_length=150, label="User")
    since = forms.DateField(required=False, label="Since (UTC)", widget=forms.DateInput(attrs={"type": "date"}))

    def entries(self, entries: QuerySet[ObjectChange]) -> QuerySet[ObjectChange]:
        """`entries` as the valid form filters them; none if it is not valid (its errors say why)."""
        if not self.is_valid():
            return entries.none()
        given = self.cleaned_data
        # Names as people type them: part of the name, any case ("mail" finds "Mail gateways").
        if given["deployment"]:
            entries = entries.filter(deployment_name__icontains=given["deployment"].strip())
        if given["user"]:
            entries = entries.filter(user_name__icontains=given["user"].strip())
        if given["object_type"]:
            entries = entries.filter(object_type=given["object_type"])
        if given["action"]:
            entries = entries.filter(action=given["action"])
        if given["since"]:  # a day of the times the pages show, which are UTC
            start = datetime.datetime.combine(given["since"], datetime.time.min, tzinfo=datetime.UTC)
            entries = entries.filter(time__gte=start)
        return entries


@login_required
def changes(request: HttpRequest) -> HttpResponse:
    """The change log of the user's teams, newest first, filtered by the form above it. Entries of
    a deleted deployment stay, with its name; only those of a deployment that still exists link
    to its History tab (one query for the page, whatever its length)."""
    form = ChangeFilter(request.GET)
    entries = form.entries(ObjectChange.objects.for_user(request.user).select_related("team"))
    page = entries_page(request, entries)
    ids = {entry.deployment_id for entry in page if entry.deployment_id is not None}
    existing = set(Deployment.objects.for_user(request.user).filter(pk__in=ids).values_list("pk", flat=True))
    for entry in page:
        entry.deployment_exists = entry.deployment_id in existing
    context = {"form": form, "page": page, "query": page_query(request), "filtered": form.has_changed()}
    return render(request, "ports/changes.html", context)
