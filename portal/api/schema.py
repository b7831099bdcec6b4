"""What the OpenAPI schema says of every operation beyond its view: the rate limits' 429."""

from __future__ import annotations

import copy
from typing import Any

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}

THROTTLED = {
    "type": "object",
    "description": "The API's error shape: what went wrong, in words.",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}

RETRY_AFTER = {
    "description": "Seconds to wait before the next request is accepted.",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
}

TOO_MANY_REQUESTS = {
    "description": (
        "Too many requests: over the API's rate limit (API_RATE_USER per user, API_RATE_ANON per "
        "client address) or a limit of the operation. Nothing was done; try again after Retry-After."
    ),
    "headers": {"Retry-After": RETRY_AFTER},
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Throttled"}}},
}


def declare_rate_limits(result: dict[str, Any], generator: object, **kwargs: object) -> dict[str, Any]:
    """drf-spectacular's postprocessing hook (SPECTACULAR_SETTINGS): every operation may answer
    429 with Retry-After. An operation that declares its own 429 keeps it, with Retry-After added."""
    result.setdefault("components", {}).setdefault("schemas", {}).setdefault("Throttled", copy.deepcopy(THROTTLED))
    for path in result.get("paths", {}).values():
        for method, operation in path.items():
            if method not in METHODS:
                continue
            responses = operation.setdefault("responses", {})
            if "429" in responses:
                responses["429"].setdefault("headers", {}).setdefault("Retry-After", copy.deepcopy(RETRY_AFTER))
            else:
                responses["429"] = copy.deepcopy(TOO_MANY_REQUESTS)
    return result
