"""API tokens: named, expiring, kept only as a hash (django-rest-knox's token, settings.KNOX_TOKEN_MODEL)."""

from __future__ import annotations

import binascii
import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from knox.crypto import hash_token
from knox.models import AbstractAuthToken, AuthTokenManager

from ..choices import TeamRole
from ..validators import validate_name, validate_token_days
from .members import Membership

# A token's use is written at most this often: a script's every request does not write a row.
LAST_USED_EVERY = datetime.timedelta(minutes=1)
NAME_LENGTH = 100


class ApiTokenQuerySet(models.QuerySet):
    def of_team(self, team: object, admin: object) -> ApiTokenQuerySet:
        """The tokens of the team's members that its admin `admin` sees and may revoke, by user,
        newest first: those of members who are in no team that `admin` does not administer. A
        token reaches every team of its user, and anyone can be added to a team: an admin of one
        team does not get to see or end what a token does in another (the user does, or /admin/)."""
        administered = Membership.objects.filter(user=admin, role=TeamRole.ADMIN).values("team")
        elsewhere = Membership.objects.filter(user=OuterRef("user")).exclude(team__in=administered)
        members = self.filter(user__memberships__team=team).exclude(Exists(elsewhere))
        return members.select_related("user").order_by("user__username", "-created")

    def revoke(self, token_key: str) -> list[ApiToken]:
        """Revoke these tokens named `token_key` (they stop working at once); the tokens revoked.
        A token_key is the key's first 15 hex characters: two tokens of the same selection sharing
        one are as likely as a 60-bit collision, and would go together rather than fail."""
        found = list(self.filter(token_key=token_key).select_related("user"))
        self.model.objects.filter(digest__in=[token.digest for token in found]).delete()
        return found


class ApiTokenManager(AuthTokenManager.from_queryset(ApiTokenQuerySet)):
    pass


class ApiToken(AbstractAuthToken):
    """A user's API token (`Authorization: Token <key>`). Its key is shown once, when it is made
    (ApiToken.issue); what is kept is its SHA-512 (`digest`, the primary key) and its first
    characters (`token_key`), which name it on the pages and in the API. It stops working at
    `expiry`, when it is revoked (the row is deleted), or when its user is deactivated; it reaches
    what its user reaches now, so a member taken out of a team no longer reaches the team's objects.
    An expired token stays listed, marked expired, until it is revoked."""

    name = models.CharField(max_length=NAME_LENGTH, validators=[validate_name], help_text="What the token is for.")
    last_used = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenManager()

    class Meta:
        ordering = ["-created"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.token_key}…) of {self.user}"  # never the digest

    @classmethod
    def issue(cls, user: object, name: str, days: int | None = None) -> tuple[ApiToken, str]:
        """A new token of `user` that lives `days` (API_TOKEN_DAYS unless given), and its key: the
        one time the key is known. ValidationError for a lifetime over API_TOKEN_MAX_DAYS or a bad name."""
        days = settings.API_TOKEN_DAYS if days is None else days
        validate_token_days(days)
        name = name.strip()
        validate_name(name)
        if not name or len(name) > NAME_LENGTH:
            raise ValidationError(f"Give the token a name of 1 to {NAME_LENGTH} characters: what it is for.")
        return cls.objects.create(user=user, expiry=datetime.timedelta(days=days), name=name)

    @classmethod
    def find(cls, key: str) -> ApiToken | None:
        """The token whose key this is, with its user, in one query; None for none. Found by the
        key's hash (the primary key): the key itself is never stored nor compared."""
        try:
            digest = hash_token(key)
        except (TypeError, ValueError, binascii.Error):
            return None
        return cls.objects.select_related("user").filter(digest=digest).first()

    @property
    def is_expired(self) -> bool:
        return self.expiry is not None and self.expiry <= timezone.now()

    def record_use(self) -> None:
        """Note that the token was used now, at most once a LAST_USED_EVERY: a conditional UPDATE,
        so that concurrent requests write it once, and none at all while the last use is recent."""
        now = timezone.now()
        if self.last_used is not None and now - self.last_used < LAST_USED_EVERY:
            return
        stale = Q(last_used__isnull=True) | Q(last_used__lt=now - LAST_USED_EVERY)
        if ApiToken.objects.filter(stale, digest=self.digest).update(last_used=now):
            self.last_used = now
