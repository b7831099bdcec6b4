"""Who is acting: the user, through what (ChangeSource) and in which request, as the change log
(ObjectChange) writes it with every change.

The request's middleware (portal.changes) says it once per request; a command says it for its
run. The user is read from the request when a change is written, not when the request begins:
the API authenticates its token in the view, after every middleware has run.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.http import HttpRequest

from .choices import ChangeSource


@dataclass(frozen=True)
class Actor:
    source: str  # ChangeSource; for the API, API_SESSION until a token is seen
    request: HttpRequest | None = None
    request_id: str = ""
    user: object = None  # a command's user, if it names one; a request's is read from the request

    def who(self) -> tuple[object, str]:
        """The user (None: nobody signed in, or the portal itself) and the source, as of now."""
        if self.request is None:
            return self.user, self.source
        user = getattr(self.request, "user", None)
        if user is None or not user.is_authenticated:
            return None, self.source
        if self.source == ChangeSource.API_SESSION and getattr(self.request, "auth", None) is not None:
            return user, ChangeSource.API_TOKEN  # DRF sets request.auth for a token, not for a session
        return user, self.source


# Outside any request or command: the portal's own work (a worker, the recorder).
PORTAL = Actor(ChangeSource.PORTAL)
ACTOR: contextvars.ContextVar[Actor | None] = contextvars.ContextVar("actor", default=None)


@contextmanager
def acting(actor: Actor) -> Iterator[Actor]:
    """Changes made inside are `actor`'s."""
    token = ACTOR.set(actor)
    try:
        yield actor
    finally:
        ACTOR.reset(token)


def current_actor() -> Actor:
    return ACTOR.get() or PORTAL
