"""What a change request's steps set off in the probes layer (ports.signals.request_moved): an
implemented request's rules are probed at once, and the run that finds them all open verifies
the request, as the portal itself."""

from __future__ import annotations

from django.dispatch import receiver

from ports.choices import RequestAction, RequestState
from ports.models import ChangeRequest, RequestRefused, RequestTransition
from ports.signals import request_moved

from . import signals
from .models import ProbeRun


@receiver(request_moved)
def on_request_moved(sender: type, request: ChangeRequest, step: RequestTransition, **kwargs: object) -> None:
    if step.action == RequestAction.IMPLEMENT:
        items = list(request.items.all())
        if items:  # a request whose rules all went with a new generation has nothing to probe
            ProbeRun.start(request.deployment, step.user, items, limited=False, change_request=request)


@receiver(signals.run_closed)
def on_run_closed(sender: type, run: ProbeRun, **kwargs: object) -> None:
    """Verify each implemented change request of the run's deployment whose rules now all probe
    open (or are waived): the run that proves its implementation, or a later one (a schedule's, a
    person's); a request still held back waits for the next run, or a person's waiver."""
    implemented = ChangeRequest.objects.filter(deployment_id=run.deployment_id, state=RequestState.IMPLEMENTED)
    for request in implemented.with_progress():
        if request.holding_back():
            continue
        try:
            request.take(RequestAction.VERIFY, None, f"Every rule probed open in probe run {run.pk}.")
        except RequestRefused:  # taken meanwhile by someone: nothing left to do
            continue
