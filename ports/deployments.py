"""The one write path of a deployment: validate a document, save it, regenerate its checklist.

The API (create, update, upsert), the browser form, the admin and `setup_demo` all come
here, so that none of them can store what another would refuse, and the checklist is
rebuilt from what was just saved, in the same transaction. A plan (`plan_save`,
`plan_upsert`) is the same write, rolled back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from .checklist import NumberedRule, SyncResult, TooManyRules, regenerate_checklist
from .choices import ChangeAction, ChangedObject, Outcome
from .models import Appliance, Deployment, Host, ObjectChange, PeerNetwork
from .serializers import DeploymentSerializer
from .validators import validate_name

CHILDREN = {"appliances": Appliance, "hosts": Host, "peer_networks": PeerNetwork}


@dataclass(frozen=True)
class Saved:
    deployment: Deployment
    outcome: str  # created, updated or unchanged (choices.Outcome)
    sync: SyncResult | None


@dataclass(frozen=True)
class Plan:
    """What a write would do, found by doing it and rolling it back: its outcome, the rules it
    would add (with the numbers it would give them) and remove (with theirs), and how many
    rules it would keep."""

    outcome: str
    added: list[NumberedRule]
    removed: list[NumberedRule]
    unchanged: int

    @property
    def changes_rules(self) -> bool:
        return bool(self.added or self.removed)


def save_deployment(
    document: object, *, user: object = None, instance: Deployment | None = None, partial: bool = False
) -> Saved:
    """Create a deployment from `document`, or bring `instance` to it.

    `user` limits the teams the document may name (None: any team, for the admin and
    commands). Bad input raises ValidationError with field messages and changes nothing.
    """
    serializer = DeploymentSerializer(instance, data=document, partial=partial, context={"user": user})
    serializer.is_valid(raise_exception=True)
    if instance is not None and serializer.is_unchanged():
        return Saved(instance, Outcome.UNCHANGED, None)
    fields = dict(serializer.validated_data)
    children = {name: fields.pop(name) for name in CHILDREN if name in fields}
    deployment = instance or Deployment()
    before = document_of(instance) if instance is not None else None
    try:
        with transaction.atomic():
            for name, value in fields.items():
                setattr(deployment, name, value)
            # Only the document's fields: the instance was read before, and its checklist columns
            # (revision, fingerprint) may have moved since.
            deployment.save(update_fields=[*fields, "updated"] if instance is not None else None)
            for name, rows in children.items():
                model = CHILDREN[name]
                model.objects.filter(deployment=deployment).delete()
                model.objects.bulk_create(model(deployment=deployment, **row) for row in rows)
            sync = regenerate_checklist(deployment)
            # A new schedule starts its clock now; other edits leave the next run where it was
            # (a deployment edited daily on a daily schedule must still be probed).
            if instance is None or {"probe_schedule", "probe_cron"} & set(fields):
                deployment.next_probe_at = deployment.next_probe(timezone.now())
                Deployment.objects.filter(pk=deployment.pk).update(next_probe_at=deployment.next_probe_at)
            action = ChangeAction.CREATED if instance is None else ChangeAction.UPDATED
            # Read again: the instance may hold its parts as they were read before (prefetched).
            log_deployment(deployment, action, before, document_of(Deployment.objects.get(pk=deployment.pk)))
    except TooManyRules as limit:
        raise ValidationError({"non_field_errors": [str(limit)]}) from limit
    except IntegrityError as exc:
        # Two requests creating the same name at once: validation passed for both.
        if "deployment_unique_name" in str(exc) or "ports_deployment.name" in str(exc):
            raise ValidationError({"name": ["A deployment of this name was just created."]}) from exc
        raise
    return Saved(deployment, Outcome.CREATED if instance is None else Outcome.UPDATED, sync)


def delete_deployment(deployment: Deployment) -> None:
    """Delete the deployment and all of it; the change log keeps its last state."""
    with transaction.atomic():
        # The deployment's lock, then its items' in pk order, as every writer of its items takes
        # them (the recorder, a status change's marking once committed: checklist_changed), and
        # before what refers to them is read to be deleted: a status change that lands meanwhile
        # has committed its history by then. Not the lock that keeps its key (FOR UPDATE), which
        # waits for a commit's check of a row that refers to it, as that writer's commit would.
        list(Deployment.objects.select_for_update(no_key=True).filter(pk=deployment.pk).values_list("pk"))
        list(deployment.checklist.select_for_update().order_by("pk").values_list("pk"))
        log_deployment(deployment, ChangeAction.DELETED, document_of(deployment), None)
        deployment.delete()


def document_of(deployment: Deployment) -> dict:
    """The deployment as the document that would write it (no id, counts or times): what the
    change log keeps of it before and after a change."""
    fields = DeploymentSerializer().fields
    return {
        name: field.to_representation(field.get_attribute(deployment))
        for name, field in fields.items()
        if not field.read_only
    }


def log_deployment(deployment: Deployment, action: str, before: dict | None, after: dict | None) -> None:
    ObjectChange.log(
        deployment.team_id,
        action,
        ChangedObject.DEPLOYMENT,
        deployment.pk,
        deployment.name,
        before,
        after,
        deployment=deployment,
    )


def upsert_deployment(document: object, *, user: object) -> Saved:
    """Create the user's team's deployment of the document's name, or bring it to the document
    (fields left out keep their value). The same document twice changes nothing."""
    if not isinstance(document, dict) or not isinstance(document.get("name"), str) or not document["name"]:
        raise ValidationError({"name": ["This field is required."]})
    for field in ("name", "team"):  # looked up before the document is validated
        if isinstance(document.get(field), str):
            try:
                validate_name(document[field])
            except DjangoValidationError as invalid:
                raise ValidationError({field: invalid.messages}) from invalid
    matches = Deployment.objects.for_user(user).filter(name=document["name"])
    if document.get("team"):
        matches = matches.filter(team__name=document["team"])
    if len(matches[:2]) > 1:
        raise ValidationError({"team": ["Several of your teams have this deployment: name the team."]})
    instance = matches.first()
    return save_deployment(document, user=user, instance=instance, partial=instance is not None)


def plan_save(
    document: object, *, user: object = None, instance: Deployment | None = None, partial: bool = False
) -> Plan:
    """What save_deployment() would do with these arguments, saving nothing: the same validation
    (the same ValidationError), the same outcome and the rules it would add and remove."""
    try:
        return rolled_back(lambda: save_deployment(document, user=user, instance=instance, partial=partial))
    finally:
        if instance is not None:
            # The write set the document's fields and the checklist's columns on the instance;
            # the rollback undid them in the database only.
            instance.refresh_from_db()


def plan_upsert(document: object, *, user: object) -> Plan:
    """What upsert_deployment() would do with this document, saving nothing."""
    return rolled_back(lambda: upsert_deployment(document, user=user))


def rolled_back(write: Callable[[], Saved]) -> Plan:
    """The plan of a write: the write itself, in a transaction that is then rolled back. The plan
    is what the real write does because it is the real write: every row it writes (the deployment,
    its parts, its checklist, the rule set remembered, the revision, the next probe time) goes
    with the rollback, and so do the on_commit callbacks registered inside it. The sequences are
    the one trace: a planned create uses up ids that no row then has."""
    with transaction.atomic():
        saved = write()
        if saved.sync is None:  # unchanged: nothing was written
            plan = Plan(saved.outcome, [], [], saved.deployment.checklist.count())
        else:
            plan = Plan(saved.outcome, saved.sync.added, saved.sync.removed, saved.sync.kept)
        transaction.set_rollback(True)
    return plan
