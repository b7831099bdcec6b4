"""Your API tokens (ports.models.ApiToken): make one, its key shown this once; see when each was
used and when it expires; revoke one. A team's admins revoke their members' on the team's page
(portal.pages.teams)."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
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


@login_required
@never_cache  # the answer to a POST holds a key: no cache keeps it
def tokens(request: HttpRequest) -> HttpResponse:
    """The user's tokens and the form that makes one; a token made shows its key above, this once."""
    form = TokenForm(request.POST or None)
    made, key = None, ""
    if request.method == "POST" and form.is_valid():
        made, key = ApiToken.issue(request.user, form.cleaned_data["name"], form.cleaned_data["days"])
        form = TokenForm()  # blank again, for the next one
    context = {"form": form, "tokens": ApiToken.objects.filter(user=request.user), "made": made, "key": key}
    return render(request, "ports/tokens.html", context)


@login_required
@require_POST
def token_revoke(request: HttpRequest, token_key: str) -> HttpResponse:
    found = get_object_or_404(ApiToken.objects.filter(user=request.user), token_key=token_key)
    found.delete()
    messages.success(request, f"Token {found.name} ({found.token_key}…) revoked: it no longer works.")
    return redirect("tokens")
