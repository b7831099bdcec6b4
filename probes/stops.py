"""Where failing rules stop: the device their latest probe's evidence names (ports.choices.Stop: the
device that rejected them, else the last hop that answered their trace), counted per device for a
set of checklist items ("12 rules stop after 10.0.1.1"), and the items that stop at one device
(the checklist's `stops_at` filter). The database reads the device out of the evidence
(ChecklistItemQuerySet.with_stop): a checklist of thousands of rules is counted in one query."""

from __future__ import annotations

from typing import NamedTuple

from django.db.models import Count, QuerySet

from ports.choices import Stop
from ports.models import STOP_AT, STOP_HOW, ChecklistItem

from .choices import FAILING_STATES


class StopPoint(NamedTuple):
    """A device where failing rules stop, how, and how many rules stop there."""

    address: str
    how: Stop
    count: int

    @property
    def words(self) -> str:
        """ "12 rules stop after 10.0.1.1", "1 rule is rejected by 10.0.2.1"."""
        return f"{self.count} {Stop.rules(self.count)} {self.how.verb(self.count)} {self.address}"


def stopping(items: QuerySet[ChecklistItem]) -> QuerySet[ChecklistItem]:
    """The items whose latest probe fails and names where the traffic stops, with the device's
    address (STOP_AT) and how (STOP_HOW) annotated."""
    return items.with_latest_state(FAILING_STATES).with_stop().filter(**{f"{STOP_AT}__isnull": False})


def stopping_devices(items: QuerySet[ChecklistItem]) -> list[StopPoint]:
    """The devices where the failing rules among `items` stop, most rules first (then by address)."""
    rows = stopping(items).order_by().values_list(STOP_AT, STOP_HOW).annotate(count=Count("pk"))
    return [StopPoint(address, Stop(how), count) for address, how, count in rows.order_by("-count", STOP_AT, STOP_HOW)]
