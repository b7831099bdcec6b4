"""The admins' browser pages: deployments, their checklist, the catalog.

Pages are rendered on the server; the checklist's buttons call the REST API (session and
CSRF) from a little JavaScript in static/checklist.js.
"""

from __future__ import annotations

from collections import Counter

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count, Max
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.html import format_html_join
from rest_framework.exceptions import ValidationError

from probes.models import ProbeResult, ProbeRun, WorkerHeartbeat

from .choices import CatalogTable, Feature, Interface, ItemStatus, Protocol, Role
from .deployments import save_deployment
from .exports import FAILING_STATES
from .filters import ChecklistItemFilterSet, RequirementFilterSet
from .forms import ROWS, DeploymentForm, document_of, formsets_for, show_errors
from .models import CatalogVersion, ChecklistItem, Deployment, Requirement, Team
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
    deployments = Deployment.objects.for_user(request.user).select_related("team", "catalog_version")
    page = Paginator(deployments.order_by("team__name", "name"), 50).get_page(request.GET.get("page"))
    shown = {deployment.pk: deployment for deployment in page}
    # One grouped query per figure, for the page's deployments only: joining items, results and
    # runs in one query multiplies their rows, and grows with the square of the team's rules.
    counts = ChecklistItem.objects.filter(deployment__in=shown).order_by().values_list("deployment", "status")
    by_status: dict[int, Counter] = {pk: Counter() for pk in shown}
    for pk, status, n in counts.annotate(n=Count("pk")):
        by_status[pk][status] = n
    failing = ProbeResult.objects.filter(item__deployment__in=shown, is_latest=True, state__in=FAILING_STATES)
    failing = dict(failing.order_by().values_list("item__deployment").annotate(n=Count("pk")))
    last_run = ProbeRun.objects.filter(deployment__in=shown).order_by().values_list("deployment")
    last_run = dict(last_run.annotate(last=Max("created")))
    for pk, deployment in shown.items():
        deployment.total = sum(by_status[pk].values())
        deployment.count_verified = by_status[pk][ItemStatus.VERIFIED]
        deployment.failing, deployment.last_run = failing.get(pk, 0), last_run.get(pk)
    return render(request, "ports/deployment_list.html", {"deployments": page, "page": page})


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
    formsets = formsets_for(request.POST or None, initial)
    if request.method == "POST" and form.is_valid() and all(f.is_valid() for f in formsets.values()):
        document, rows = document_of(form, formsets)
        try:
            saved = save_deployment(document, user=request.user, instance=deployment)
        except ValidationError as invalid:
            show_errors(invalid.detail, form, formsets, rows)
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
