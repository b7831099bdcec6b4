from django.contrib import admin
from django.urls import include, path

from portal import health
from ports import views
from probes import views as probe_views

urlpatterns = [
    path("", views.deployment_list, name="deployment-list"),
    path("deployments/new/", views.deployment_form, name="deployment-create"),
    path("deployments/<int:pk>/", views.checklist, name="checklist"),
    path("deployments/<int:pk>/panel/", views.checklist_panel, name="checklist-panel"),
    path("deployments/<int:pk>/edit/", views.deployment_form, name="deployment-edit"),
    path("catalog/", views.catalog, name="catalog"),
    path("alerts/", probe_views.alert_channels, name="alerts"),
    path("alerts/channels/<int:pk>/<str:action>/", probe_views.alert_channel_action, name="alert-channel-action"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("api/", include("ports.urls")),
    path("api/", include("probes.urls")),
    path("api-auth/", include("rest_framework.urls")),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics, name="metrics"),
]
