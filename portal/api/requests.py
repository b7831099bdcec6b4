"""Change requests as objects (ports.models.ChangeRequest): drafted from a deployment's rules,
then taken step by step: POST /api/requests/{id}/{action}/ (submit, approve, reject, implement,
verify, close). A step the request's state does not allow is a 409, one the caller's role (or
four eyes) does not allow a 403, each saying why; a verification held back by rules names them."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, mixins, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from ports.choices import RequestAction, TeamRole
from ports.models import ChangeRequest, RequestRefused
from ports.scoping import TeamScoped

from .serializers import ChangeRequestSerializer, RequestStepBodySerializer

REQUESTS = ChangeRequest.objects.select_related("deployment__team", "requested_by").prefetch_related(
    "transitions", "probe_runs"
)


class DeploymentChangeRequestsView(TeamScoped, generics.ListCreateAPIView):
    """A deployment's change requests, newest first; POST drafts one from some of its rules."""

    serializer_class = ChangeRequestSerializer

    def get_queryset(self) -> QuerySet[ChangeRequest]:
        if getattr(self, "swagger_fake_view", False):
            return ChangeRequest.objects.none()
        return REQUESTS.filter(deployment=self.deployment)

    def get_serializer_context(self) -> dict:
        return {**super().get_serializer_context(), "deployment": self.deployment}

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
        responses={
            200: ChangeRequestSerializer,
            403: OpenApiResponse(description="Your role, or four eyes, does not allow this step."),
            409: OpenApiResponse(description="The request's state does not allow this step; or rules hold it back."),
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
            answer = {"detail": str(refused)}
            if refused.held:
                answer["holding_back"] = [{"number": number, "why": why} for number, why in refused.held]
            code = 409 if refused.conflict else 403 if refused.forbidden else 400
            return Response(answer, status=code)
        fresh = self.get_queryset().get(pk=change_request.pk)
        return Response(ChangeRequestSerializer(fresh, context=self.get_serializer_context()).data)
