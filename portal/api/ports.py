from __future__ import annotations

import hashlib
import io
import json

import orjson
from django.conf import settings
from django.core.cache import caches
from django.db import transaction
from django.db.models import Count, QuerySet
from django.http import HttpResponse, QueryDict, StreamingHttpResponse
from django.utils.http import parse_etags
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import generics, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.renderers import BaseRenderer, BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.errors import ServiceUnavailable
from ports.choices import Outcome, TeamRole
from ports.deployments import (
    Plan,
    Saved,
    delete_deployment,
    plan_save,
    plan_upsert,
    save_deployment,
    upsert_deployment,
)
from ports.exports import ExportParams, ExportRequest, RuleSet
from ports.exports.firewall import SYNTAXES, Target
from ports.exports.layout import render_pdf
from ports.exports.pdf import change_request
from ports.exports.sheets import ChecklistCSVRenderer, csv_checklist, csv_chunks, csv_rows, csv_table, write_xlsx
from ports.models import (
    CatalogVersion,
    ChangeRequestJob,
    ChecklistItem,
    Deployment,
    ObjectChange,
    Requirement,
    StaleRevision,
    UnknownItems,
)
from ports.rows import RENDERED_ROWS, by_item, items_among, kind_of
from ports.scoping import TeamScoped
from ports.serializers import (
    CatalogDiffSerializer,
    CatalogVersionSerializer,
    ChangeRequestJobSerializer,
    ChecklistDiffSerializer,
    DeploymentSerializer,
    RequirementSerializer,
    StatusUpdateSerializer,
)
from probes.verification import verify_open

from .filters import (
    ChecklistItemFilterSet,
    DeploymentFilterSet,
    ObjectChangeFilterSet,
    RequirementFilterSet,
    filters_given,
)
from .outcomes import answer, outcome_header, outcome_headers, written
from .schema import FINGERPRINT, etag, location
from .serializers import (
    BulkStatusResultSerializer,
    BulkStatusSerializer,
    ChecklistItemDetailSerializer,
    ChecklistItemSerializer,
    ChecklistSerializer,
    DeploymentSummarySerializer,
    ObjectChangeSerializer,
    PlanSerializer,
    bulk_outcome,
)

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class MeView(APIView):
    """Who the caller is, the teams whose deployments they see, and their role in each."""

    @extend_schema(
        responses={
            200: inline_serializer(
                "Me",
                {
                    "username": serializers.CharField(),
                    "teams": serializers.ListField(child=serializers.CharField()),
                    "roles": serializers.DictField(
                        child=serializers.ChoiceField(TeamRole.choices), help_text="Your role by team name."
                    ),
                },
            )
        }
    )
    def get(self, request: Request) -> Response:
        roles = dict(request.user.memberships.order_by("team__name").values_list("team__name", "role"))
        return Response({"username": request.user.get_username(), "teams": list(roles), "roles": roles})


class CatalogVersionViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = (
        CatalogVersion.objects.select_related("product")
        .annotate(requirement_count=Count("requirements"))
        .order_by("product__name", "-loaded_at")
    )
    serializer_class = CatalogVersionSerializer


class RequirementViewSet(viewsets.ReadOnlyModelViewSet):
    """The catalog's requirements; those of each product's current version unless `version` is given."""

    serializer_class = RequirementSerializer
    filterset_class = RequirementFilterSet
    lookup_field = "uid"
    lookup_value_regex = r"[a-z0-9][a-z0-9.-]*"
    pagination_class = None

    def get_queryset(self) -> QuerySet[Requirement]:
        queryset = Requirement.objects.select_related("version__product")
        if not self.request.query_params.get("version"):
            queryset = queryset.filter(version__in=CatalogVersion.objects.current())
        return queryset


