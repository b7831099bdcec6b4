from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.db.models import Count, QuerySet
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.utils.functional import cached_property
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from probes.models import ProbeResult

from .change_request import ExportParams, RuleSet, catalog_diff, render_html, render_pdf
from .exports import rules_as_dicts, to_xlsx
from .filters import ChecklistItemFilterSet, DeploymentFilterSet, RequirementFilterSet
from .firewall import SYNTAXES
from .models import CatalogVersion, ChangeRequestJob, ChecklistItem, Deployment, Requirement, StaleRevision
from .renderers import ChecklistCSVRenderer
from .serializers import (
    CatalogVersionSerializer,
    ChangeRequestJobSerializer,
    ChecklistItemDetailSerializer,
    ChecklistItemSerializer,
    ChecklistSerializer,
    DeploymentSerializer,
    RequirementSerializer,
    StatusUpdateSerializer,
)
from .tasks import render_change_request

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class MeView(APIView):
    """Who the caller is, and the teams whose deployments they see."""

    @extend_schema(responses={200: {"type": "object"}})
    def get(self, request: Request) -> Response:
        teams = request.user.teams.values_list("name", flat=True)
        return Response({"username": request.user.get_username(), "teams": list(teams)})


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


class DeploymentViewSet(viewsets.ModelViewSet):
    serializer_class = DeploymentSerializer
    filterset_class = DeploymentFilterSet

    def perform_update(self, serializer: DeploymentSerializer) -> None:
        serializer.save()
        # Answer with what is stored now: children and checklist counts were prefetched before.
        serializer.instance = self.get_queryset().get(pk=serializer.instance.pk)

    def perform_create(self, serializer: DeploymentSerializer) -> None:
        serializer.save()
        serializer.instance = self.get_queryset().get(pk=serializer.instance.pk)

    def get_queryset(self) -> QuerySet[Deployment]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return Deployment.objects.none()
        return (
            Deployment.objects.for_user(self.request.user)
            .select_related("team", "catalog_version")
            .prefetch_related("appliances", "hosts", "peer_networks")
            .with_status_counts()
        )

    @extend_schema(
        request=DeploymentSerializer,
        responses={200: DeploymentSerializer, 201: DeploymentSerializer},
        description=(
            "Create the team's deployment of this name, or bring it to this document. Sending the same "
            "document again changes nothing; the `Deployment-Outcome` header says created, updated or "
            "unchanged. Fields left out keep their value."
        ),
    )
    @action(detail=False, methods=["post"])
    def upsert(self, request: Request) -> Response:
        data = request.data if isinstance(request.data, dict) else {}
        if not data.get("name"):
            raise serializers.ValidationError({"name": ["This field is required."]})
        matches = self.get_queryset().filter(name=data["name"])
        if data.get("team"):
            matches = matches.filter(team__name=data["team"])
        if len(matches[:2]) > 1:
            raise serializers.ValidationError({"team": ["Several of your teams have this deployment: name the team."]})
        instance = matches.first()
        serializer = self.get_serializer(instance, data=request.data, partial=instance is not None)
        serializer.is_valid(raise_exception=True)
        if instance is None:
            outcome, code = "created", status.HTTP_201_CREATED
        elif serializer.is_unchanged():
            outcome, code = "unchanged", status.HTTP_200_OK
        else:
            outcome, code = "updated", status.HTTP_200_OK
        if outcome != "unchanged":
            serializer.save()
        deployment = self.get_queryset().get(pk=serializer.instance.pk)
        return Response(self.get_serializer(deployment).data, status=code, headers={"Deployment-Outcome": outcome})


class ChecklistView(generics.GenericAPIView):
    """A deployment's checklist: what it was built from and its rules, as JSON or CSV."""

    filterset_class = ChecklistItemFilterSet
    renderer_classes = [JSONRenderer, BrowsableAPIRenderer, ChecklistCSVRenderer]
    pagination_class = None

    def get_queryset(self) -> QuerySet[ChecklistItem]:
        if getattr(self, "swagger_fake_view", False):
            return ChecklistItem.objects.none()
        # Thousands of items share a few dozen requirements: prefetching builds each
        # requirement once instead of once per row.
        return self.deployment.checklist.prefetch_related("requirement")

    @cached_property
    def deployment(self) -> Deployment:
        deployments = Deployment.objects.for_user(self.request.user).select_related("team", "catalog_version__product")
        return get_object_or_404(deployments, pk=self.kwargs["pk"])

    @extend_schema(
        filters=True,
        parameters=[OpenApiParameter("format", enum=["json", "csv"])],
        responses={(200, "application/json"): ChecklistSerializer, (200, "text/csv"): str},
    )
    def get(self, request: Request, *args: object, **kwargs: object) -> Response:
        items = self.filter_queryset(self.get_queryset())
        headers = {}
        if request.accepted_renderer.format == "csv":
            headers["Content-Disposition"] = f'attachment; filename="checklist-{self.deployment.pk}.csv"'
        context = {"items": items, "latest_results": ProbeResult.objects.latest_for(self.deployment)}
        return Response(ChecklistSerializer(self.deployment, context=context).data, headers=headers)


class ChecklistItemViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    filterset_class = ChecklistItemFilterSet

    def get_queryset(self) -> QuerySet[ChecklistItem]:
        if getattr(self, "swagger_fake_view", False):
            return ChecklistItem.objects.none()
        queryset = ChecklistItem.objects.filter(deployment__team__members=self.request.user)
        if self.action == "retrieve":
            return queryset.select_related("requirement").prefetch_related("history__user")
        return queryset.prefetch_related("requirement")

    def get_serializer_class(self) -> type[serializers.Serializer]:
        return ChecklistItemSerializer if self.action == "list" else ChecklistItemDetailSerializer

    def get_serializer(self, *args: object, **kwargs: object) -> serializers.Serializer:
        items = args[0] if args else None
        if items is not None:
            ids = [item.pk for item in (items if kwargs.get("many") else [items])]
            latest = ProbeResult.objects.filter(item__in=ids, is_latest=True)
            kwargs["context"] = self.get_serializer_context() | {"latest_results": {r.item_id: r for r in latest}}
        return super().get_serializer(*args, **kwargs)

    def retrieve(self, request: Request, *args: object, **kwargs: object) -> Response:
        item = self.get_object()
        return Response(self.get_serializer(item).data, headers={"ETag": item.etag})

    @extend_schema(
        request=StatusUpdateSerializer,
        parameters=[OpenApiParameter("If-Match", location="header", required=False, description="The item's ETag.")],
        responses={200: ChecklistItemDetailSerializer, 412: OpenApiResponse(description="Changed meanwhile.")},
    )
    def partial_update(self, request: Request, *args: object, **kwargs: object) -> Response:
        item = self.get_object()
        change = StatusUpdateSerializer(data=request.data)
        change.is_valid(raise_exception=True)
        try:
            item.change_status(
                **change.validated_data, user=request.user, expected_revision=if_match_revision(request, item)
            )
        except StaleRevision as stale:
            return Response(
                {"detail": f"{stale} Reload the item and apply your change again."},
                status=status.HTTP_412_PRECONDITION_FAILED,
                headers={"ETag": f'"{item.pk}-{stale.current_revision}"'},
            )
        item = self.get_object()
        return Response(self.get_serializer(item).data, headers={"ETag": item.etag})


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


# --- Exports ----------------------------------------------------------------------------


def attachment(content: bytes | str, content_type: str, filename: str, fingerprint: str) -> HttpResponse:
    """A file to download, with the fingerprint of the rule set it holds."""
    headers = {"Content-Disposition": f'attachment; filename="{filename}"', "Checklist-Fingerprint": fingerprint}
    return HttpResponse(content, content_type=content_type, headers=headers)


class DeploymentExportView(APIView):
    """An export of a deployment's rules; query parameters as ExportParams."""

    @cached_property
    def deployment(self) -> Deployment:
        deployments = Deployment.objects.for_user(self.request.user).select_related("team", "catalog_version__product")
        return get_object_or_404(deployments, pk=self.kwargs["pk"])

    def params(self, data: object) -> dict:
        params = ExportParams(data=data, context={"deployment": self.deployment})
        params.is_valid(raise_exception=True)
        return params.validated_data


class ChangeRequestPDFView(DeploymentExportView):
    @extend_schema(
        parameters=[ExportParams],
        responses={(200, "application/pdf"): OpenApiTypes.BINARY},
        description="The change request as PDF; the `Checklist-Fingerprint` header is its rule set's SHA-256. "
        f"Above {settings.EXPORT_SYNC_RULES} rules, use POST /api/deployments/{{id}}/change-requests/.",
    )
    def get(self, request: Request, pk: str) -> HttpResponse:
        params = self.params(request.query_params)
        rule_set = RuleSet.build(self.deployment, params)
        if len(rule_set.rules) > settings.EXPORT_SYNC_RULES:
            raise serializers.ValidationError(
                {
                    "scope": [
                        f"{len(rule_set.rules)} rules: request it with POST /api/deployments/{pk}/change-requests/."
                    ]
                }
            )
        pdf = render_pdf(render_html(rule_set, params, request.user))
        rule_set.remember("pdf", request.user)
        name = f"change-request-{self.deployment.pk}-{rule_set.fingerprint[:12]}.pdf"
        return attachment(pdf, "application/pdf", name, rule_set.fingerprint)


