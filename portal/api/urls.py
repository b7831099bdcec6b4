from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from . import ports, probes, requests, tokens

router = DefaultRouter()
router.register("catalog/versions", ports.CatalogVersionViewSet, basename="catalogversion")
router.register("catalog/requirements", ports.RequirementViewSet, basename="requirement")
router.register("deployments", ports.DeploymentViewSet, basename="deployment")
router.register("checklist-items", ports.ChecklistItemViewSet, basename="checklistitem")
router.register("change-requests", ports.ChangeRequestJobViewSet, basename="changerequest")
router.register("probe-runs", probes.ProbeRunViewSet, basename="proberun")
router.register("tls-pins", probes.TlsPinViewSet, basename="tlspin")
router.register("alert-channels", probes.AlertChannelViewSet, basename="alertchannel")
router.register("alerts", probes.AlertViewSet, basename="alert")
router.register("requests", requests.ChangeRequestViewSet, basename="request")
router.register("changes", ports.ObjectChangeViewSet, basename="objectchange")
router.register("tokens", tokens.TokenViewSet, basename="apitoken")

urlpatterns = [
    path("me/", ports.MeView.as_view(), name="me"),
    path("deployments/<int:pk>/checklist/", ports.ChecklistView.as_view(), name="deployment-checklist"),
    path("deployments/<int:pk>/checklist.xlsx", ports.XlsxExportView.as_view(), name="deployment-xlsx"),
    path("deployments/<int:pk>/checklist.csv", ports.CsvExportView.as_view(), name="deployment-csv"),
    path("deployments/<int:pk>/checklist/diff/", ports.ChecklistDiffView.as_view(), name="deployment-diff"),
    path("deployments/<int:pk>/checklist/verify-open/", ports.VerifyOpenView.as_view(), name="deployment-verify-open"),
    path("deployments/<int:pk>/checklist/status/", ports.BulkStatusView.as_view(), name="deployment-bulk-status"),
    path("deployments/<int:pk>/change-request.pdf", ports.ChangeRequestPDFView.as_view(), name="deployment-pdf"),
    path("deployments/<int:pk>/change-requests/", ports.ChangeRequestJobView.as_view(), name="deployment-pdf-jobs"),
    path("deployments/<int:pk>/firewall/<str:syntax>/", ports.FirewallExportView.as_view(), name="deployment-firewall"),
    path("deployments/<int:pk>/probe-runs/", probes.DeploymentProbeRunsView.as_view(), name="deployment-probe-runs"),
    path("deployments/<int:pk>/tls-pins/", probes.DeploymentTlsPinsView.as_view(), name="deployment-tls-pins"),
    path("deployments/<int:pk>/requests/", requests.DeploymentChangeRequestsView.as_view(), name="deployment-requests"),
    # Before the steps' route, whose <action> would take "pdf" (and answer its GET 405).
    path("requests/<int:pk>/pdf/", requests.ChangeRequestPDFView.as_view(), name="request-pdf"),
    path("requests/<int:pk>/<str:action>/", requests.ChangeRequestStepView.as_view(), name="request-step"),
    path("probe-sites/", probes.ProbeSitesView.as_view(), name="probe-sites"),
    path("teams/<int:pk>/tokens/", tokens.TeamTokensView.as_view(), name="team-tokens"),
    path("teams/<int:pk>/tokens/<token_key:token_key>/", tokens.TeamTokenView.as_view(), name="team-token"),
    path("catalog/diff/", ports.CatalogDiffView.as_view(), name="catalog-diff"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    *router.urls,
]