DEPLOYMENT_EXAMPLE = OpenApiExample(
    "A deployment document",
    request_only=True,
    value={
        "name": "Mail gateways",
        "team": "Mail team",
        "features": ["dlp", "pem", "smd"],
        "dlp_base_port": 17500,
        "appliances": [{"hostname": "esa1.example.test", "c_address": "192.0.2.10", "p1_address": "192.0.2.20"}],
        "hosts": [
            {"role": "security_manager", "name": "fsm", "address": "192.0.2.30", "site": "hq"},
            {"role": "dns", "name": "dns1", "address": "192.0.2.53"},
        ],
        "peer_networks": [
            {"role": "end_users", "name": "Staff", "network": "198.51.100.0/24"},
            {"role": "mail_senders", "name": "Internet", "network": "any"},
        ],
    },
)


WrittenDeploymentSerializer = written(DeploymentSerializer)
# The upsert's, PUT's and PATCH's 200: the deployment written, or with ?dry_run=true the plan.
DEPLOYMENT_OR_PLAN = PolymorphicProxySerializer(
    component_name="WrittenDeploymentOrPlan",
    serializers=[WrittenDeploymentSerializer, PlanSerializer],
    resource_type_field_name=None,
)
DRY_RUN = OpenApiParameter(
    "dry_run",
    OpenApiTypes.BOOL,
    OpenApiParameter.QUERY,
    description=(
        "true: validate and compute the write, save nothing, and answer 200 with its plan (the outcome, "
        "the rules it would add and remove, with their numbers, and how many it keeps). The same 400s as "
        "the write. Taken from the query only."
    ),
)
# The deployment's writes say their outcome in two headers: `Deployment-Outcome` came first, and
# the clients that read it keep working.
DEPLOYMENT_OUTCOME_HEADERS = [outcome_header([200, 201]), outcome_header([200, 201], "Deployment-Outcome")]


def deployment_write(description: str, ok: object = DEPLOYMENT_OR_PLAN, created: bool = True) -> dict:
    """The schema of a deployment write: its document, `dry_run`, the answers and their headers."""
    responses = {200: ok, **({201: WrittenDeploymentSerializer} if created else {})}
    return extend_schema(
        request=DeploymentSerializer,
        parameters=[DRY_RUN, *DEPLOYMENT_OUTCOME_HEADERS],
        responses=responses,
        examples=[DEPLOYMENT_EXAMPLE],
        description=description,
    )


