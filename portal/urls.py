from django.contrib import admin
from django.urls import include, path

from portal import converters, health  # noqa: F401 (converters registers <token_key:...>)
from portal.pages import alerts, changes, checklist, requests, teams, tokens

urlpatterns = [
    path("", checklist.deployment_list, name="deployments"),
    path("deployments/new/", checklist.deployment_form, name="deployment-create"),
    path("deployments/<int:pk>/", checklist.checklist, name="checklist"),
    path("deployments/<int:pk>/panel/", checklist.checklist_panel, name="checklist-panel"),
    path("deployments/<int:pk>/rows/", checklist.checklist_rows, name="checklist-rows"),
    path("deployments/<int:pk>/edit/", checklist.deployment_form, name="deployment-edit"),
    path("deployments/<int:pk>/delete/", checklist.deployment_delete, name="deployment-delete"),
    path("deployments/<int:pk>/history/", changes.deployment_history, name="deployment-history"),
    path("deployments/<int:pk>/requests/", requests.deployment_requests, name="deployment-change-requests"),
    path("requests/<int:pk>/", requests.change_request, name="change-request"),
    path("requests/<int:pk>/<str:action>/", requests.change_request_step, name="change-request-step"),
    path("changes/", changes.changes, name="changes"),
    path("teams/", teams.team_list, name="teams"),
    path("teams/<int:pk>/", teams.team, name="team"),
    path("teams/<int:pk>/members/<int:user_id>/", teams.team_member, name="team-member"),
    path("teams/<int:pk>/tokens/<token_key:token_key>/revoke/", teams.team_token_revoke, name="team-token-revoke"),
    path("tokens/", tokens.tokens, name="tokens"),
    path("tokens/<token_key:token_key>/revoke/", tokens.token_revoke, name="token-revoke"),
    path("catalog/", checklist.catalog, name="catalog"),
    path("alerts/", alerts.alert_channels, name="alerts"),
    path("alerts/recent/", alerts.recent_alerts, name="alert-rows"),
    path("alerts/channels/<int:pk>/<str:action>/", alerts.alert_channel_action, name="alert-channel-action"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("oidc/", include("portal.directory.urls")),
    path("admin/", admin.site.urls),
    path("api/", include("portal.api.urls")),
    path("api-auth/", include("rest_framework.urls")),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics, name="metrics"),
]
