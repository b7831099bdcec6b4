"""How a service exchange reports what it found when the service did not answer as itself, and
failures put in words: the low-level cause for the evidence, a sentence for people."""

from __future__ import annotations

import asyncio
import errno
import ssl

from .states import State


class Finding(Exception):
    """What a service exchange found when it was not the service answering as itself: a state,
    a sentence for people, and the evidence (with its low-level `cause`)."""

    state = State.ERROR

    def __init__(self, reason: str, evidence: dict) -> None:
        super().__init__(reason)
        self.evidence = evidence


class Intercepted(Finding):
    """The service answered, but not as itself: something in the path speaks for it."""

    state = State.INTERCEPTED


def cause_of(exc: BaseException) -> str:
    """The low-level cause of a failure: the errno's name, the TLS library's reason, or the type."""
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return exc.reason
    if isinstance(exc, OSError) and exc.errno in errno.errorcode:
        return errno.errorcode[exc.errno]
    if isinstance(exc, asyncio.IncompleteReadError):
        return f"EOF after {len(exc.partial)} of {exc.expected} bytes"
    return type(exc).__name__


def describe(exc: BaseException) -> str:
    """An exception as words, never empty."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
