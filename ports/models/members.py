"""A team's members and their roles (TeamRole)."""

from __future__ import annotations

from django.conf import settings
from django.db import models, transaction

from ..choices import (
    ChangedObject,
    DirectorySource,
    Outcome,
    TeamRole,
)
from .changes import Logged
from .teams import Team


class Membership(Logged):
    """A user's place in a team: their role says what they may do with the team's objects. A
    member added without one (team.members.add) is an editor, as every member was before roles.
    The team's admins give the roles (Membership.give, leave); a team keeps at least one admin."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=TeamRole.choices, default=TeamRole.EDITOR)

    LOGGED = ("role",)
    CHANGED_OBJECT = ChangedObject.MEMBERSHIP

    class Meta:
        ordering = ["team", "user"]
        unique_together = [("team", "user")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team}"

    @classmethod
    def role_of(cls, user: object, team_id: int) -> str | None:
        """The user's role in the team (a TeamRole), None for a user who is not its member."""
        if user is None or not getattr(user, "is_authenticated", False):
            return None
        return cls.objects.filter(team_id=team_id, user=user).values_list("role", flat=True).first()

    @classmethod
    def give(cls, team: Team, user: object, role: str) -> tuple[Membership, str]:
        """Make `user` a member of `team` with `role`, or give a member that role; what it did
        (an Outcome). LastAdmin if that would leave the team without an admin."""
        with transaction.atomic():
            found, created = cls.objects.select_for_update().get_or_create(
                team=team, user=user, defaults={"role": role}
            )
            if created:
                return found, Outcome.CREATED
            if found.role == role:
                return found, Outcome.UNCHANGED
            found.keep_an_admin()
            found.role = role
            found.save(update_fields=["role"])
            return found, Outcome.UPDATED

    def leave(self) -> None:
        """Take the member out of the team (LastAdmin if they are its last admin)."""
        with transaction.atomic():
            self.keep_an_admin()
            self.delete()

    def keep_an_admin(self) -> None:
        admins = Membership.objects.select_for_update().filter(team_id=self.team_id, role=TeamRole.ADMIN)
        if self.role == TeamRole.ADMIN and not admins.exclude(pk=self.pk).exists():
            raise LastAdmin(f"{self.user} is the last admin of team {self.team}: make another member admin first.")


class LastAdmin(ValueError):
    """A change that would leave a team without an admin."""


class DirectoryAccount(models.Model):
    """A user whom the company directory (LDAP) or the sign-in provider (OpenID Connect) made, at
    their first sign-in through it: only such a user signs in through it again. A local account
    (made in /admin/ or by a command, with a password or without one) never does, whatever its
    name, so a directory's or a provider's user cannot take it over. `subject` is who the user is
    there: the entry's DN, or the provider's `sub` (which stays when a username changes)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="directory_account")
    source = models.CharField(max_length=4, choices=DirectorySource.choices)
    subject = models.CharField(max_length=255)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "subject"], name="directory_account_once")]

    def __str__(self) -> str:
        return f"{self.user} ({self.get_source_display()}: {self.subject})"
