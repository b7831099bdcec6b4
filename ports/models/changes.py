"""The change log: one ObjectChange per change of a team's objects (Logged writes those of a model's saves)."""

from __future__ import annotations

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from ..acting import current_actor
from ..choices import (
    ChangeAction,
    ChangedObject,
    ChangeSource,
)
from .deployments import Deployment
from .teams import Team, TeamScopedQuerySet


class ObjectChange(models.Model):
    """One change of one of a team's objects: who made it, when, through what, in which request,
    and the object's fields before and after. The change log, as NetBox's ObjectChange keeps it.

    Written by the write itself, in its transaction (a change and its entry land together or not
    at all), and never changed after: no page, API or admin edits an entry; entries older than
    CHANGE_LOG_RETENTION_DAYS are purged (ports.tasks). A deployment is named by its id and
    name, not a key, so that its entries outlive it: its deletion keeps its last state.
    """

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    deployment_id = models.PositiveBigIntegerField(null=True, blank=True)
    deployment_name = models.CharField(max_length=100, blank=True)
    time = models.DateTimeField(default=timezone.now)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    user_name = models.CharField(max_length=150, blank=True)  # as it was: kept when the user goes
    source = models.CharField(max_length=12, choices=ChangeSource.choices)
    request_id = models.CharField(max_length=64, blank=True)
    action = models.CharField(max_length=8, choices=ChangeAction.choices)
    object_type = models.CharField(max_length=15, choices=ChangedObject.choices)
    object_id = models.PositiveBigIntegerField()
    object_repr = models.CharField(max_length=200)
    before = models.JSONField(null=True, blank=True)  # the object's fields; None for a creation
    after = models.JSONField(null=True, blank=True)  # None for a deletion

    objects = TeamScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-time", "-id"]
        indexes = [
            models.Index(fields=["team", "-time", "-id"], name="objectchange_by_team"),
            models.Index(fields=["deployment_id", "-time", "-id"], name="objectchange_by_deployment"),
            models.Index(fields=["time"], name="objectchange_by_age"),
        ]

    def __str__(self) -> str:
        return f"{self.get_object_type_display()} {self.object_repr} {self.action}"

    @classmethod
    def of(
        cls,
        team_id: int,
        action: str,
        object_type: str,
        object_id: int,
        object_repr: str,
        before: dict | None,
        after: dict | None,
        deployment: Deployment | None = None,
        user: object = None,
    ) -> ObjectChange:
        """An entry (unsaved) of a change made now by the current actor (ports.acting); `user`
        where the write names its user and no request does (a status change in a worker)."""
        actor = current_actor()
        who, source = actor.who()
        who = who or user
        return cls(
            team_id=team_id,
            deployment_id=deployment.pk if deployment else None,
            deployment_name=deployment.name if deployment else "",
            user=who,
            user_name=who.get_username() if who else "",
            source=source,
            request_id=actor.request_id,
            action=action,
            object_type=object_type,
            object_id=object_id,
            object_repr=str(object_repr)[:200],
            before=before,
            after=after,
        )

    @classmethod
    def log(cls, *args: object, **kwargs: object) -> ObjectChange:
        """Write the entry of a change (ObjectChange.of's arguments)."""
        entry = cls.of(*args, **kwargs)
        entry.save()
        return entry

    @property
    def diff(self) -> dict[str, dict[str, object]]:
        """The fields that changed, by name, each with its value before and after (None where the
        object was not: its fields set, for a creation or a deletion; an empty one, None or "" or
        [], is no change). By name, as the databases keep a JSON object's keys in orders of their own."""
        before, after = self.before or {}, self.after or {}
        return {
            name: {"before": before.get(name), "after": after.get(name)}
            for name in sorted(before.keys() | after.keys())
            if not_empty(before.get(name)) != not_empty(after.get(name))
        }


def not_empty(value: object) -> object:
    """The value, or None for an empty one (None, "", [], {}): a field nobody filled in."""
    return None if value in (None, "", [], {}) else value


class Logged(models.Model):
    """A model whose saves and deletes each write the change log (ObjectChange) in their own
    transaction, with the LOGGED fields as read before and as saved after; a save that changes
    none of them writes no entry. Writes that bypass save() and delete() (bulk_create, update())
    log themselves."""

    LOGGED: tuple[str, ...] = ()
    CHANGED_OBJECT: str = ""

    class Meta:
        abstract = True

    def save(self, *args: object, **kwargs: object) -> None:
        before = None if self._state.adding else getattr(self, "logged_before", None)
        with transaction.atomic():
            super().save(*args, **kwargs)
            after = self.logged()
            if before is not None:  # a field not read (only(), defer()) is not known to have changed
                before = {name: before.get(name, value) for name, value in after.items()}
            if before != after:
                self.log(ChangeAction.CREATED if before is None else ChangeAction.UPDATED, before, after)
        self.logged_before = after

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        with transaction.atomic():
            self.log(ChangeAction.DELETED, self.logged(), None)
            return super().delete(*args, **kwargs)

    @classmethod
    def from_db(cls, db: str | None, field_names: list[str], values: list) -> Logged:
        instance = super().from_db(db, field_names, values)
        loaded = dict(zip(field_names, values, strict=True))
        instance.logged_before = {name: loaded[name] for name in cls.LOGGED if name in loaded}
        return instance

    def logged(self) -> dict:
        return {name: getattr(self, name) for name in self.LOGGED}

    def log(self, action: str, before: dict | None, after: dict | None) -> ObjectChange:
        """Write the change log's entry of this object's change (its team, and deployment if any)."""
        deployment = getattr(self, "deployment", None)
        team_id = deployment.team_id if deployment is not None else self.team_id
        return ObjectChange.log(
            team_id, action, self.CHANGED_OBJECT, self.pk, str(self), before, after, deployment=deployment
        )
