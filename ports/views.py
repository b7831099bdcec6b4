"""The admins' browser pages: deployments, their checklist, the catalog.

Pages are rendered on the server; the checklist's buttons call the REST API (session and
CSRF) from a little JavaScript in static/checklist.js.
"""

from __future__ import annotations

from collections import Counter

from django import forms
from django.contrib.auth.decorators import login_required
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.html import format_html_join
from rest_framework.exceptions import ValidationError

from probes.models import ProbeResult, ProbeRun, WorkerHeartbeat

from .choices import HOST_ROLES, NETWORK_ROLES, CatalogTable, Feature, Interface, ItemStatus, Protocol, Role
from .deployments import save_deployment
from .exports import FAILING_STATES
from .filters import ChecklistItemFilterSet, RequirementFilterSet
from .models import CatalogVersion, Deployment, Requirement, Team
from .rules import TO_APPLIANCE
from .scoping import team_deployment
from .serializers import DeploymentSerializer

SORTS = {
    "position": ["position"],
    "source": ["source", "position"],
    "destination": ["destination", "position"],
    "port": ["port_start", "position"],
    "status": ["status", "position"],
}


@login_required
def deployment_list(request: HttpRequest) -> HttpResponse:
    # Subqueries, not joins: joining items, results and runs at once multiplies their rows.
    failing = (
        ProbeResult.objects.filter(item__deployment=OuterRef("pk"), is_latest=True, state__in=FAILING_STATES)
        .order_by()
        .values("item__deployment")
        .annotate(n=Count("pk"))
        .values("n")
    )
    last_run = ProbeRun.objects.filter(deployment=OuterRef("pk")).order_by("-created").values("created")[:1]
    deployments = list(
        Deployment.objects.for_user(request.user)
        .select_related("team", "catalog_version")
        .with_status_counts()
        .annotate(failing=Coalesce(Subquery(failing), 0), last_run=Subquery(last_run))
    )
    for deployment in deployments:
        deployment.total = sum(deployment.status_counts().values())
    return render(request, "ports/deployment_list.html", {"deployments": deployments})


class DeploymentForm(forms.Form):
    team = forms.ModelChoiceField(queryset=Team.objects.none(), to_field_name="name")
    name = forms.CharField(max_length=100)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    dlp_base_port = forms.IntegerField(initial=17500, label="DLP base port")
    features = forms.MultipleChoiceField(choices=Feature.choices, widget=forms.CheckboxSelectMultiple, required=False)


class ApplianceForm(forms.Form):
    hostname = forms.CharField(required=False)
    c_address = forms.CharField(required=False, label="C address")
    p1_address = forms.CharField(required=False, label="P1 address")
    p2_address = forms.CharField(required=False, label="P2 address")
    site = forms.CharField(required=False, initial="default")


class HostForm(forms.Form):
    role = forms.ChoiceField(choices=[("", "—")] + [(r.value, r.label) for r in HOST_ROLES], required=False)
    name = forms.CharField(required=False)
    address = forms.CharField(required=False)
    site = forms.CharField(required=False, initial="default")


class NetworkForm(forms.Form):
    role = forms.ChoiceField(choices=[("", "—")] + [(r.value, r.label) for r in NETWORK_ROLES], required=False)
    name = forms.CharField(required=False)
    network = forms.CharField(required=False, help_text='CIDR or "any"')
    site = forms.CharField(required=False, initial="default")


ROWS = {
    "appliances": (ApplianceForm, "hostname", 2),
    "hosts": (HostForm, "name", 3),
    "peer_networks": (NetworkForm, "name", 1),
}


def _formsets(data: object, initial: dict[str, list[dict]]) -> dict[str, forms.BaseFormSet]:
    return {
        prefix: forms.formset_factory(form, extra=extra)(data, prefix=prefix, initial=initial.get(prefix))
        for prefix, (form, _, extra) in ROWS.items()
    }


def _document(form: DeploymentForm, formsets: dict[str, forms.BaseFormSet]) -> tuple[dict, dict[str, list[int]]]:
    """The API document the forms describe, and which form row each list entry came from."""
    document = {**form.cleaned_data, "team": form.cleaned_data["team"].name}
    rows: dict[str, list[int]] = {}
    for prefix, formset in formsets.items():
        key = ROWS[prefix][1]
        entries = [(i, f.cleaned_data) for i, f in enumerate(formset.forms) if f.cleaned_data.get(key)]
        rows[prefix] = [i for i, _ in entries]
        document[prefix] = [{k: v or None if k.endswith("_address") else v for k, v in d.items()} for _, d in entries]
        for entry in document[prefix]:
            entry["site"] = entry.get("site") or "default"
    return document, rows


