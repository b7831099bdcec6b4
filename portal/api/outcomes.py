"""How every write of the API says what it did, the same way: the `outcome` field of its answer and
the `Outcome` header, created, updated or unchanged (ports.choices.Outcome). A provisioning tool's
"changed" is anything but unchanged (Ansible's `changed_when`), whatever it wrote."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers, status
from rest_framework.response import Response

from ports.choices import Outcome

HEADER = "Outcome"
OUTCOME_HELP = (
    "What the write did: created, updated, or unchanged (nothing was written: no history, no new "
    "revision). The `Outcome` header says the same."
)


def outcome_header(codes: list[int], name: str = HEADER) -> OpenApiParameter:
    """The header saying what the write did, in the schema, on the answers of these status codes
    (a list: drf-spectacular takes no other sequence)."""
    return OpenApiParameter(
        name, str, OpenApiParameter.HEADER, response=codes, enum=Outcome.values, description=OUTCOME_HELP
    )


class Written:
    """The answers of writes (written()): `shown` is the serializer of the object they show."""

    shown: type[serializers.Serializer]


class WrittenSchema(OpenApiSerializerExtension):
    """A write's answer in the schema: the object's own component and `outcome` (allOf), rather than
    a copy of the object's fields, whose enums would then be named twice (AlertChannel's `kind`)."""

    target_class = Written
    match_subclasses = True

    def map_serializer(self, auto_schema: AutoSchema, direction: str) -> dict:
        shown = auto_schema.resolve_serializer(self.target.shown, direction)
        # As drf-spectacular maps the field (its enum's id included, so that every `outcome` is one
        # OutcomeEnum): the way its documentation gives extensions.
        outcome = auto_schema._map_serializer_field(self.target.fields["outcome"], direction)
        return {"allOf": [shown.ref, {"type": "object", "properties": {"outcome": outcome}, "required": ["outcome"]}]}


def written(serializer: type[serializers.Serializer]) -> type[serializers.Serializer]:
    """The answer of a write of what `serializer` shows: the object, and the write's `outcome` (from
    the context), declared as a field so that the schema has it. A class per kind of object, named
    Written<Name> (the schema's component)."""

    def to_representation(self: serializers.Serializer, instance: object) -> dict:
        # The object's own representation skips `outcome` (no attribute of the object): added here.
        return serializer.to_representation(self, instance) | {"outcome": self.context["outcome"]}

    attributes: dict[str, object] = {
        "shown": serializer,
        "__module__": __name__,
        "__doc__": f"{(serializer.__doc__ or serializer.__name__).strip()}\n\nAs a write answers it, with its outcome.",
        "outcome": serializers.ChoiceField(Outcome.choices, read_only=True, help_text=OUTCOME_HELP),
        "to_representation": to_representation,
    }
    meta = getattr(serializer, "Meta", None)
    if meta is not None and isinstance(getattr(meta, "fields", None), list | tuple):
        attributes["Meta"] = type("Meta", (meta,), {"fields": [*meta.fields, "outcome"]})
    return type(f"Written{serializer.__name__}", (Written, serializer), attributes)


def answer(data: dict, outcome: str, headers: dict[str, str] | None = None) -> Response:
    """A write's answer: 201 for what it created, 200 otherwise, with the `Outcome` header."""
    code = status.HTTP_201_CREATED if outcome == Outcome.CREATED else status.HTTP_200_OK
    return Response(data, status=code, headers=outcome_headers(outcome, headers))


def outcome_headers(outcome: str, headers: dict[str, str] | None = None) -> dict[str, str]:
    """`headers` and the `Outcome` header; each a plain str (WSGI refuses an Outcome member)."""
    return {name: str(value) for name, value in {**(headers or {}), HEADER: outcome}.items()}
