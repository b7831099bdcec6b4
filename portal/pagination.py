"""The API's pages: DRF's limit/offset pagination, bounded, its schema written the OpenAPI 3.1 way."""

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

MAX_OFFSET = 10**9  # far beyond any list here, and within what a database's integers hold


class Pagination(LimitOffsetPagination):
    max_limit = 1000

    def get_offset(self, request: Request) -> int:
        given = request.query_params.get(self.offset_query_param)
        if given is not None and not given.isdecimal():  # DRF would read "null" or "-1" as 0
            raise ValidationError({self.offset_query_param: ["A whole number, 0 or more."]})
        offset = super().get_offset(request)
        if offset > MAX_OFFSET:
            raise ValidationError({self.offset_query_param: [f"At most {MAX_OFFSET}."]})
        return offset

    def get_paginated_response_schema(self, schema: dict) -> dict:
        # DRF says "nullable" (OpenAPI 3.0), which 3.1 validators and generators ignore:
        # `next` and `previous` are null on the last and first page.
        response = super().get_paginated_response_schema(schema)
        for name in ("next", "previous"):
            link = response["properties"][name]
            link.pop("nullable", None)
            link["type"] = ["string", "null"]
        return response
