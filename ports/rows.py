"""Rendered rows of checklists (a JSON item, a CSV line, a page's table row), kept in each process
by what they were rendered from, so that a read right after one change renders one row again, not
the checklist.

A row's rendering is kept with its version (ChecklistItemQuerySet.row_versions: the item's
revision and the run that wrote its current probe, a few columns) under its kind, which names
everything else it was rendered from: the format, the deployment, when its checklist was last
generated and its probe revision (ports.models.ROW_VERSION says why that is all). A reader asks for
the rows of its versions; those kept at the same version are taken as they are, the others
rendered and kept. Nothing is invalidated: a row whose version moved on is rendered anew and
replaces its old rendering, and the kinds read least recently go first past CHECKLIST_ROWS.

The versions of a whole checklist are read once, then kept with the checklist revision they are
of: the next reader reads only the rows changed since (ports.models.CHANGED_IN) and puts them in
their places. They also give the checklist's counts (ChecklistCounts.of_versions).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

from django.conf import settings
from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import QuerySet

from .models import ChecklistItem, Deployment

# Up to this many rows to render (a change's), their items are read with their requirements joined,
# in one query; more, with each requirement read once (prefetched). Past MOST_LISTED, a reader
# renders all its rows rather than those of a list of ids (the first read of a checklist).
FEW = 50
MOST_LISTED = 500


def kind_of(format: str, deployment: Deployment, *more: Hashable) -> tuple:
    """The kind of a deployment's rows in `format`: what a row is rendered from beside its own
    version (`more`: whatever else of the reader's a format puts in every row)."""
    return (format, deployment.pk, *deployment.checklist_generation, deployment.probe_revision, *more)


def items_among(items: QuerySet[ChecklistItem], pks: list[int]) -> QuerySet[ChecklistItem]:
    """These of the items (read with_latest_probe()), in checklist order, with their requirements;
    past MOST_LISTED, all the items, as a list of thousands of ids is more than SQLite takes."""
    if len(pks) <= FEW:
        return items.filter(pk__in=pks).prefetch_related(None).select_related("requirement").order_by("position")
    chosen = items if len(pks) > MOST_LISTED else items.filter(pk__in=pks)
    return chosen.prefetch_related("requirement").order_by("position")


def read_versions(rows: QuerySet) -> list[tuple]:
    """The rows of ChecklistItemQuerySet.row_versions() as the database gives them: for thousands
    of rows, Django's iteration costs more than the statement."""
    try:
        statement, params = rows.query.sql_with_params()
    except EmptyResultSet:  # a query that selects nothing (none(), a filter that does not parse)
        return []
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall()


def by_item(rows: list[tuple]) -> dict[int, tuple]:
    """The version of each item by pk, in their order, from rows of ChecklistItemQuerySet.row_versions()."""
    return {row[0]: row[2:] for row in rows}


class RenderedRows:
    """Renderings by kind, then by key, each with the version it was rendered at; and the versions
    of whole checklists, each as of a checklist revision. Thread-safe. Past CHECKLIST_ROWS
    renderings in all (and apart, past as many versions), the kinds read least recently go first,
    whole: a checklist's rows are read together, and each new generation of it is a new kind."""

    def __init__(self) -> None:
        self.kinds: OrderedDict[Hashable, dict[Hashable, tuple[object, object]]] = OrderedDict()
        # By kind_of("versions", deployment): (its checklist revision, its versions in position
        # order, the place of each item's among them by pk).
        self.checklists: OrderedDict[Hashable, tuple[int, list[tuple], dict[int, int]]] = OrderedDict()
        self.lock = threading.Lock()

    def versions(self, deployment: Deployment) -> list[tuple]:
        """The versions of all the deployment's items in position order, as row_versions() gives
        them, as of its checklist revision or later: those read at an earlier revision of the same
        kind, with the versions of the few items changed since (CHANGED_IN) put in their places.
        Read whole the first time."""
        kind, revision, items = kind_of("versions", deployment), deployment.checklist_revision, deployment.checklist
        with self.lock:
            last = self.checklists.get(kind)
        if last is not None and last[0] >= revision:
            return last[1]
        rows = None
        if last is not None:
            since, rows, places = last
            changed = read_versions(items.changed_since(deployment, since).order_by().row_versions())
            if all(row[0] in places for row in changed):  # in a kind, none comes or goes: a check
                rows = rows.copy()
                for row in changed:
                    rows[places[row[0]]] = row
            else:
                rows = None
        if rows is None:
            rows = read_versions(items.order_by("position").row_versions())
            places = {row[0]: place for place, row in enumerate(rows)}
        with self.lock:
            self.checklists[kind] = (revision, rows, places)
            self.checklists.move_to_end(kind)
            kept = sum(len(versions) for _, versions, _ in self.checklists.values())
            while len(self.checklists) > 1 and kept > settings.CHECKLIST_ROWS:
                kept -= len(self.checklists.popitem(last=False)[1][1])
        return rows

    def rows(
        self,
        kind: Hashable,
        versions: dict[Hashable, object],
        render: Callable[[list[Hashable]], dict[Hashable, object]],
    ) -> list:
        """The rendering of each key of `versions` at its version, in their order: those kept at
        that version as they are, the others by one call of `render(keys)`, which answers a
        rendering by key. A new list: the caller's to change."""
        shown, missing = [], {}  # the renderings in order; the places of those missing, by key
        with self.lock:
            kept = self.kinds.setdefault(kind, {})
            self.kinds.move_to_end(kind)
            for key, version in versions.items():
                entry = kept.get(key)
                if entry is None or entry[0] != version:
                    missing[key] = len(shown)
                shown.append(entry and entry[1])
        if missing:
            fresh = render(list(missing))
            for key, place in missing.items():
                shown[place] = fresh[key]
            with self.lock:
                kept = self.kinds.setdefault(kind, {})
                kept.update((key, (versions[key], fresh[key])) for key in missing)
                while len(self.kinds) > 1 and sum(map(len, self.kinds.values())) > settings.CHECKLIST_ROWS:
                    self.kinds.popitem(last=False)
        return shown

    def clear(self) -> None:
        with self.lock:
            self.kinds.clear()
            self.checklists.clear()


# The process's rows, as the "checklists" cache keeps the process's whole renderings.
RENDERED_ROWS = RenderedRows()
