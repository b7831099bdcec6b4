from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(url="/api/", permanent=False)),
    path("admin/", admin.site.urls),
    path("api/", include("ports.urls")),
    path("api/", include("probes.urls")),
    path("api-auth/", include("rest_framework.urls")),
]
