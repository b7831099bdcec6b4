"""The admins' browser pages: deployments, their checklist, the catalog.

Pages are rendered on the server; the checklist's buttons call the REST API (session and
CSRF) from a little JavaScript in static/checklist.js, which then swaps in the rows they
changed as the server renders them (checklist_rows): a row has one renderer, ports/_row.html.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from operator import itemgetter

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import caches
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import F, OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.template.defaultfilters import pluralize
from django.template.loader import get_template, render_to_string
from django.urls import reverse
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_POST
from rest_framework.exceptions import ValidationError

from portal.api.filters import OPENED_FAILING, ChecklistItemFilterSet, RequirementFilterSet, filters_given
from ports.choices import CatalogTable, Feature, Interface, ItemStatus, Protocol, Role, TeamRole
from ports.deployments import Plan, Saved, delete_deployment, plan_save, save_deployment
from ports.exports.firewall import SYNTAXES
from ports.forms import ROWS, DeploymentForm, document_of, formsets_for, show_errors
from ports.models import CatalogVersion, ChecklistCounts, ChecklistItem, Deployment, Requirement, Team
from ports.rows import RENDERED_ROWS, by_item, items_among, kind_of, read_versions
from ports.scoping import team_deployment
from ports.serializers import DeploymentSerializer
from probes.choices import FAILING_STATES, STATE_MEANINGS, STATE_TONES, ProbeState, RunStatus
from probes.models import ProbeRun, WorkerHeartbeat
from probes.stops import stopping_devices
from probes.worker import site_queue

# The checklist's sorts: `sort=port`, or `sort=-port` for descending; then by rule number.
SORTS = {
    "number": ["number"],
    "source": ["source_key"],
    "destination": ["destination_key"],
    "port": ["port_start", "port_end"],
    "protocol": ["protocol"],
    "status": ["status"],
    "result": ["current_probe__state"],
}
# The checklist's default order: by rule number, then id, as its index (checklistitem_by_number) is.
DEFAULT_ORDER = ["number", "pk"]
PAGE_SIZES = [25, 50, 100, 250, 500]
SORT_LABELS = [
    ("number", "Rule number"),
    ("source", "Source"),
    ("destination", "Destination"),
    ("port", "Port"),
    ("protocol", "Protocol"),
    ("status", "Status"),
    ("result", "Latest probe"),
]
COLUMNS = [
    ("number", "#"),
    ("source", "Source"),
    ("destination", "Destination"),
    ("port", "Port"),
    ("why", "Why"),
    ("status", "Status"),
    ("result", "Latest probe"),
]


@login_required
def deployment_list(request: HttpRequest) -> HttpResponse:
    deployments = Deployment.objects.for_user(request.user).select_related("team", "catalog_version")
    page = Paginator(deployments.order_by("team__name", "name"), 50).get_page(request.GET.get("page"))
    shown = {deployment.pk: deployment for deployment in page}
    counts = ChecklistCounts.of(shown.values())
    # Each deployment's latest run, whatever its end: a failed run probed nothing, "0 failing" would be false.
    latest = ProbeRun.objects.filter(deployment=OuterRef("pk")).order_by("-created")
    last_runs = Deployment.objects.filter(pk__in=shown).annotate(
        run_created=Subquery(latest.values("created")[:1]), run_status=Subquery(latest.values("status")[:1])
    )
    last_run = {
        pk: (created, status) for pk, created, status in last_runs.values_list("pk", "run_created", "run_status")
    }
    for pk, deployment in shown.items():
        deployment.total, deployment.count_verified = counts[pk].total, counts[pk].statuses[ItemStatus.VERIFIED]
        deployment.failing, deployment.probed = counts[pk].in_states(FAILING_STATES), counts[pk].probed
        created, status = last_run.get(pk, (None, None))
        deployment.last_run, deployment.last_run_status = created, status and RunStatus(status).label
        deployment.last_run_bad = status in (RunStatus.FAILED, RunStatus.PARTLY_DONE, RunStatus.CANCELLED)
    return render(request, "ports/deployment_list.html", {"deployments": page, "page": page})


@login_required
def deployment_form(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    deployment = team_deployment(request.user, pk, TeamRole.EDITOR) if pk else None
    teams = Team.objects.for_user(request.user, TeamRole.EDITOR)
    if not teams:
        raise PermissionDenied("Adding a deployment needs the role editor in one of your teams.")
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
    plan: Plan | None = None
    if request.method == "POST" and form.is_valid() and all(f.is_valid() for f in formsets.values()):
        document, rows = document_of(form, formsets)
        try:
            if "preview" in request.POST:
                # "Preview the changes": the same write, planned (done and rolled back); the form
                # is shown again as typed, under what saving it would change.
                plan = plan_save(document, user=request.user, instance=deployment)
            else:
                return deployment_saved(request, save_deployment(document, user=request.user, instance=deployment))
        except ValidationError as invalid:
            show_errors(invalid.detail, form, formsets, rows)
    context = {"form": form, "formsets": formsets, "deployment": deployment, "plan": plan}
    return render(request, "ports/deployment_form.html", context)


def deployment_saved(request: HttpRequest, saved: Saved) -> HttpResponse:
    """After a save: its checklist, saying what the save did."""
    rules = saved.deployment.checklist.count()
    text = f"{saved.deployment.name} saved ({saved.outcome}): its checklist has {rules} rule{pluralize(rules)}."
    messages.success(request, text)
    return redirect("checklist", pk=saved.deployment.pk)


@login_required
@require_POST
def deployment_delete(request: HttpRequest, pk: int) -> HttpResponse:
    """Delete a deployment of the user's teams (as DELETE /api/deployments/{id}/ does), after the
    page's dialog said what goes with it; the list then says what went."""
    deployment = team_deployment(request.user, pk, TeamRole.EDITOR)
    rules = deployment.checklist.count()
    name = deployment.name
    delete_deployment(deployment)
    text = f"{name} deleted, with its {rules} rule{pluralize(rules)}, their history and its probe results."
    messages.success(request, text)
    return redirect("deployments")


