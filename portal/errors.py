"""The API's answers for what is neither the client's mistake in a field nor a bug."""

from rest_framework import status
from rest_framework.exceptions import APIException


class RequestTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"


class ServiceUnavailable(APIException):
    """A service the portal needs (the message broker) did not take the request: nothing was done."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "unavailable"
