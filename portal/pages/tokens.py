"""Your API tokens (ports.models.ApiToken): make one, its key shown this once; see when each was
used and when it expires; revoke one. A team's admins revoke their members' on the team's page
(portal.pages.teams)."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from ports.models import ApiToken
from ports.validators import validate_name, validate_token_days


class TokenForm(forms.Form):
    name = forms.CharField(
        max_length=ApiToken._meta.get_field("name").max_length,
        validators=[validate_name],
        help_text="What it is for: the script or tool that sends it.",
    )
    days = forms.IntegerField(label="Lifetime (days)", validators=[validate_token_days])

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        days = self.fields["days"]
        days.initial = settings.API_TOKEN_DAYS
        days.help_text = f"At most {settings.API_TOKEN_MAX_DAYS}."
        days.widget.attrs.update(min=1, max=settings.API_TOKEN_MAX_DAYS)


# The key of a token just made goes to the page after the redirect in a cookie of its own: signed
# for its user, sent to this page only, for a minute, and deleted once shown. A reload then makes
# no second token, and the portal keeps the key nowhere, not even in a session.
NEW_KEY = "new_token"
NEW_KEY_SECONDS = 60


@login_required
@never_cache  # the page may hold a key: no cache keeps it
def tokens(request: HttpRequest) -> HttpResponse:
    """The user's tokens and the form that makes one; a token made shows its key above, this once."""
    form = TokenForm(request.POST or None)
    salt = f"{NEW_KEY}-{request.user.pk}"
    if request.method == "POST" and form.is_valid():
        _, key = ApiToken.issue(request.user, form.cleaned_data["name"], form.cleaned_data["days"])
        made = redirect("tokens")
        made.set_signed_cookie(
            NEW_KEY,
            key,
            salt=salt,
            max_age=NEW_KEY_SECONDS,
            path=reverse("tokens"),
            secure=settings.SESSION_COOKIE_SECURE,
            httponly=True,
            samesite="Strict",
        )
        return made
    key = request.get_signed_cookie(NEW_KEY, default="", salt=salt, max_age=NEW_KEY_SECONDS)
    made = ApiToken.find(key) if key else None
    if made is None or made.user_id != request.user.pk:
        made, key = None, ""
    context = {"form": form, "tokens": ApiToken.objects.filter(user=request.user), "made": made, "key": key}
    page = render(request, "ports/tokens.html", context)
    if NEW_KEY in request.COOKIES:
        page.delete_cookie(NEW_KEY, path=reverse("tokens"), samesite="Strict")
    return page


@login_required
@require_POST
def token_revoke(request: HttpRequest, token_key: str) -> HttpResponse:
    revoked = ApiToken.objects.filter(user=request.user).revoke(token_key)
    if not revoked:
        raise Http404("You have no token named so.")
    for token in revoked:
        messages.success(request, f"Token {token.name} ({token.token_key}…) revoked: it no longer works.")
    return redirect("tokens")