@dataclass(frozen=True)
class ProbeSite:
    """A site a deployment is probed from, as its summary shows it: whether a worker is live
    there, and the command that starts one."""

    name: str
    live: bool

    @property
    def command(self) -> str:
        return f"celery -A portal.probe_site worker -Q {site_queue(self.name)}"


def checklist_summary(deployment: Deployment) -> dict:
    """The page's summary panel: status and latest-probe counts over the whole checklist, whatever
    the page shows, kept until the checklist changes; and the sites' workers and the last run."""
    cache = caches["checklists"]
    key = f"checklist-summary-{deployment.pk}-{deployment.checklist_revision}"
    counts = cache.get(key)
    if counts is None:
        # Counted from its rows' versions, which a read after a change reads only those changed of.
        checklist = ChecklistCounts.of_versions(RENDERED_ROWS.versions(deployment))
        statuses, states = checklist.statuses, dict(checklist.states)
        never = states.pop(None, 0)
        total = checklist.total
        counts = {
            "total": total,
            "status_counts": [(s.value, s.label, statuses.get(s.value, 0)) for s in ItemStatus],
            "result_counts": [
                *((state.label, states[state], STATE_TONES[state]) for state in ProbeState if states.get(state)),
                ("Never probed", never, NEVER_PROBED_TONE),
            ],
            "max_count": max([*statuses.values(), *states.values(), never, 1]),
            "failing": checklist.in_states(FAILING_STATES),
            "probed": checklist.probed,
            "opened_failing": checklist.in_states(*OPENED_FAILING),
            "site_names": probed_from(deployment),
            "stops": stopping_devices(deployment.checklist.all()) if checklist.in_states(FAILING_STATES) else [],
        }
        cache.set(key, counts)
    live = WorkerHeartbeat.objects.live_sites()
    return {
        **counts,
        "sites": [ProbeSite(site, site in live) for site in counts["site_names"]],
        "last_run": ProbeRun.objects.filter(deployment=deployment).order_by("-created").first(),
    }


def probed_from(deployment: Deployment) -> list[str]:
    """The sites the deployment's rules are probed from, kept until its checklist is generated anew
    (which alone moves its rules' sources), not counted again at each status change."""
    generated = deployment.checklist_generated_at
    key = f"checklist-sites-{deployment.pk}-{generated.isoformat() if generated else None}"
    sites = caches["checklists"].get(key)
    if sites is None:
        sites = sorted(Deployment.objects.filter(pk=deployment.pk).probed_from())
        caches["checklists"].set(key, sites)
    return sites


