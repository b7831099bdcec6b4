"""Change requests as objects (ports.models.ChangeRequest): drafted from a deployment's rules,
then taken step by step: POST /api/requests/{id}/{action}/ (submit, approve, reject, implement,
verify, close). A step the request's state does not allow is a 409, one the caller's role (or
four eyes) does not allow a 403, each saying why; a verification held back by rules names them.
GET /api/requests/{id}/pdf/ is its PDF: its rules, its state and its record."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404, HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import generics, mixins, serializers, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from ports.choices import Outcome, RequestAction, TeamRole
from ports.exports.layout import render_pdf
from ports.exports.pdf import of_change_request
from ports.models import ChangeRequest, RequestRefused
from ports.scoping import TeamScoped

from .outcomes import answer, outcome_header, written
from .ports import AnyAccept, attachment
from .schema import FINGERPRINT
from .serializers import ChangeRequestSerializer, HeldRuleSerializer, RequestStepBodySerializer

# What a draft and a step answer: the request, and what the write did (as every write says it).
WrittenChangeRequestSerializer = written(ChangeRequestSerializer)
# A step's 409: the API's error shape (`detail`) and, for a verification, the rules that hold it back.
RequestConflictSerializer = inline_serializer(
    "RequestConflict",
    {
        "detail": serializers.CharField(help_text="What went wrong, in words."),
        "holding_back": HeldRuleSerializer(
            many=True, required=False, help_text="A verification's rules that do not probe open (nor are waived)."
        ),
    },
)

REQUESTS = ChangeRequest.objects.with_progress()


class DeploymentChangeRequestsView(TeamScoped, generics.ListCreateAPIView):
    """A deployment's change requests, newest first; POST drafts one from some of its rules."""

    serializer_class = ChangeRequestSerializer

    def get_queryset(self) -> QuerySet[ChangeRequest]:
        if getattr(self, "swagger_fake_view", False):
            return ChangeRequest.objects.none()
        return REQUESTS.filter(deployment=self.deployment)

    def get_serializer_context(self) -> dict:
        return {**super().get_serializer_context(), "deployment": self.deployment}

    @extend_schema(responses={201: WrittenChangeRequestSerializer}, parameters=[outcome_header([201])])
    def post(self, request: Request, *args: object, **kwargs: object) -> Response:
        return super().post(request, *args, **kwargs)

    def create(self, request: Request, *args: object, **kwargs: object) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        self.perform_create(serializer)
        context = {**self.get_serializer_context(), "outcome": Outcome.CREATED}
        return answer(WrittenChangeRequestSerializer(serializer.instance, context=context).data, Outcome.CREATED)

    def perform_create(self, serializer: ChangeRequestSerializer) -> None:
        fields = {
            name: serializer.validated_data[name] for name in ChangeRequest.FIELDS if name in serializer.validated_data
        }
        serializer.instance = ChangeRequest.draft(
            self.deployment, self.request.user, serializer.validated_data["items"], **fields
        )


class ChangeRequestViewSet(TeamScoped, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Your teams' change requests; each with its record and the steps you may take."""

    queryset = REQUESTS.order_by("-created", "-id")
    serializer_class = ChangeRequestSerializer


class ChangeRequestStepView(TeamScoped, generics.GenericAPIView):
    """Take a step of a change request. Its role is the step's own (ChangeRequest.TRANSITIONS),
    checked by the request, so that a viewer hears which role approving needs."""

    queryset = REQUESTS
    serializer_class = RequestStepBodySerializer
    write_role = TeamRole.VIEWER

    @extend_schema(
        request=RequestStepBodySerializer,
        parameters=[outcome_header([200])],
        responses={
            200: WrittenChangeRequestSerializer,
            403: OpenApiResponse(description="Your role, or four eyes, does not allow this step."),
            409: OpenApiResponse(
                RequestConflictSerializer,
                description="The request's state does not allow this step; or rules hold it back.",
            ),
        },
    )
    def post(self, request: Request, pk: str, action: str) -> Response:
        if action not in RequestAction.values:
            raise Http404(f"No step is called {action[:40]!r}: {', '.join(RequestAction.values)}.")
        change_request: ChangeRequest = self.get_object()
        body = RequestStepBodySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            change_request.take(action, request.user, body.validated_data["comment"])
        except RequestRefused as refused:
            said = {"detail": str(refused)}
            if refused.held:
                said["holding_back"] = [{"number": number, "why": why} for number, why in refused.held]
            code = 409 if refused.conflict else 403 if refused.forbidden else 400
            return Response(said, status=code)
        fresh = self.get_queryset().get(pk=change_request.pk)
        context = {**self.get_serializer_context(), "outcome": Outcome.UPDATED}
        return answer(WrittenChangeRequestSerializer(fresh, context=context).data, Outcome.UPDATED)


class ChangeRequestPDFView(AnyAccept, TeamScoped, generics.GenericAPIView):
    """A change request as the PDF a change advisory board reads: exactly its rules, its CAB
    fields, and, in place of signature lines, its state and each step with who, when and why."""

    queryset = REQUESTS
    serializer_class = ChangeRequestSerializer  # for the schema's sake: the answer is the PDF

    @extend_schema(
        responses={(200, "application/pdf"): OpenApiTypes.BINARY},
        parameters=[FINGERPRINT],
        description="The change request as PDF; the `Checklist-Fingerprint` header is its rule set's SHA-256.",
    )
    def get(self, request: Request, pk: str) -> HttpResponse:
        document = of_change_request(self.get_object())
        pdf = render_pdf(document)
        # Kept as every PDF's rule set is, so that a later export can list the changes since it.
        fingerprint = document.rule_set.remember("pdf", request.user)
        return attachment(pdf, "application/pdf", f"change-request-CR-{pk}.pdf", fingerprint)
