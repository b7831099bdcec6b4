"""The API's pages: DRF's limit/offset pagination, its schema written the OpenAPI 3.1 way."""

from rest_framework.pagination import LimitOffsetPagination


class Pagination(LimitOffsetPagination):
    def get_paginated_response_schema(self, schema: dict) -> dict:
        # DRF says "nullable" (OpenAPI 3.0), which 3.1 validators and generators ignore:
        # `next` and `previous` are null on the last and first page.
        response = super().get_paginated_response_schema(schema)
        for name in ("next", "previous"):
            link = response["properties"][name]
            link.pop("nullable", None)
            link["type"] = ["string", "null"]
        return response
