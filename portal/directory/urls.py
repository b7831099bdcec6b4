"""OpenID Connect sign-in's two URLs, under /oidc/; both answer 404 unless it is configured.

mozilla-django-oidc's own urls would also bring its logout view, which the portal's logout does;
its views reverse the callback by its name, oidc_authentication_callback."""

from django.urls import path

from . import oidc

urlpatterns = [
    path("authenticate/", oidc.SignInView.as_view(), name="oidc_authentication_init"),
    path("callback/", oidc.CallbackView.as_view(), name="oidc_authentication_callback"),
]