class FirewallExportView(DeploymentExportView):
    @extend_schema(parameters=[ExportParams], responses={(200, "text/plain"): str})
    def get(self, request: Request, pk: str, syntax: str) -> HttpResponse:
        if syntax not in SYNTAXES:
            raise NotFound(f"Unknown syntax {syntax!r}; known: {', '.join(SYNTAXES)}.")
        render, suffix = SYNTAXES[syntax]
        rule_set = RuleSet.build(self.deployment, self.params(request.query_params))
        title = f"{self.deployment.name} ({self.deployment.team}), {self.deployment.catalog_version}"
        text = render(rule_set.rules, title, rule_set.fingerprint, f"fes_{self.deployment.pk}")
        rule_set.remember(syntax, request.user)
        return attachment(
            text, "text/plain; charset=utf-8", f"deployment-{self.deployment.pk}.{suffix}", rule_set.fingerprint
        )


class XlsxExportView(DeploymentExportView):
    @extend_schema(parameters=[ExportParams], responses={(200, XLSX): OpenApiTypes.BINARY})
    def get(self, request: Request, pk: str) -> HttpResponse:
        rule_set = RuleSet.build(self.deployment, self.params(request.query_params))
        workbook = to_xlsx(rule_set.rules, f"{self.deployment.name} ({self.deployment.team})", rule_set.fingerprint)
        return attachment(workbook, XLSX, f"checklist-{self.deployment.pk}.xlsx", rule_set.fingerprint)


class ChecklistDiffView(DeploymentExportView):
    """The rules added and removed since an earlier export (`since`: its fingerprint)."""

    @extend_schema(parameters=[ExportParams], responses={200: {"type": "object"}})
    def get(self, request: Request, pk: str) -> Response:
        params = self.params(request.query_params)
        if "since" not in params:
            raise serializers.ValidationError({"since": ["Give the fingerprint of an earlier export."]})
        diff = RuleSet.build(self.deployment, params).diff(params["since"])
        return Response(diff | {"added": rules_as_dicts(diff["added"])})


class CatalogDiffView(APIView):
    """Requirements added, removed and changed between two catalog versions."""

    @extend_schema(
        parameters=[OpenApiParameter("from", required=True), OpenApiParameter("to", required=True)],
        responses={200: {"type": "object"}},
    )
    def get(self, request: Request) -> Response:
        versions = {}
        for name in ("from", "to"):
            value = request.query_params.get(name, "")
            version = CatalogVersion.objects.filter(version=value).order_by("-loaded_at").first()
            if version is None:
                raise serializers.ValidationError({name: [f"No catalog version {value!r}."]})
            versions[name] = version
        return Response(catalog_diff(versions["from"], versions["to"]))


class ChangeRequestJobView(DeploymentExportView):
    """Render a (large) change request in a worker; poll the job, then download the PDF."""

    @extend_schema(request=ExportParams, responses={202: ChangeRequestJobSerializer})
    def post(self, request: Request, pk: str) -> Response:
        params = self.params(request.data)
        job = ChangeRequestJob.objects.create(
            deployment=self.deployment, requested_by=request.user, params=ExportParams(params).data
        )
        transaction.on_commit(lambda: render_change_request.apply_async((job.pk,), task_id=f"change-request-{job.pk}"))
        return Response(
            ChangeRequestJobSerializer(job).data,
            status=status.HTTP_202_ACCEPTED,
            headers={"Location": f"/api/change-requests/{job.pk}/"},
        )


class ChangeRequestJobViewSet(mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = ChangeRequestJobSerializer

    def get_queryset(self) -> QuerySet[ChangeRequestJob]:
        if getattr(self, "swagger_fake_view", False):
            return ChangeRequestJob.objects.none()
        return ChangeRequestJob.objects.filter(deployment__team__members=self.request.user).defer("pdf")

    @extend_schema(responses={(200, "application/pdf"): OpenApiTypes.BINARY})
    @action(detail=True)
    def pdf(self, request: Request, pk: str) -> HttpResponse:
        job = self.get_object()
        if job.status != ChangeRequestJob.Status.DONE:
            raise NotFound(f"The change request is {job.status} ({job.progress} %), not ready.")
        return attachment(
            bytes(job.pdf), "application/pdf", f"change-request-{job.deployment_id}-{job.pk}.pdf", job.fingerprint
        )