@extend_schema_view(
    create=deployment_write(
        "Create a deployment; 201 with it. With `?dry_run=true`, 200 with the plan and nothing saved.",
        ok=PlanSerializer,
    ),
    update=deployment_write(
        "Bring the deployment to this document; `outcome` says updated or unchanged. With "
        "`?dry_run=true`, the plan instead, and nothing saved.",
        created=False,
    ),
    partial_update=deployment_write(
        "Change the fields given (a list given is replaced whole); `outcome` says updated or unchanged. "
        "With `?dry_run=true`, the plan instead, and nothing saved.",
        created=False,
    ),
)
class DeploymentViewSet(TeamScoped, viewsets.ModelViewSet):
    """Deployments as whole documents; every write goes through ports.deployments."""

    queryset = Deployment.objects.select_related("team", "catalog_version").order_by("team__name", "name")
    serializer_class = DeploymentSerializer
    filterset_class = DeploymentFilterSet

    def get_queryset(self) -> QuerySet[Deployment]:
        # A list shows summaries, each linking its whole document: only a document reads its parts.
        queryset = super().get_queryset()
        return queryset if self.action == "list" else queryset.prefetch_related("appliances", "hosts", "peer_networks")

    def get_serializer_class(self) -> type[serializers.Serializer]:
        return DeploymentSummarySerializer if self.action == "list" else DeploymentSerializer

    def create(self, request: Request, *args: object, **kwargs: object) -> Response:
        if dry_run(request):
            return self.answer_plan(plan_save(request.data, user=request.user))
        return self.answer(save_deployment(request.data, user=request.user))

    def update(self, request: Request, *args: object, **kwargs: object) -> Response:
        planned = dry_run(request)  # before the write: a value that does not parse writes nothing
        write = plan_save if planned else save_deployment
        result = write(
            request.data, user=request.user, instance=self.get_object(), partial=kwargs.get("partial", False)
        )
        return self.answer_plan(result) if planned else self.answer(result)

    @deployment_write(
        "Create the team's deployment of this name, or bring it to this document. Sending the same "
        "document again changes nothing; `outcome` and the `Outcome` header (and `Deployment-Outcome`) "
        "say created, updated or unchanged. Fields left out keep their value. With `?dry_run=true`, "
        "200 with the plan, and nothing saved."
    )
    @action(detail=False, methods=["post"])
    def upsert(self, request: Request) -> Response:
        if dry_run(request):
            return self.answer_plan(plan_upsert(request.data, user=request.user))
        return self.answer(upsert_deployment(request.data, user=request.user))

    def perform_destroy(self, instance: Deployment) -> None:
        delete_deployment(instance)

    def answer(self, saved: Saved) -> Response:
        """The deployment as stored now, and what the write did."""
        deployment = self.get_queryset().get(pk=saved.deployment.pk)
        context = {**self.get_serializer_context(), "outcome": saved.outcome}
        body = WrittenDeploymentSerializer(deployment, context=context).data
        return answer(body, saved.outcome, {"Deployment-Outcome": saved.outcome})

    def answer_plan(self, plan: Plan) -> Response:
        """What the write would have done; 200 whatever the outcome, as nothing was created."""
        headers = outcome_headers(plan.outcome, {"Deployment-Outcome": plan.outcome})
        return Response(PlanSerializer(plan).data, headers=headers)


def dry_run(request: Request) -> bool:
    """Whether the write is to be planned only: `?dry_run=true` (a boolean as DRF reads one). A value
    that is no boolean is a 400, never taken for false: a misspelt plan must not become the write."""
    value = request.query_params.get("dry_run")
    if value is None:
        return False
    try:
        return serializers.BooleanField().to_internal_value(value)
    except serializers.ValidationError as invalid:
        raise serializers.ValidationError({"dry_run": invalid.detail}) from invalid


class ChecklistJSONRenderer(JSONRenderer):
    """JSON through orjson: a checklist of thousands of rules renders in a few milliseconds."""

    def render(
        self, data: object, accepted_media_type: str | None = None, renderer_context: dict | None = None
    ) -> bytes:
        return orjson.dumps(data, default=self.encoder_class().default)


