"""What an export is asked for (query parameters, or a change request's body): which rules
(the scope), and for a change request its reference, dates, rollback and zones."""

from __future__ import annotations

import re

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..models import Deployment
from ..strict import Strict
from ..validators import SITE_NAME
from .firewall import SYNTAXES
from .rule_set import Scope


@extend_schema_field({"type": "string", "example": "12,13,14"})
class ItemIdsField(serializers.Field):
    """Item ids as "1,2,3" (a query string) or [1, 2, 3] (JSON); given back as "1,2,3"."""

    default_error_messages = {"invalid": "Give item ids as numbers separated by commas."}

    def to_internal_value(self, data: object) -> list[int]:
        parts = data.split(",") if isinstance(data, str) else data
        if not isinstance(parts, list):
            self.fail("invalid")
        try:
            return [int(part) for part in parts if str(part).strip()]
        except (TypeError, ValueError):
            self.fail("invalid")

    def to_representation(self, value: list[int]) -> str:
        return ",".join(map(str, value))


# A firewall zone (PAN-OS) or interface name (ASA nameif): a token, never a live line.
ZONE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,30}")


@extend_schema_field({"type": "string", "example": "central:trust,dmz:dmz"})
class SiteZonesField(serializers.Field):
    """The firewall's zone or interface of each site, as "site:zone,site:zone" (a query string)
    or {"site": "zone"} (JSON); given back as text. Each site is a site name (validate_site's
    SITE_NAME), whether or not this deployment uses it: an export names the sites it ignores."""

    default_error_messages = {"invalid": 'Give zones as "site:zone" pairs separated by commas.'}

    def to_internal_value(self, data: object) -> dict[str, str]:
        if isinstance(data, str):
            pairs = [part.partition(":") for part in data.split(",") if part.strip()]
            if any(not sep for _, sep, _ in pairs):
                self.fail("invalid")
            data = {site.strip(): zone.strip() for site, _, zone in pairs}
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            self.fail("invalid")
        not_sites = [site for site in data if not (isinstance(site, str) and SITE_NAME.fullmatch(site))]
        if not_sites:
            raise serializers.ValidationError(
                f"Not a site name: {not_sites[0]!r}. Use up to 50 lower-case letters, digits, '-' or '_'."
            )
        wrong = [zone for zone in data.values() if not ZONE_NAME.fullmatch(zone)]
        if wrong:
            raise serializers.ValidationError(
                f"Not a zone or interface name: {wrong[0]!r}. Use up to 31 letters, digits, '_', '.' or '-'."
            )
        return data

    def to_representation(self, value: dict[str, str]) -> str:
        return ",".join(f"{site}:{zone}" for site, zone in value.items())


class ExportParams(serializers.Serializer):
    """Which rules an export holds, and (for a change request) what it asks for."""

    scope = serializers.ChoiceField(Scope.choices, default=Scope.ALL)
    items = ItemIdsField(required=False, help_text="Item ids, comma-separated (scope=selection).")
    since = serializers.RegexField(r"^[0-9a-f]{64}$", required=False, help_text="Fingerprint of an earlier export.")
    reference = serializers.CharField(max_length=60, required=False, allow_blank=True, default="")
    requester = serializers.CharField(max_length=120, required=False, allow_blank=True, default="")
    justification = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
    requested_date = serializers.DateField(required=False, allow_null=True, default=None)
    expiry = serializers.DateField(required=False, allow_null=True, default=None)
    rollback = serializers.CharField(
        max_length=2000, required=False, allow_blank=True, default="", help_text="How to back the change out."
    )
    syntax = serializers.ChoiceField(
        [(name, syntax.label) for name, syntax in SYNTAXES.items()],
        required=False,
        help_text="The firewall syntax of the change request's rollback commands.",
    )
    zones = SiteZonesField(
        required=False,
        help_text="The firewall zone (PAN-OS) or interface (ASA access-group) of each site; "
        'default "any" and no access-group. Sites this deployment does not use are ignored, so that one map '
        "serves a fleet: the firewall export names them in a comment line at its top.",
    )

    def validate(self, attrs: dict) -> dict:
        if attrs["scope"] == Scope.SELECTION and not attrs.get("items"):
            raise serializers.ValidationError({"items": ["Name the items of the selection."]})
        if attrs["expiry"] and attrs["requested_date"] and attrs["expiry"] <= attrs["requested_date"]:
            raise serializers.ValidationError({"expiry": ["The expiry must come after the requested date."]})
        deployment: Deployment = self.context["deployment"]
        if "since" in attrs and not deployment.exports.filter(fingerprint=attrs["since"]).exists():
            raise serializers.ValidationError({"since": ["No earlier export of this deployment has this fingerprint."]})
        if attrs.get("zones"):
            # One map for a fleet: the entries of sites this deployment does not use are left out,
            # and named (zones_ignored) for the export to say so. A site it uses that the map
            # lacks keeps the default, as before.
            sites = deployment.sites()
            attrs["zones_ignored"] = sorted(set(attrs["zones"]) - sites)
            attrs["zones"] = {site: zone for site, zone in attrs["zones"].items() if site in sites}
        if attrs.get("items"):
            unknown = set(attrs["items"]) - set(
                deployment.checklist.filter(pk__in=attrs["items"]).values_list("pk", flat=True)
            )
            if unknown:
                raise serializers.ValidationError({"items": [f"Not items of this deployment: {sorted(unknown)}."]})
        return attrs


class ExportRequest(Strict, ExportParams):
    """ExportParams as a request body (a change request rendered by a worker): nothing unknown."""
