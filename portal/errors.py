"""The API's answers for what is neither the client's mistake in a field nor a bug."""

import logging

from django.db import InterfaceError, OperationalError
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.response import Response
from rest_framework.views import exception_handler

log = logging.getLogger(__name__)


class RequestTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"


class ServiceUnavailable(APIException):
    """A service the portal needs (the message broker) did not take the request: nothing was done."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "unavailable"


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF's answers, and a JSON 503 when the database cannot be reached (never an HTML 500, and
    never where the database is: that goes to the log)."""
    if isinstance(exc, OperationalError | InterfaceError):
        log.warning("the database is not reachable", exc_info=exc)
        exc = ServiceUnavailable("The database is not reachable: nothing was done. Try again shortly.")
    return exception_handler(exc, context)
