"""Input that says what it means: a field a serializer does not know is an error, not ignored."""

from __future__ import annotations

from collections.abc import Mapping

from rest_framework import serializers


class Strict:
    """A serializer mixin: a field it does not know (misspelt, or not supported) gets a 400
    naming it, rather than being dropped while the rest is acted on. Read-only fields are
    known: a document read from the API can be sent back as it is. So are `answer_keys`, the
    keys an answer of a write adds to the object (its `outcome`): ignored, as read-only fields are."""

    answer_keys: tuple[str, ...] = ()

    def to_internal_value(self, data: object) -> dict:
        if isinstance(data, Mapping):
            unknown = sorted(set(data) - set(self.fields) - set(self.answer_keys))
            if unknown:
                known = ", ".join(name for name, field in self.fields.items() if not field.read_only)
                raise serializers.ValidationError({name: [f"Unknown field; known: {known}."] for name in unknown})
            # DRF's text fields take a number and store its digits: 0 is not the text "0" here.
            not_text = [
                name
                for name, field in self.fields.items()
                if isinstance(field, serializers.CharField) and data.get(name) is not None
                and not isinstance(data[name], str)
            ]  # fmt: skip
            if not_text:
                raise serializers.ValidationError({name: ["Not a string."] for name in not_text})
        return super().to_internal_value(data)