class ChecklistView(TeamScoped, generics.GenericAPIView):
    """A deployment's checklist: what it was built from and its rules, as JSON or CSV.

    The `Checklist-Fingerprint` header (and `fingerprint`) name the rule set given, which
    checklist/diff/?since= compares with the current one later. A rendering is kept until
    the checklist changes; its ETag answers If-None-Match with 304.
    """

    filterset_class = ChecklistItemFilterSet
    renderer_classes = [ChecklistJSONRenderer, BrowsableAPIRenderer, ChecklistCSVRenderer]
    pagination_class = None

    def get_queryset(self) -> QuerySet[ChecklistItem]:
        if getattr(self, "swagger_fake_view", False):
            return ChecklistItem.objects.none()
        # Thousands of items share a few dozen requirements: select_related would build each
        # requirement once per row; prefetching builds it once.
        return self.deployment.checklist.prefetch_related("requirement").with_latest_probe()

    # One body per answer in the schema: the CSV is GET checklist.csv's. `?format=csv` (and Accept:
    # text/csv) still answers this checklist as CSV, for the scripts that ask for it so, unlisted.
    @extend_schema(
        filters=True,
        parameters=[
            OpenApiParameter(
                "If-None-Match", location=OpenApiParameter.HEADER, description="The ETag of a checklist read before."
            ),
            etag([200, 304]),
            FINGERPRINT,
            OpenApiParameter("format", exclude=True),
        ],
        responses={
            (200, "application/json"): ChecklistSerializer,
            304: OpenApiResponse(description="Unchanged since the ETag sent as If-None-Match."),
        },
    )
    def get(self, request: Request, *args: object, **kwargs: object) -> HttpResponse:
        renderer = request.accepted_renderer
        if renderer.format not in ("json", "csv"):  # the browsable API
            return Response(self.checklist(request))
        key = checklist_key(self.deployment, renderer.format, request.query_params)
        etag = f'"{key}"'
        headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
        if etag in parse_etags(request.headers.get("If-None-Match", "")):
            return HttpResponse(status=status.HTTP_304_NOT_MODIFIED, headers=headers)
        cache = caches["checklists"]
        rendered = cache.get(key)
        if rendered is None:
            rendered = self.rendering(request, renderer)
            cache.set(key, rendered)
        body, headers["Checklist-Fingerprint"] = rendered
        if renderer.format == "csv":
            headers["Content-Disposition"] = f'attachment; filename="checklist-{self.deployment.pk}.csv"'
        content_type = f"{renderer.media_type}; charset={renderer.charset}" if renderer.charset else renderer.media_type
        return HttpResponse(body, content_type=content_type, headers=headers)

    def rendering(self, request: Request, renderer: BaseRenderer) -> tuple[bytes, str]:
        """The checklist in the renderer's format, and its fingerprint. The whole checklist is put
        together from rows kept until their item changes (ports.rows); a filtered one is rendered
        whole, as its fingerprint is worked out from all its rules."""
        if filters_given(request.query_params):
            data = self.checklist(request) if renderer.format == "json" else self.sheet(request)
            return renderer.render(data, renderer.media_type, self.get_renderer_context()), data["fingerprint"]
        fingerprint = self.deployment.checklist_fingerprint
        items = self.get_queryset()
        if renderer.format == "csv":
            return csv_checklist(self.deployment, items, fingerprint), fingerprint
        return json_checklist(self.deployment, renderer, items, fingerprint), fingerprint

    def rule_set(self, request: Request) -> RuleSet:
        """The items the filters select; a filtered selection is kept under its fingerprint."""
        rule_set = RuleSet(self.deployment, list(self.filter_queryset(self.get_queryset())))
        if filters_given(request.query_params):
            rule_set.remember("checklist", request.user)
        else:  # the whole checklist, kept with its fingerprint when it was generated
            rule_set.fingerprint = self.deployment.checklist_fingerprint
        return rule_set

    def checklist(self, request: Request) -> dict:
        rule_set = self.rule_set(request)
        context = {"items": rule_set.items, "fingerprint": rule_set.fingerprint}
        return ChecklistSerializer(self.deployment, context=context).data

    def sheet(self, request: Request) -> dict:
        rule_set = self.rule_set(request)
        return {"fingerprint": rule_set.fingerprint, "rows": csv_table(rule_set)}


class VerifyOpenView(TeamScoped, APIView):
    """Mark verified every rule whose latest probe is open and that is neither verified nor
    waived; each change is kept in the item's history with the probe that proves it."""

    @extend_schema(
        request=None, responses={200: inline_serializer("Verified", {"verified": serializers.IntegerField()})}
    )
    def post(self, request: Request, pk: str) -> Response:
        return Response({"verified": verify_open(self.deployment, request.user)})


