"""Your teams, their members and roles: every member reads the list; the team's admins give the
roles, add members and take them out (Membership.give, Membership.leave), here as in /admin/, and
see and revoke their members' API tokens."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from ports.choices import Outcome, TeamRole
from ports.models import ApiToken, LastAdmin, Membership, Team
from ports.scoping import require_role


class MemberForm(forms.Form):
    username = forms.CharField(max_length=150, label="User name")
    role = forms.ChoiceField(choices=TeamRole.choices, initial=TeamRole.VIEWER)

    def clean_username(self) -> object:
        name = self.cleaned_data["username"].strip()
        user = get_user_model().objects.filter(username=name).first()
        if user is None:
            raise forms.ValidationError(f"No user is named {name!r}: they sign in once, or an admin adds them.")
        return user


@login_required
def team_list(request: HttpRequest) -> HttpResponse:
    memberships = Membership.objects.filter(user=request.user).select_related("team").order_by("team__name")
    return render(request, "ports/teams.html", {"memberships": memberships})


@login_required
def team(request: HttpRequest, pk: int) -> HttpResponse:
    """The team's members with their roles; its admins change them here."""
    found = get_object_or_404(Team.objects.for_user(request.user), pk=pk)
    form = MemberForm(request.POST or None)
    if request.method == "POST":
        require_role(request.user, found, TeamRole.ADMIN)
        if form.is_valid():
            member, outcome = Membership.give(found, form.cleaned_data["username"], form.cleaned_data["role"])
            said = {Outcome.CREATED: "added as", Outcome.UPDATED: "is now", Outcome.UNCHANGED: "already is"}[outcome]
            messages.success(request, f"{member.user} {said} {member.get_role_display().lower()}.")
            return redirect("team", pk=found.pk)
    members = found.memberships.select_related("user").order_by("user__username")
    mine = next((m.role for m in members if m.user_id == request.user.pk), None)
    is_admin = mine == TeamRole.ADMIN
    context = {"team": found, "members": members, "form": form, "is_admin": is_admin, "roles": TeamRole}
    if is_admin:  # the members' API tokens, which the admin may revoke
        context["tokens"] = ApiToken.objects.of_team(found, request.user)
    return render(request, "ports/team.html", context)


@login_required
@require_POST
def team_member(request: HttpRequest, pk: int, user_id: int) -> HttpResponse:
    """A team admin gives a member another role (`role`) or takes them out (`remove`)."""
    found = get_object_or_404(Team.objects.for_user(request.user), pk=pk)
    require_role(request.user, found, TeamRole.ADMIN)
    member = get_object_or_404(found.memberships.select_related("user"), user_id=user_id)
    try:
        if "remove" in request.POST:
            member.leave()
            messages.success(request, f"{member.user} is no longer a member of {found}.")
        elif request.POST.get("role") in TeamRole.values:
            member, _ = Membership.give(found, member.user, request.POST["role"])
            messages.success(request, f"{member.user} is now {member.get_role_display().lower()}.")
        else:
            messages.error(request, "Choose a role.")
    except LastAdmin as last:
        messages.error(request, str(last))
    return redirect("team", pk=found.pk)


@login_required
@require_POST
def team_token_revoke(request: HttpRequest, pk: int, token_key: str) -> HttpResponse:
    """A team admin revokes a member's API token: it stops working at once, for every team of theirs."""
    found = get_object_or_404(Team.objects.for_user(request.user), pk=pk)
    require_role(request.user, found, TeamRole.ADMIN)
    revoked = ApiToken.objects.of_team(found, request.user).revoke(token_key)
    if not revoked:
        raise Http404("No token of this team's members is named so.")
    for token in revoked:
        said = f"{token.user}'s token {token.name} ({token.token_key}…) revoked: it no longer works."
        messages.success(request, said)
    return redirect("team", pk=found.pk)
