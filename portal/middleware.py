"""Who acts in a request, for the change log (ports.acting): its source, its request id."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from ports.acting import Actor, acting
from ports.choices import ChangeSource

# A request id a proxy or a client sends is kept if it is a plain token; anything else is replaced.
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class ActingMiddleware:
    """Each request acts through the API, the admin site or the pages, under a request id: the
    X-Request-ID it came with (from a proxy or a provisioning script), or a new one, sent back
    in the answer's X-Request-ID so that a change log entry can be found from a script's log."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        given = request.headers.get("X-Request-ID", "")
        request_id = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        with acting(Actor(source_of(request), request=request, request_id=request_id)):
            response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response


def source_of(request: HttpRequest) -> str:
    if request.path.startswith("/api/"):
        return ChangeSource.API_SESSION  # or a token's, once the view has read it (Actor.who)
    if request.path.startswith("/admin/"):
        return ChangeSource.ADMIN
    return ChangeSource.PAGE
