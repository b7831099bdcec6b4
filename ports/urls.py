from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from . import api

router = DefaultRouter()
router.register("catalog/versions", api.CatalogVersionViewSet, basename="catalogversion")
router.register("catalog/requirements", api.RequirementViewSet, basename="requirement")
router.register("deployments", api.DeploymentViewSet, basename="deployment")
router.register("checklist-items", api.ChecklistItemViewSet, basename="checklistitem")

urlpatterns = [
    path("me/", api.MeView.as_view(), name="me"),
    path("deployments/<int:pk>/checklist/", api.ChecklistView.as_view(), name="deployment-checklist"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
    *router.urls,
]
