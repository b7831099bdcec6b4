"""Writers that meet on a deployment take their locks in one order, so that none waits for another
that waits for it (PostgreSQL's row locks; SQLite takes one writer at a time). Each case holds the
first writer at the point where it holds most, starts the second until it waits, then lets both go."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from django.db import connection, transaction
from django.utils import timezone

from ports.choices import RequestAction, TeamRole
from ports.deployments import delete_deployment
from ports.models import ChangeRequest, ChecklistItem, ChecklistItemQuerySet, Deployment
from probes.models import ProbeRun, WorkerHeartbeat

from .conftest import make_member, recorded_run

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif("connection.vendor != 'postgresql'", reason="row locks are PostgreSQL's"),
]


class Held:
    """The first writer's thread, held where `hold()` is called until the second waits for it."""

    def __init__(self) -> None:
        self.reached, self.go = threading.Event(), threading.Event()

    def hold(self) -> None:
        if threading.current_thread().name == "first":
            self.reached.set()
            self.go.wait(15)

    def meet(self, first: Callable[[], object], second: Callable[[], object], wait: bool = True) -> dict[str, str]:
        """Run `first` until it holds, then `second` until it waits for a lock (that it does, if
        `wait`); then let both go on. The errors of each (a deadlock, as PostgreSQL reports it)."""
        errors: dict[str, str] = {}

        def thread(name: str, body: Callable[[], object]) -> threading.Thread:
            def run() -> None:
                try:
                    body()
                except Exception as error:
                    errors[name] = repr(error)
                finally:
                    connection.close()

            started = threading.Thread(target=run, name=name)
            started.start()
            return started

        threads = [thread("first", first)]
        assert self.reached.wait(10)
        threads.append(thread("second", second))
        with connection.cursor() as cursor:
            for _ in range(250 if wait else 50):
                cursor.execute("select count(*) from pg_locks where not granted")
                if waited := cursor.fetchone()[0] > 0:
                    break
                time.sleep(0.02)
        self.go.set()
        for started in threads:
            started.join(30)
        assert waited or not wait, "the second writer never waited for the first: the case does not meet"
        return errors


@pytest.fixture
def approved(deployment, user) -> ChangeRequest:
    approver = make_member("ann", deployment.team.name, TeamRole.APPROVER)
    items = list(deployment.checklist.select_related("requirement").order_by("number", "pk")[:2])
    request = ChangeRequest.draft(deployment, user, items, title="CHG-9")
    request.take(RequestAction.SUBMIT, user)
    request.take(RequestAction.APPROVE, approver, "ok")
    return request


def held_in_change_status(monkeypatch, held: Held, before: bool) -> None:
    change_status = ChecklistItemQuerySet.change_status

    def holding(self: ChecklistItemQuerySet, *args: object, **kwargs: object) -> object:
        if before:
            held.hold()
        changed = change_status(self, *args, **kwargs)
        if not before:
            held.hold()
        return changed

    monkeypatch.setattr(ChecklistItemQuerySet, "change_status", holding)


def test_a_status_change_and_the_deletion_of_its_deployment(deployment, user):
    ids = list(deployment.checklist.order_by("pk").values_list("pk", flat=True)[:3])
    held = Held()

    def change() -> None:
        with transaction.atomic():  # its items stay locked until it commits, then marks them changed
            ChecklistItem.objects.filter(deployment=deployment).change_status("requested", user, "CHG-1", ids=ids)
            held.hold()

    errors = held.meet(change, lambda: delete_deployment(Deployment.objects.get(pk=deployment.pk)))
    assert not errors and not Deployment.objects.filter(pk=deployment.pk).exists()


def test_verifying_a_request_while_the_recorder_ends_its_run(deployment, user, approved, monkeypatch):
    """The recorder holds the deployment when it ends a run, then verifies the request the run
    proves; a person verifying it holds the request, then changes its rules' statuses, and marks
    them changed once committed."""
    first, second = approved.items.order_by("number", "pk")
    approved.take(RequestAction.IMPLEMENT, user)
    recorded_run(deployment, [(first, "open"), (second, "refused")])
    ChecklistItem.objects.get(pk=second.pk).change_status("waived", user, "accepted")
    run = ProbeRun.objects.create(
        deployment=deployment, total=1, pending={"default": [first.pk]}, timeout=1, deadline="2100-01-01T00:00Z"
    )
    held = Held()
    held_in_change_status(monkeypatch, held, before=True)
    errors = held.meet(
        lambda: ChangeRequest.objects.get(pk=approved.pk).take(RequestAction.VERIFY, user),
        lambda: ProbeRun.record(run.pk, "w@default", {first.pk: {"state": "open", "summary": "open in test"}}),
    )
    assert not errors


@pytest.mark.parametrize("site_live", [False, True])
def test_implementing_a_request_while_someone_starts_a_run(deployment, user, approved, monkeypatch, site_live):
    """Implementing marks the request's rules opened and starts the run that proves them; another
    person starts a run of other rules of the same deployment at the same time. Neither waits for
    the other (a status change holds no lock of the deployment)."""
    if site_live:
        now = timezone.now()
        WorkerHeartbeat.objects.create(worker="w@default", site="default", started=now, last_seen=now)
    others = list(deployment.checklist.select_related("requirement").order_by("-number", "pk")[:2])
    held = Held()
    held_in_change_status(monkeypatch, held, before=False)
    monkeypatch.setattr(ProbeRun, "send", lambda self, site: None)  # no broker here: the runs stay queued
    errors = held.meet(
        lambda: ChangeRequest.objects.get(pk=approved.pk).take(RequestAction.IMPLEMENT, user),
        lambda: ProbeRun.start(deployment, user, others, limited=False),
        wait=False,
    )
    assert not errors
