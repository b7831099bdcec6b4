"""The API's request bodies: JSON, of a bounded size and depth, or a clear 4xx."""

from __future__ import annotations

import io

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from .errors import RequestTooLarge


class BoundedJSONParser(JSONParser):
    """JSON bodies up to API_MAX_BODY_BYTES; deeper nesting than any document here is refused."""

    def parse(self, stream: object, media_type: str | None = None, parser_context: dict | None = None) -> object:
        limit = settings.API_MAX_BODY_BYTES
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else ""
        length = int(declared) if declared and declared.isdigit() else 0
        body = stream.read(limit + 1) if stream is not None else b""
        if length > limit or len(body) > limit:
            raise RequestTooLarge(f"The request body is over {limit} bytes; send less at a time.")
        try:
            return super().parse(io.BytesIO(body), media_type, parser_context)
        except RecursionError as exc:
            raise ParseError("The JSON is nested too deeply.") from exc