def summary_panel(deployment: Deployment, summary: dict) -> str:
    """The summary panel's HTML, kept while its counts, sites and last run stay the same."""
    run = summary["last_run"]
    state = [deployment.checklist_revision, summary["sites"], run and (run.pk, run.status)]
    key = f"checklist-panel-{deployment.pk}-{hashlib.sha256(repr(state).encode()).hexdigest()[:24]}"
    html = caches["checklists"].get(key)
    if html is None:
        html = render_to_string("ports/_summary.html", {"deployment": deployment, **summary})
        caches["checklists"].set(key, html)
    return html


def sort_order(value: str) -> tuple[str, bool, list]:
    """The sort a `sort` parameter names (the rule number if none): its name, direction and fields."""
    name = value.removeprefix("-")
    if name not in SORTS:
        name, value = "number", "number"
    descending = value.startswith("-")
    if name == "number" and not descending:  # the default, in the order of its index
        return name, descending, DEFAULT_ORDER
    fields = [F(f).desc(nulls_last=True) if descending else F(f).asc(nulls_first=True) for f in SORTS[name]]
    return name, descending, [*fields, "number", "pk"]


def options(choices: list[tuple[str, str]] | None, selected: list[str]) -> str:
    """A select's options as HTML: built directly, several times faster than a form widget."""
    if choices is None:
        return ""
    return format_html_join(
        "",
        '<option value="{}"{}>{}</option>',
        ((value, mark_safe(" selected") if value in selected else "", label) for value, label in choices),
    )


# The status control of a row, one per current status: rendered once, not once per row.
STATUS_SELECTS = {current: options(ItemStatus.choices, [current]) for current in ItemStatus.values}
# An item never probed has no verdict, as a pending one.
NEVER_PROBED_TONE = STATE_TONES[ProbeState.PENDING]
# The most rows the rows endpoint gives at once: a page's.
MAX_ROWS = max(PAGE_SIZES)
ITEM_ID = re.compile(r"[0-9]{1,18}")  # a positive bigint, never one the database overflows on


def rendered_rows(items: QuerySet[ChecklistItem]) -> dict[int, str]:
    """Items (read with_latest_probe()) as ports/_row.html renders them, by pk in their order: each
    with its status control and the tone of its latest probe."""
    row = get_template("ports/_row.html")
    rows = {}
    for item in items:
        probe = item.latest_probe
        item.status_options = STATUS_SELECTS[item.status]
        item.tone = STATE_TONES[probe.state] if probe else NEVER_PROBED_TONE
        rows[item.pk] = row.render({"item": item})
    return rows


@dataclass(frozen=True)
class ExportFormat:
    """An entry of the page's export dialog: its value, its name for people, the API URL that
    renders it, and whether it asks for the sites' zones."""

    value: str
    label: str
    url: str
    uses_zones: bool = False


def export_formats(deployment: Deployment) -> list[ExportFormat]:
    """The formats the export dialog offers: the change request, the sheets, every firewall syntax."""
    pk = deployment.pk
    return [
        # A change request's rollback commands may be in a syntax that uses zones.
        ExportFormat("pdf", "Change request (PDF)", reverse("deployment-pdf", args=[pk]), uses_zones=True),
        ExportFormat("csv", "CSV", reverse("deployment-csv", args=[pk])),
        ExportFormat("xlsx", "XLSX", reverse("deployment-xlsx", args=[pk])),
        *(
            ExportFormat(name, syntax.label, reverse("deployment-firewall", args=[pk, name]), syntax.uses_zones)
            for name, syntax in SYNTAXES.items()
        ),
    ]