def _show_errors(errors: dict, form: DeploymentForm, formsets: dict, rows: dict[str, list[int]]) -> None:
    """Put the API's field errors in place on the forms."""
    for field, messages in errors.items():
        if field in formsets:
            if isinstance(messages, list) and messages and isinstance(messages[0], dict):
                for index, row_errors in enumerate(messages):
                    for name, text in row_errors.items():
                        formsets[field].forms[rows[field][index]].add_error(
                            name if name != "non_field_errors" else None, text
                        )
            else:
                form.add_error(None, f"{field}: {' '.join(map(str, messages))}")
        elif field in form.fields:
            form.add_error(field, messages)
        else:
            form.add_error(None, f"{field}: {messages}")


@login_required
def deployment_form(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    deployment = team_deployment(request.user, pk) if pk else None
    teams = Team.objects.filter(members=request.user)
    initial: dict = {}
    if deployment:
        current = DeploymentSerializer(deployment).data
        initial = {prefix: current[prefix] for prefix in ROWS}
    else:
        only_team = teams.first() if len(teams) == 1 else None
        current = {"features": [Feature.PEM, Feature.SMD], "team": only_team.name if only_team else None}
    form = DeploymentForm(request.POST or None, initial=current)
    form.fields["team"].queryset = teams
    formsets = _formsets(request.POST or None, initial)
    if request.method == "POST" and form.is_valid() and all(f.is_valid() for f in formsets.values()):
        document, rows = _document(form, formsets)
        try:
            saved = save_deployment(document, user=request.user, instance=deployment)
        except ValidationError as invalid:
            _show_errors(invalid.detail, form, formsets, rows)
        else:
            return redirect("checklist", pk=saved.deployment.pk)
    return render(request, "ports/deployment_form.html", {"form": form, "formsets": formsets, "deployment": deployment})


@login_required
def checklist(request: HttpRequest, pk: int) -> HttpResponse:
    deployment = team_deployment(request.user, pk)
    items = ChecklistItemFilterSet(request.GET, deployment.checklist.prefetch_related("requirement")).qs
    items = list(items.with_latest_probe().order_by(*SORTS.get(request.GET.get("sort"), SORTS["position"])))
    result = request.GET.get("result")
    if result:
        items = [item for item in items if (item.latest_probe.state if item.latest_probe else "not_probed") == result]
    group = request.GET.get("group", "direction")
    groups: dict[str, list] = {}
    # The five status buttons, rendered once per status rather than once per row.
    buttons = {
        current: format_html_join(
            "",
            '<button type="button" data-status="{}" aria-pressed="{}">{}</button>',
            ((value, "true" if value == current else "false", label) for value, label in ItemStatus.choices),
        )
        for current in ItemStatus.values
    }
    for item in items:
        item.status_buttons = buttons[item.status]
        if group == "role":
            label = f"To {item.get_destination_role_display()}"
        else:
            label = "Into the appliances" if item.rule.direction == TO_APPLIANCE else "Out of the appliances"
        groups.setdefault(label, []).append(item)
    latest = ProbeResult.objects.filter(item__deployment=deployment, is_latest=True)
    all_latest = Counter(latest.values_list("state", flat=True))
    statuses = Counter(deployment.checklist.values_list("status", flat=True))
    total = sum(statuses.values())
    sites = sorted(set(deployment.checklist.values_list("source_site", flat=True)))
    live = WorkerHeartbeat.objects.live_sites()
    return render(
        request,
        "ports/checklist.html",
        {
            "deployment": deployment,
            "groups": groups,
            "count": len(items),
            "total": total,
            "status_counts": [(s.value, s.label, statuses.get(s.value, 0)) for s in ItemStatus],
            "result_counts": [*sorted(all_latest.items()), ("not probed", total - sum(all_latest.values()))],
            "max_count": max([*statuses.values(), *all_latest.values(), 1]),
            "statuses": ItemStatus.choices,
            "roles": Role.choices,
            "results": [(s, s) for s in ("open", *sorted(FAILING_STATES), "unverifiable", "not_probed")],
            "sites": [(site, site in live) for site in sites],
            "last_run": ProbeRun.objects.filter(deployment=deployment).first(),
            "query": request.GET,
        },
    )


@login_required
def catalog(request: HttpRequest) -> HttpResponse:
    versions = CatalogVersion.objects.select_related("product").order_by("product__name", "-loaded_at")
    version = (
        versions.filter(pk=request.GET.get("version")).first() if request.GET.get("version", "").isdigit() else None
    )
    version = version or CatalogVersion.objects.current().select_related("product").first()
    params = request.GET.copy()
    search = params.pop("search", [""])[-1].strip()
    if search.isdigit():
        params["port"] = search  # "which rule is 17510?"
    elif search:
        params["q"] = search
    params.pop("version", None)
    filterset = RequirementFilterSet(params, Requirement.objects.filter(version=version).select_related("version"))
    requirements = filterset.qs if filterset.is_valid() else Requirement.objects.none()
    return render(
        request,
        "ports/catalog.html",
        {
            "versions": versions,
            "version": version,
            "requirements": requirements,
            "search": search,
            "query": request.GET,
            "tables": CatalogTable.choices,
            "interfaces": Interface.choices,
            "roles": Role.choices,
            "protocols": Protocol.choices,
            "errors": filterset.errors,
        },
    )