class BulkStatusView(TeamScoped, APIView):
    """Change the status of many of the deployment's rules in one request: those listed, or all that
    the checklist's filters select (a page's "all N matching rules"), as ChecklistItemQuerySet.change_status."""

    @extend_schema(
        request=BulkStatusSerializer,
        responses={200: BulkStatusResultSerializer},
        parameters=[outcome_header([200])],
        description=(
            "Rules already at the status are left as they are (no history, no new revision): sending the "
            "same change twice changes nothing the second time, and says `unchanged`. `overwrites` counts "
            "the waived and verified rules the change replaces; ask with `dry_run` first to confirm those. "
            "Anything invalid (an id that is not this deployment's, a filter that does not parse) is a 400 "
            "and changes nothing."
        ),
    )
    def post(self, request: Request, pk: str) -> Response:
        body = BulkStatusSerializer(data=request.data, context={"deployment": self.deployment})
        body.is_valid(raise_exception=True)
        change = body.validated_data
        try:
            changes = change["selection"].change_status(
                change["status"], request.user, change["comment"], ids=change.get("items"), dry_run=change["dry_run"]
            )
        except UnknownItems as unknown:
            raise serializers.ValidationError({"items": [str(unknown)]}, code="unknown") from unknown
        return Response(BulkStatusResultSerializer(changes).data, headers=outcome_headers(bulk_outcome(changes)))


def json_checklist(
    deployment: Deployment, renderer: BaseRenderer, items: QuerySet[ChecklistItem], fingerprint: str
) -> bytes:
    """The whole checklist as JSON under `fingerprint` (ChecklistSerializer's, rendered), put together
    from renderings kept in ports.rows: the head (all but the items, kept while what it shows
    stays) and each item's row (kept until the item changes)."""

    def head(_: list) -> dict[str, bytes]:
        empty = renderer.render(ChecklistSerializer(deployment, context={"items": [], "fingerprint": fingerprint}).data)
        before, items_key, after = empty.rpartition(b'"items":[]')
        assert items_key and after == b"}", "the items are the checklist's last key"
        return {"head": before}

    def rows(ids: list[int]) -> dict[int, bytes]:
        row = ChecklistItemSerializer()
        return {item.pk: renderer.render(row.to_representation(item)) for item in items_among(items, ids)}

    # What the head shows: its names, the fingerprint, and the rest moves only with a new generation.
    shown = (deployment.name, deployment.team.name, fingerprint, *deployment.checklist_generation)
    [before] = RENDERED_ROWS.rows(("json head", deployment.pk), {"head": shown}, head)
    versions = by_item(RENDERED_ROWS.versions(deployment))
    rendered = RENDERED_ROWS.rows(kind_of("json", deployment), versions, rows)
    if not rendered:
        return before + b'"items":[]}'
    # One join, of the rows with the head before the first and the end after the last: a join of a
    # megabyte of rows copies it.
    rendered[0] = before + b'"items":[' + rendered[0]
    rendered[-1] += b"]}"
    return b",".join(rendered)


def checklist_key(deployment: Deployment, format: str, query: dict) -> str:
    """Names one rendering of a checklist: it changes with anything the rendering shows."""
    parts = [
        deployment.checklist_revision,
        format,
        sorted(query.lists()),
        deployment.name,
        deployment.team.name,
        deployment.catalog_version_id,
        deployment.dlp_base_port,
    ]
    digest = hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:24]
    return f"checklist-{deployment.pk}-{deployment.checklist_revision}-{digest}"


WrittenChecklistItemDetailSerializer = written(ChecklistItemDetailSerializer)


