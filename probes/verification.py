"""Verification by probe: rules whose latest probe proves them open are marked verified."""

from __future__ import annotations

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from ports.choices import ItemStatus
from ports.models import ChecklistItem, Deployment, StatusChange

from .choices import ProbeState


def verify_open(deployment: Deployment, user: object) -> int:
    """Mark verified the rules whose latest probe is open (neither verified nor waived yet),
    each with the probe that proves it in its history; returns how many.

    One transaction: the items are locked in pk order (as every writer of items locks them)
    and read again under the lock, so a waiver or a failing probe that lands meanwhile wins.
    """
    with transaction.atomic():
        locked = deployment.checklist.select_for_update(of=("self",)).order_by("pk").values_list("pk", flat=True)
        list(locked)  # the lock, taken before anything is read
        items = list(
            deployment.checklist.with_latest_probe()
            .filter(current_probe__state=ProbeState.OPEN)
            .exclude(status__in=[ItemStatus.VERIFIED, ItemStatus.WAIVED])
            .order_by("pk")
        )
        if not items:
            return 0
        now = timezone.now()
        StatusChange.objects.bulk_create(
            StatusChange(
                item=item,
                from_status=item.status,
                to_status=ItemStatus.VERIFIED,
                user=user,
                comment=proof(item.latest_probe),
            )
            for item in items
        )
        ChecklistItem.objects.filter(pk__in=[item.pk for item in items]).update(
            status=ItemStatus.VERIFIED, status_changed_at=now, revision=F("revision") + 1
        )
        Deployment.objects.filter(pk=deployment.pk).checklist_changed([item.pk for item in items])
    return len(items)


def proof(probe: object) -> str:
    """What a verified rule's history says of the probe that proves it."""
    return f"latest probe open ({probe.site}, {probe.checked_at:%Y-%m-%d %H:%M} UTC)"
