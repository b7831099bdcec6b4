from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from . import api

router = DefaultRouter()
router.register("catalog/versions", api.CatalogVersionViewSet, basename="catalogversion")
router.register("catalog/requirements", api.RequirementViewSet, basename="requirement")
router.register("deployments", api.DeploymentViewSet, basename="deployment")
router.register("checklist-items", api.ChecklistItemViewSet, basename="checklistitem")
router.register("change-requests", api.ChangeRequestJobViewSet, basename="changerequest")

urlpatterns = [
    path("me/", api.MeView.as_view(), name="me"),
    path("deployments/<int:pk>/checklist/", api.ChecklistView.as_view(), name="deployment-checklist"),
    path("deployments/<int:pk>/checklist.xlsx", api.XlsxExportView.as_view(), name="deployment-xlsx"),
    path("deployments/<int:pk>/checklist.csv", api.CsvExportView.as_view(), name="deployment-csv"),
    path("deployments/<int:pk>/checklist/diff/", api.ChecklistDiffView.as_view(), name="deployment-diff"),
    path("deployments/<int:pk>/checklist/verify-open/", api.VerifyOpenView.as_view(), name="deployment-verify-open"),
    path("deployments/<int:pk>/change-request.pdf", api.ChangeRequestPDFView.as_view(), name="deployment-pdf"),
    path("deployments/<int:pk>/change-requests/", api.ChangeRequestJobView.as_view(), name="deployment-pdf-jobs"),
    path("deployments/<int:pk>/firewall/<str:syntax>/", api.FirewallExportView.as_view(), name="deployment-firewall"),
    path("catalog/diff/", api.CatalogDiffView.as_view(), name="catalog-diff"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    *router.urls,
]
