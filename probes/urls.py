from django.urls import path
from rest_framework.routers import SimpleRouter

from . import api

router = SimpleRouter()
router.register("probe-runs", api.ProbeRunViewSet, basename="proberun")
router.register("tls-pins", api.TlsPinViewSet, basename="tlspin")
router.register("alert-channels", api.AlertChannelViewSet, basename="alertchannel")
router.register("alerts", api.AlertViewSet, basename="alert")

urlpatterns = [
    path("deployments/<int:pk>/probe-runs/", api.DeploymentProbeRunsView.as_view(), name="deployment-probe-runs"),
    path("deployments/<int:pk>/tls-pins/", api.DeploymentTlsPinsView.as_view(), name="deployment-tls-pins"),
    path("probe-sites/", api.ProbeSitesView.as_view(), name="probe-sites"),
    *router.urls,
]
