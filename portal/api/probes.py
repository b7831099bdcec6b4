from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import exceptions, generics, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.errors import ServiceUnavailable
from ports.models import Deployment
from ports.scoping import TeamScoped
from probes.alerts.raising import send_test_alert
from probes.models import Alert, AlertChannel, ProbeRun, TlsPin, TooManyRuns, WorkerHeartbeat
from probes.serializers import (
    AlertChannelSerializer,
    AlertSerializer,
    ProbeRunDetailSerializer,
    ProbeRunRequestSerializer,
    ProbeRunSerializer,
    ProbeSitesSerializer,
    TlsPinSerializer,
    WorkerHeartbeatSerializer,
)

from .outcomes import answer, outcome_header, written
from .schema import location

WrittenTlsPinSerializer = written(TlsPinSerializer)
WrittenAlertChannelSerializer = written(AlertChannelSerializer)


class DeploymentProbeRunsView(TeamScoped, generics.ListCreateAPIView):
    """A deployment's probe runs; POST starts one (all items, or a selection)."""

    serializer_class = ProbeRunSerializer

    def get_queryset(self) -> QuerySet[ProbeRun]:
        if getattr(self, "swagger_fake_view", False):
            return ProbeRun.objects.none()
        return self.deployment.probe_runs.all()

    @extend_schema(
        request=ProbeRunRequestSerializer, responses={202: ProbeRunSerializer}, parameters=[location("probe run")]
    )
    def post(self, request: Request, *args: object, **kwargs: object) -> Response:
        selection = ProbeRunRequestSerializer(data=request.data, context={"deployment": self.deployment})
        selection.is_valid(raise_exception=True)
        items = selection.selected_items()
        try:
            run = ProbeRun.start(self.deployment, request.user, items)
        except TooManyRuns as limit:
            raise exceptions.Throttled(wait=60, detail=str(limit)) from limit
        if run.unsent:
            raise ServiceUnavailable(f"Probe run {run.pk}: {run.unsent}. Start it again when the broker is back.")
        headers = {"Location": f"/api/probe-runs/{run.pk}/"}
        return Response(ProbeRunSerializer(run).data, status=status.HTTP_202_ACCEPTED, headers=headers)


class ProbeRunViewSet(TeamScoped, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = ProbeRun.objects.all()

    def get_serializer_class(self) -> type:
        return ProbeRunSerializer if self.action == "list" else ProbeRunDetailSerializer

    @extend_schema(request=None, responses={200: ProbeRunSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        run = self.get_object()
        if not run.is_finished:
            run.cancel()
        return Response(ProbeRunSerializer(run).data)


class ProbeSitesView(APIView):
    """The probe sites your deployments use, and whether a live worker serves each."""

    @extend_schema(responses={200: ProbeSitesSerializer})
    def get(self, request: Request) -> Response:
        used = Deployment.objects.for_user(request.user).sites()
        # Only the sites of the user's deployments: other teams' workers are none of their business.
        workers = WorkerHeartbeat.objects.live().filter(site__in=used)
        live = {w.site for w in workers}
        sites = [
            {
                "site": site,
                "live_worker": site in live,
                "used_by_your_deployments": site in used,
                "workers": WorkerHeartbeatSerializer([w for w in workers if w.site == site], many=True).data,
            }
            for site in sorted(used)
        ]
        return Response({"sites": sites})


@extend_schema_view(
    post=extend_schema(
        responses={201: WrittenTlsPinSerializer, 200: WrittenTlsPinSerializer},
        parameters=[outcome_header([200, 201])],
        description=(
            "Expect this key of the TLS service at host and port: 201 created; 200 updated when the service "
            "had another pin (replaced) or one a probe trusted on first use; 200 unchanged when it already "
            "expects this key (the same create sent again)."
        ),
    )
)
class DeploymentTlsPinsView(TeamScoped, generics.ListCreateAPIView):
    """Expected TLS public keys; a probe that sees another key reports intercepted."""

    serializer_class = TlsPinSerializer
    pagination_class = None

    def get_queryset(self) -> QuerySet[TlsPin]:
        if getattr(self, "swagger_fake_view", False):
            return TlsPin.objects.none()
        return self.deployment.tls_pins.all()

    def create(self, request: Request, *args: object, **kwargs: object) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        pin = serializer.save(deployment=self.deployment)
        return answer(WrittenTlsPinSerializer(pin, context={"outcome": serializer.outcome}).data, serializer.outcome)


class TlsPinViewSet(TeamScoped, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """Forget a pin: the next probe trusts what it sees first."""

    queryset = TlsPin.objects.all()
    serializer_class = TlsPinSerializer


CHANNEL_WRITE = {"responses": {200: WrittenAlertChannelSerializer}, "parameters": [outcome_header([200])]}


@extend_schema_view(
    create=extend_schema(
        responses={201: WrittenAlertChannelSerializer, 200: WrittenAlertChannelSerializer},
        parameters=[outcome_header([200, 201])],
        description=(
            "Add a channel: 201 created. The same channel sent again (its team, name, kind, target and "
            "enabled) answers 200 with it, unchanged; another channel under a name taken is a 400."
        ),
    ),
    update=extend_schema(**CHANNEL_WRITE),
    partial_update=extend_schema(**CHANNEL_WRITE),
)
class AlertChannelViewSet(TeamScoped, viewsets.ModelViewSet):
    """Your teams' alert channels: email addresses and signed webhooks."""

    queryset = AlertChannel.objects.select_related("team")
    serializer_class = AlertChannelSerializer

    def create(self, request: Request, *args: object, **kwargs: object) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return self.answer_written(serializer, serializer.save())

    def update(self, request: Request, *args: object, **kwargs: object) -> Response:
        partial = kwargs.get("partial", False)
        serializer = self.get_serializer(self.get_object(), data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        return self.answer_written(serializer, serializer.save())

    def answer_written(self, serializer: AlertChannelSerializer, channel: AlertChannel) -> Response:
        context = {**self.get_serializer_context(), "outcome": serializer.outcome}
        return answer(WrittenAlertChannelSerializer(channel, context=context).data, serializer.outcome)

    @extend_schema(request=None, responses={202: AlertSerializer})
    @action(detail=True, methods=["post"])
    def test(self, request: Request, pk: str) -> Response:
        """Send a test alert to this channel only; its delivery shows in GET /api/alerts/{id}/."""
        alert = send_test_alert(self.get_object(), request.user)
        return Response(AlertSerializer(alert).data, status=status.HTTP_202_ACCEPTED)


class AlertViewSet(TeamScoped, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Your teams' alerts, newest first, with each channel's delivery."""

    queryset = Alert.objects.select_related("team").prefetch_related("deliveries__channel")
    serializer_class = AlertSerializer