@login_required
def checklist(request: HttpRequest, pk: int) -> HttpResponse:
    deployment = team_deployment(request.user, pk)
    base = ChecklistItemFilterSet.base_filters
    query = request.GET.copy()
    query.pop("page", None)
    sorted_query = query.urlencode()
    query.pop("sort", None)
    sort, descending, order = sort_order(request.GET.get("sort", ""))
    summary = checklist_summary(deployment)
    filtered = filters_given(request.GET)
    # The filters are only built (and checked) when one is given: they cost more than the page;
    # and the items' query only when the page's rows are not kept (below).
    filterset = ChecklistItemFilterSet(request.GET, deployment.checklist.with_latest_probe()) if filtered else None
    errors = filterset.errors if filterset else {}
    role = deployment.role_held
    context = {
        "deployment": deployment,
        "role": TeamRole(role).label.lower() if role else "",
        "can_edit": role in TeamRole.at_least(TeamRole.EDITOR),
        "filters": [
            (name, label, request.GET.get(name, ""), errors.get(name, []), options(choices, request.GET.getlist(name)))
            for name, label, choices in [
                ("status", "Status", [("", "any"), *ItemStatus.choices]),
                ("result", "Latest probe", [("", "any"), *base["result"].extra["choices"]]),
                ("role", "Role", [("", "any"), *Role.choices]),
                ("port", "Port", None),
                ("q", "Text", None),
                ("stops_at", "Stops at (address)", None),
                ("flag", "Show only", [("", "every rule"), *base["flag"].extra["choices"]]),
            ]
        ],
        "errors": errors,
        "sort": sort,
        "descending": descending,
        "columns": COLUMNS,
        "sortable": SORTS,
        "page_sizes": PAGE_SIZES,
        "size": int(request.GET["size"]) if request.GET.get("size") in map(str, PAGE_SIZES) else PAGE_SIZES[1],
        "query": query.urlencode(),
        "query_sorted": sorted_query,
        "sort_options": options(
            [
                (f"{prefix}{name}", f"{label}{suffix}")
                for name, label in SORT_LABELS
                for prefix, suffix in (("", ""), ("-", ", descending"))
            ],
            [request.GET.get("sort", "number")],
        ),
        "filtered": filtered,
        "statuses": ItemStatus.choices,
        "legend": [(state.label, meaning, STATE_TONES[state]) for state, meaning in STATE_MEANINGS.items()],
        # What the script says of states, statuses and runs, in the words the page uses.
        "labels": {
            "state": dict(ProbeState.choices),
            "status": dict(ItemStatus.choices),
            "run": dict(RunStatus.choices),
        },
        "export_formats": export_formats(deployment),
        "rollback_syntaxes": [(name, syntax.label) for name, syntax in SYNTAXES.items()],
        **summary,
        "panel": summary_panel(deployment, summary),
    }
    # The rows of this page, kept until the checklist changes (its revision): paging back and
    # forth or reloading costs no query of the rows. Filters that do not parse (port "abc")
    # are said next to their field, and select nothing.
    digest = hashlib.sha256(request.GET.urlencode().encode()).hexdigest()[:24]
    key = f"checklist-page-{deployment.pk}-{deployment.checklist_revision}-{digest}"
    rows = caches["checklists"].get(key)
    if rows is None:
        items = filterset.qs if filterset else deployment.checklist.with_latest_probe()
        items = items.none() if errors else items
        if filtered or order != DEFAULT_ORDER:
            paginator = Paginator(items.order_by(*order).row_versions(), context["size"])
            if not filtered:  # the whole checklist: the summary counted it at this revision
                paginator.count = summary["total"]
            page = paginator.get_page(request.GET.get("page"))
            versions = by_item(read_versions(page.object_list))
        else:  # the whole checklist by rule number: the versions the summary read, not a query more
            by_number = sorted(RENDERED_ROWS.versions(deployment), key=itemgetter(1, 0))  # (number, pk)
            page = Paginator(by_number, context["size"]).get_page(request.GET.get("page"))
            versions = by_item(page.object_list)
        shown = RENDERED_ROWS.rows(
            kind_of("page", deployment), versions, lambda ids: rendered_rows(items_among(items, ids))
        )
        rows = render_to_string("ports/_rows.html", {**context, "page": page, "rows": shown})
        caches["checklists"].set(key, rows)
    return render(request, "ports/checklist.html", {**context, "rows": rows})


@login_required
def checklist_rows(request: HttpRequest, pk: int) -> HttpResponse:
    """Rows of the checklist by item id (`items=1,2,3`), as the page renders them: the page's script
    swaps them in after a status change or a probe result, so that a row always reads as a reload
    shows it. Ids of other deployments give no row."""
    deployment = team_deployment(request.user, pk)
    ids = request.GET.get("items", "").split(",")
    if len(ids) > MAX_ROWS:
        return HttpResponseBadRequest(f"At most {MAX_ROWS} items at once.", content_type="text/plain")
    if not all(ITEM_ID.fullmatch(i) for i in ids):
        return HttpResponseBadRequest("Give item ids as numbers separated by commas.", content_type="text/plain")
    items = deployment.checklist.with_latest_probe().filter(pk__in=ids).select_related("requirement")
    rows = rendered_rows(items.order_by("number", "pk"))
    return HttpResponse("\n".join(rows.values()))


@login_required
def checklist_panel(request: HttpRequest, pk: int) -> HttpResponse:
    """The summary panel alone: the page's script swaps it in after every action."""
    deployment = team_deployment(request.user, pk)
    return HttpResponse(summary_panel(deployment, checklist_summary(deployment)))


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