class ChecklistItemViewSet(TeamScoped, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = ChecklistItem.objects.all()
    filterset_class = ChecklistItemFilterSet

    def get_queryset(self) -> QuerySet[ChecklistItem]:
        queryset = super().get_queryset().with_latest_probe()
        if self.action == "list":
            return queryset.prefetch_related("requirement")
        return queryset.select_related("requirement").prefetch_related("history__user")

    def get_serializer_class(self) -> type[serializers.Serializer]:
        # A change takes a status and a comment (the browsable API's form too); answers are items.
        return {"list": ChecklistItemSerializer, "partial_update": StatusUpdateSerializer}.get(
            self.action, ChecklistItemDetailSerializer
        )

    @extend_schema(parameters=[etag([200])])
    def retrieve(self, request: Request, *args: object, **kwargs: object) -> Response:
        item = self.get_object()
        return Response(self.get_serializer(item).data, headers={"ETag": item.etag})

    @extend_schema(
        request=StatusUpdateSerializer,
        parameters=[
            OpenApiParameter("If-Match", location="header", required=False, description="The item's ETag."),
            outcome_header([200]),
            etag([200, 412]),
        ],
        responses={
            200: WrittenChecklistItemDetailSerializer,
            412: OpenApiResponse(description="Changed meanwhile: `ETag` is the item's version now."),
        },
        description=(
            "Move the item to `status`. An item already at the status is left as it is, comment or not: no "
            "history row, no new revision, the same ETag, and `outcome` unchanged. A stale If-Match is a 412 "
            "first, whatever the status."
        ),
    )
    def partial_update(self, request: Request, *args: object, **kwargs: object) -> Response:
        item = self.get_object()
        change = self.get_serializer(data=request.data)
        change.is_valid(raise_exception=True)
        try:
            changed = item.change_status(
                **change.validated_data, user=request.user, expected_revision=if_match_revision(request, item)
            )
        except ChecklistItem.DoesNotExist as gone:  # the deployment changed and its rule went meanwhile
            raise NotFound("The item was removed meanwhile: the deployment no longer needs this rule.") from gone
        except StaleRevision as stale:
            return Response(
                {"detail": f"{stale} Reload the item and apply your change again."},
                status=status.HTTP_412_PRECONDITION_FAILED,
                headers={"ETag": f'"{item.pk}-{stale.current_revision}"'},
            )
        item = self.get_object()
        outcome = Outcome.UPDATED if changed else Outcome.UNCHANGED
        body = WrittenChecklistItemDetailSerializer(item, context={"outcome": outcome}).data
        return answer(body, outcome, {"ETag": item.etag})


def if_match_revision(request: Request, item: ChecklistItem) -> int | None:
    """The revision an If-Match header names; a tag for another item matches no revision."""
    header = request.headers.get("If-Match")
    if not header or header.strip() == "*":
        return None
    tag = header.strip().removeprefix("W/").strip('"')
    item_id, _, revision = tag.partition("-")
    if item_id != str(item.pk) or not revision.isdigit():
        return -1
    return int(revision)


class ObjectChangeViewSet(TeamScoped, viewsets.ReadOnlyModelViewSet):
    """Your teams' change log, newest first: every change of a deployment, a rule's status, a TLS pin
    or an alert channel, with who made it, through what, in which request, and its fields before
    and after. Read only: no one edits the log."""

    queryset = ObjectChange.objects.select_related("team")  # the team's name; the user's is kept in the entry
    serializer_class = ObjectChangeSerializer
    filterset_class = ObjectChangeFilterSet


# --- Exports ----------------------------------------------------------------------------


def attachment(content: bytes | str, content_type: str, filename: str, fingerprint: str) -> HttpResponse:
    """A file to download, with the fingerprint of the rule set it holds."""
    headers = {"Content-Disposition": f'attachment; filename="{filename}"', "Checklist-Fingerprint": fingerprint}
    return HttpResponse(content, content_type=content_type, headers=headers)


class AnyAccept:
    """A view that answers a file (a PDF, a CSV, ...): sent whatever Accept names. DRF would answer
    406 to the file's own type, which none of its renderers has, where the schema declares that type
    (a generated client asks for it); its errors are JSON, as the schema declares them."""

    def perform_content_negotiation(self, request: Request, force: bool = False) -> tuple:
        return super().perform_content_negotiation(request, force=True)


class DeploymentExportView(AnyAccept, TeamScoped, APIView):
    """An export of a deployment's rules; query parameters as ExportParams."""

    def params(self, data: object, serializer: type[ExportParams] = ExportParams) -> dict:
        # A plain dict, not the QueryDict: DRF reads a form's empty value ("syntax=") as absent,
        # where a query's is a value like any other (and "" is no syntax).
        data = data.dict() if isinstance(data, QueryDict) else data
        params = serializer(data=data, context={"deployment": self.deployment})
        params.is_valid(raise_exception=True)
        return params.validated_data


class ChangeRequestPDFView(DeploymentExportView):
    @extend_schema(
        parameters=[ExportParams, FINGERPRINT],
        responses={(200, "application/pdf"): OpenApiTypes.BINARY},
        description="The change request as PDF; the `Checklist-Fingerprint` header is its rule set's SHA-256. "
        f"Above {settings.EXPORT_SYNC_RULES} rules, use POST /api/deployments/{{id}}/change-requests/.",
    )
    def get(self, request: Request, pk: str) -> HttpResponse:
        params = self.params(request.query_params)
        rule_set = RuleSet.build(self.deployment, params)
        if len(rule_set.flows) > settings.EXPORT_SYNC_RULES:
            # Laid out here, a change request at MAX_RULES would outlast the web worker's timeout:
            # a worker renders it, with its progress (bench/exports.py times both).
            message = (
                f"{len(rule_set.flows)} rules, more than a change request rendered at once holds "
                f"(EXPORT_SYNC_RULES, {settings.EXPORT_SYNC_RULES}): request it with "
                f"POST /api/deployments/{pk}/change-requests/."
            )
            raise serializers.ValidationError({"scope": [message]})
        pdf = render_pdf(change_request(rule_set, params, request.user))
        rule_set.remember("pdf", request.user)
        name = f"change-request-{self.deployment.pk}-{rule_set.fingerprint[:12]}.pdf"
        return attachment(pdf, "application/pdf", name, rule_set.fingerprint)


class FirewallExportView(DeploymentExportView):
    @extend_schema(
        parameters=[
            ExportParams,
            FINGERPRINT,
            OpenApiParameter(
                "syntax", enum=list(SYNTAXES), location=OpenApiParameter.PATH, description="The firewall syntax."
            ),
            # ExportParams' `syntax` is a change request's rollback syntax: no parameter of this export.
            OpenApiParameter("syntax", location=OpenApiParameter.QUERY, exclude=True),
            OpenApiParameter(
                "Zones-Ignored",
                str,
                location=OpenApiParameter.HEADER,
                response=[200],
                description="The sites of `zones` that this deployment does not use, comma-separated: ignored, "
                "and named in a comment line at the top of the export. Absent when none are.",
            ),
        ],
        responses={(200, "text/plain"): str},
    )
    def get(self, request: Request, pk: str, syntax: str) -> HttpResponse:
        if syntax not in SYNTAXES:
            raise NotFound(f"Unknown syntax {syntax!r}; known: {', '.join(SYNTAXES)}.")
        params = self.params(request.query_params)
        rule_set = RuleSet.build(self.deployment, params)
        text = SYNTAXES[syntax].render(rule_set, Target.of(rule_set, params))
        rule_set.remember(syntax, request.user)
        name = f"deployment-{self.deployment.pk}.{SYNTAXES[syntax].suffix}"
        response = attachment(text, "text/plain; charset=utf-8", name, rule_set.fingerprint)
        if params.get("zones_ignored"):
            response.headers["Zones-Ignored"] = ", ".join(params["zones_ignored"])
        return response


class XlsxExportView(DeploymentExportView):
    @extend_schema(parameters=[ExportParams, FINGERPRINT], responses={(200, XLSX): OpenApiTypes.BINARY})
    def get(self, request: Request, pk: str) -> HttpResponse:
        rule_set = RuleSet.build(self.deployment, self.params(request.query_params))
        workbook = io.BytesIO()
        write_xlsx(rule_set, workbook)  # write-only: its rows pass through a temporary file
        rule_set.remember("xlsx", request.user)
        return attachment(workbook.getvalue(), XLSX, f"checklist-{self.deployment.pk}.xlsx", rule_set.fingerprint)


class CsvExportView(DeploymentExportView):
    """The rule set as CSV, by export scope (checklist/?format=csv takes the checklist's filters)."""

    @extend_schema(parameters=[ExportParams, FINGERPRINT], responses={(200, "text/csv"): OpenApiTypes.STR})
    def get(self, request: Request, pk: str) -> StreamingHttpResponse:
        rule_set = RuleSet.build(self.deployment, self.params(request.query_params))
        rule_set.remember("csv", request.user)
        name = f"checklist-{self.deployment.pk}.csv"
        # Streamed as it is written, from rows already read: no query runs while it streams.
        headers = {
            "Content-Disposition": f'attachment; filename="{name}"',
            "Checklist-Fingerprint": rule_set.fingerprint,
        }
        return StreamingHttpResponse(
            csv_chunks(csv_rows(rule_set)), content_type="text/csv; charset=utf-8", headers=headers
        )


class ChecklistDiffView(DeploymentExportView):
    """The rules added and removed since an earlier export (`since`: its fingerprint)."""

    @extend_schema(parameters=[ExportParams], responses={200: ChecklistDiffSerializer})
    def get(self, request: Request, pk: str) -> Response:
        params = self.params(request.query_params)
        if "since" not in params:
            raise serializers.ValidationError({"since": ["Give the fingerprint of an earlier export."]})
        diff = RuleSet.build(self.deployment, params).diff(params["since"])
        return Response(ChecklistDiffSerializer(diff).data)


class CatalogDiffView(APIView):
    """Requirements added, removed and changed between two catalog versions."""

    @extend_schema(
        parameters=[OpenApiParameter("from", required=True), OpenApiParameter("to", required=True)],
        responses={200: CatalogDiffSerializer},
    )
    def get(self, request: Request) -> Response:
        versions = {}
        for name in ("from", "to"):
            value = request.query_params.get(name, "")
            found = CatalogVersion.objects.filter(version=value).order_by("-loaded_at")
            version = found.first() if value.isprintable() else None  # a NUL cannot even be looked up
            if version is None:
                raise serializers.ValidationError({name: [f"No catalog version {value!r}."]})
            versions[name] = version
        return Response(versions["from"].diff(versions["to"]))


class ChangeRequestJobView(DeploymentExportView):
    """Render a (large) change request in a worker; poll the job, then download the PDF."""

    @extend_schema(
        request=ExportRequest, responses={202: ChangeRequestJobSerializer}, parameters=[location("change request")]
    )
    def post(self, request: Request, pk: str) -> Response:
        params = self.params(request.data, ExportRequest)
        job = ChangeRequestJob.objects.create(
            deployment=self.deployment, requested_by=request.user, params=ExportParams(params).data
        )
        job.unsent = ""
        transaction.on_commit(job.send)
        if job.unsent:
            raise ServiceUnavailable(f"Change request {job.pk} failed: {job.unsent}. Ask again when it is back.")
        return Response(
            ChangeRequestJobSerializer(job).data,
            status=status.HTTP_202_ACCEPTED,
            headers={"Location": f"/api/change-requests/{job.pk}/"},
        )


class ChangeRequestJobViewSet(AnyAccept, TeamScoped, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = ChangeRequestJob.objects.defer("pdf")
    serializer_class = ChangeRequestJobSerializer

    @extend_schema(responses={(200, "application/pdf"): OpenApiTypes.BINARY}, parameters=[FINGERPRINT])
    @action(detail=True)
    def pdf(self, request: Request, pk: str) -> HttpResponse:
        job = self.get_object()
        if job.status != ChangeRequestJob.Status.DONE:
            raise NotFound(f"The change request is {job.status} ({job.progress} %), not ready.")
        return attachment(
            bytes(job.pdf), "application/pdf", f"change-request-{job.deployment_id}-{job.pk}.pdf", job.fingerprint
        )
