"""What the OpenAPI schema says of every operation beyond its view: the errors it may answer, each
with the API's one error shape (`Error`), and the response headers several views share."""

from __future__ import annotations

import copy
from typing import Any

from drf_spectacular.utils import OpenApiParameter

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
UNSAFE = {"post", "put", "patch", "delete"}
ERROR_REF = {"$ref": "#/components/schemas/Error"}

# What portal.errors.api_exception_handler answers (DRF's answers): `detail` for every error but
# invalid input, whose 400 names each field (`non_field_errors` for the document as a whole). A
# field of a nested object has the nested object's errors, and a list's the errors of each item.
ERROR = {
    "type": "object",
    "description": (
        "The API's error shape. `detail` says what went wrong, in words; a 400 for invalid input has "
        "instead each invalid field's messages under its name (`non_field_errors`: the document's as a "
        "whole), a nested object's errors as an object of this shape, and a list's as a list of them, "
        "one per item (`{}` for a valid item) or an object by index."
    ),
    "properties": {"detail": {"type": "string", "description": "What went wrong, in words."}},
    "additionalProperties": {
        "anyOf": [
            {"type": "array", "items": {"type": "string"}},
            {"type": "array", "items": ERROR_REF},
            ERROR_REF,
        ]
    },
}

# Why each status is answered, as the schema says it (the rule of declare_errors).
ERRORS = {
    "400": "Invalid input: a field of the body or a query parameter that does not validate, or a body "
    "that is no JSON. Nothing was done.",
    "401": "No credentials, or credentials that are not valid (`Authorization: Token <key>`).",
    "403": "A browser session's write without its CSRF token.",
    "404": "No such object, or one of another team's.",
    "412": "If-Match names another version than the current one: the object changed meanwhile. "
    "Nothing was done; read it again.",
    "413": "The body is over API_MAX_BODY_BYTES. Nothing was done.",
    "415": "The body is not JSON (`Content-Type: application/json`).",
    "429": "Too many requests: over the API's rate limit (API_RATE_USER per user, API_RATE_ANON per "
    "client address) or a limit of the operation. Nothing was done; try again after Retry-After.",
    "503": "The database, or the message broker the operation needs, is not reachable: nothing was "
    "done. Try again shortly.",
}

RETRY_AFTER = {
    "description": "Seconds to wait before the next request is accepted.",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
}
WWW_AUTHENTICATE = {
    "description": "How to authenticate: `Token`.",
    "required": True,
    "schema": {"type": "string"},
}
ERROR_HEADERS = {"401": {"WWW-Authenticate": WWW_AUTHENTICATE}, "429": {"Retry-After": RETRY_AFTER}}


def answered_errors(method: str, operation: dict[str, Any]) -> list[str]:
    """The error statuses an operation may answer, from what it takes:

    - 400 when it takes a body or query parameters: each is validated, and what does not parse is a
      400 (never ignored, nor read as a default);
    - 401 when it needs credentials (a security requirement), and 403 when it is a write that a
      browser session may send (cookieAuth): without the CSRF token; or when the view declares it
      (a read for a team's admins only, its other members refused). Nothing else answers 403;
    - 404 when its path names an object (a path parameter): absent, or another team's;
    - 412 when it takes If-Match;
    - 413 and 415 when it takes a body (portal.parsers.BoundedJSONParser: JSON, bounded);
    - 429 and 503 on every operation: the rate limits count every request, and every request
      reads the database (the token's user first), some the message broker too.

    405 and 409 are never answered by an operation of the schema, and 406 only to an Accept that
    names none of the types the operation declares."""
    parameters = operation.get("parameters", [])
    where = {parameter["in"] for parameter in parameters}
    headers = {parameter["name"].lower() for parameter in parameters if parameter["in"] == "header"}
    security = [name for requirement in operation.get("security", []) for name in requirement]
    body = "requestBody" in operation
    statuses = {
        "400": body or "query" in where,
        "401": bool(security),
        "403": (method in UNSAFE and "cookieAuth" in security) or "403" in operation.get("responses", {}),
        "404": "path" in where,
        "412": "if-match" in headers,
        "413": body,
        "415": body,
        "429": True,
        "503": True,
    }
    return [code for code, answered in statuses.items() if answered]


def declare_errors(result: dict[str, Any], generator: object, **kwargs: object) -> dict[str, Any]:
    """drf-spectacular's postprocessing hook (SPECTACULAR_SETTINGS): every operation declares the
    errors it may answer (answered_errors), each with the `Error` body and its headers (401's
    WWW-Authenticate, 429's Retry-After). An answer the view declared keeps its description and
    headers, and gets the body."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = copy.deepcopy(ERROR)
    for path in result.get("paths", {}).values():
        for method, operation in path.items():
            if method not in METHODS:
                continue
            responses = operation.setdefault("responses", {})
            for code in answered_errors(method, operation):
                response = responses.setdefault(code, {"description": ERRORS[code]})
                response["content"] = {"application/json": {"schema": dict(ERROR_REF)}}
                for name, header in ERROR_HEADERS.get(code, {}).items():
                    response.setdefault("headers", {}).setdefault(name, copy.deepcopy(header))
            operation["responses"] = dict(sorted(responses.items()))
    return result


# Response headers several views answer, for their extend_schema(parameters=...).
def etag(codes: list[int]) -> OpenApiParameter:
    """The version of what the answer shows (a list of codes: drf-spectacular takes no other sequence)."""
    return OpenApiParameter(
        "ETag",
        str,
        OpenApiParameter.HEADER,
        response=codes,
        required=True,
        description="The version of what the answer shows: If-Match of a checklist item's PATCH, If-None-Match "
        "of the checklist's GET.",
    )


FINGERPRINT = OpenApiParameter(
    "Checklist-Fingerprint",
    str,
    OpenApiParameter.HEADER,
    response=[200],
    required=True,
    description="The SHA-256 of the rule set the answer holds, for checklist/diff/?since= to compare with.",
)


def location(what: str) -> OpenApiParameter:
    """Where the object the answer accepted (202) is read from."""
    return OpenApiParameter(
        "Location", str, OpenApiParameter.HEADER, response=[202], required=True, description=f"The {what}'s URL."
    )
