"""Loading a catalog version from its data file (YAML or JSON, one record per requirement)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import yaml
from django.db import transaction
from rest_framework import serializers

from .choices import CatalogTable, Feature, Interface, Protocol, Role, Service
from .models import CatalogVersion, Product, Requirement
from .rules import FOOTNOTE_MARKS
from .strict import Strict

CATALOG_DIR = Path(__file__).resolve().parent / "catalogs"
FOOTNOTE_KINDS = ["whole_range", "configurable_base"]
DIRECTIONS = ["Inbound", "Outbound"]


class CatalogError(Exception):
    pass


class ProductRecord(Strict, serializers.Serializer):
    slug = serializers.SlugField()
    name = serializers.CharField()
    vendor = serializers.CharField()


class SourceRecord(Strict, serializers.Serializer):
    title = serializers.CharField()
    file = serializers.CharField()


class FootnoteRecord(Strict, serializers.Serializer):
    mark = serializers.CharField()
    text = serializers.CharField()


class CatalogRecord(Strict, serializers.Serializer):
    product = ProductRecord()
    version = serializers.CharField(max_length=50)
    source = SourceRecord()
    warning = serializers.CharField()
    footnotes = serializers.DictField(child=FootnoteRecord(), required=False, default=dict)
    requirements = serializers.ListField(child=serializers.DictField(), allow_empty=False)

    def validate_footnotes(self, value: dict) -> dict:
        unknown = set(value) - set(FOOTNOTE_KINDS)
        if unknown:
            raise serializers.ValidationError(f"Unknown footnote kinds {sorted(unknown)}; known: {FOOTNOTE_KINDS}.")
        return value


class RequirementRecord(Strict, serializers.Serializer):
    id = serializers.RegexField(r"^[a-z0-9][a-z0-9.-]*$", max_length=100)
    table = serializers.ChoiceField(CatalogTable.choices)
    row = serializers.IntegerField(min_value=1)
    interface_text = serializers.CharField()
    interfaces = serializers.ListField(child=serializers.ChoiceField(Interface.choices), allow_empty=False)
    recommended_interface = serializers.ChoiceField(Interface.choices, required=False, default="")
    port_text = serializers.CharField()
    port_start = serializers.IntegerField(min_value=1, max_value=65535)
    port_end = serializers.IntegerField(min_value=1, max_value=65535)
    protocol = serializers.ChoiceField(Protocol.choices)
    protocol_inferred = serializers.BooleanField(required=False, default=True)
    direction = serializers.ChoiceField(DIRECTIONS)
    initiator = serializers.ChoiceField(Role.choices)
    listener = serializers.ChoiceField(Role.choices)
    description = serializers.CharField()
    footnotes = serializers.ListField(child=serializers.ChoiceField(FOOTNOTE_KINDS), required=False, default=list)
    features = serializers.ListField(child=serializers.ChoiceField(Feature.choices), required=False, default=list)
    service = serializers.ChoiceField(Service.choices)
    notes = serializers.ListField(child=serializers.CharField(), required=False, default=list)

    def validate(self, attrs: dict) -> dict:
        errors = {}
        if attrs["port_end"] < attrs["port_start"]:
            errors["port_end"] = "must not be below port_start."
        if len(set(attrs["interfaces"])) != len(attrs["interfaces"]):
            errors["interfaces"] = "lists an interface twice."
        if attrs["recommended_interface"] and attrs["recommended_interface"] not in attrs["interfaces"]:
            errors["recommended_interface"] = "must be one of the allowed interfaces."
        # Table 1 is traffic into the appliance; tables 2 and 3 are the appliance's own connections.
        if attrs["table"] == CatalogTable.APPLIANCE and attrs["listener"] != Role.APPLIANCE:
            errors["listener"] = "must be appliance for a row of the appliance table."
        if attrs["table"] != CatalogTable.APPLIANCE and attrs["initiator"] != Role.APPLIANCE:
            errors["initiator"] = "must be appliance for a row of an outbound or off-appliance table."
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


def _first_error(errors: object) -> str:
    """The first message of a DRF error tree, with the path of fields that leads to it."""
    path, detail = [], errors
    while not isinstance(detail, str):
        if isinstance(detail, dict):
            key, detail = next(iter(detail.items()))
            if key != "non_field_errors":
                path.append(str(key))
        else:
            detail = detail[0]
    return f"{'.'.join(path)}: {detail}" if path else str(detail)


def read_catalog(path: Path) -> dict:
    """Parse and validate a catalog file; CatalogError names the record and field at fault."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CatalogError(f"{path.name}: cannot be read: {exc}") from exc
    if not isinstance(document, dict):
        raise CatalogError(f"{path.name}: expected a mapping with product, version, source and requirements.")
    header = CatalogRecord(data=document)
    if not header.is_valid():
        raise CatalogError(f"{path.name}: {_first_error(header.errors)}")
    catalog = header.validated_data
    requirements = []
    for index, data in enumerate(catalog["requirements"], start=1):
        record = RequirementRecord(data=data)
        name = f"requirement {index} ({data.get('id', 'no id')})"
        if not record.is_valid():
            raise CatalogError(f"{path.name}: {name}: {_first_error(record.errors)}")
        attrs = record.validated_data
        if any(r["id"] == attrs["id"] for r in requirements):
            raise CatalogError(f"{path.name}: {name}: id: appears more than once.")
        missing = [kind for kind in attrs["footnotes"] if kind not in catalog["footnotes"]]
        if missing:
            raise CatalogError(f"{path.name}: {name}: footnotes: {missing} are not defined under footnotes.")
        requirements.append(dict(attrs))
    bases = {r["port_start"] for r in requirements if "configurable_base" in r["footnotes"]}
    if len(bases) > 1:
        raise CatalogError(f"{path.name}: configurable ranges start at different ports {sorted(bases)}.")
    catalog["requirements"] = requirements
    catalog["configurable_base_default"] = bases.pop() if bases else None
    return catalog


def content_hash(catalog: dict) -> str:
    return hashlib.sha256(json.dumps(catalog, sort_keys=True, default=str).encode()).hexdigest()


@transaction.atomic
def load_catalog(path: Path) -> tuple[CatalogVersion, bool]:
    """Load a catalog file; returns the version and whether it was new.

    Loading the same content again changes nothing. A version is immutable: different
    content under a version that is already loaded is refused, so a checklist always
    means what its version said.
    """
    catalog = read_catalog(path)
    digest = content_hash(catalog)
    product, _ = Product.objects.update_or_create(
        slug=catalog["product"]["slug"],
        defaults={"name": catalog["product"]["name"], "vendor": catalog["product"]["vendor"]},
    )
    existing = CatalogVersion.objects.filter(product=product, version=catalog["version"]).first()
    if existing is not None:
        if existing.content_sha256 != digest:
            raise CatalogError(
                f"{path.name}: {product.name} {catalog['version']} is already loaded with different content; "
                "a new revision needs a new version."
            )
        return existing, False
    version = CatalogVersion.objects.create(
        product=product,
        version=catalog["version"],
        source_title=catalog["source"]["title"],
        source_file=catalog["source"]["file"],
        warning=catalog["warning"],
        configurable_base_default=catalog["configurable_base_default"],
        content_sha256=digest,
    )
    # Each footnote gets its own sign in what the portal hands out (the vendor marks both "*").
    signs = dict(zip(catalog["footnotes"], FOOTNOTE_MARKS, strict=False))
    Requirement.objects.bulk_create(
        Requirement(
            version=version,
            uid=r["id"],
            table=r["table"],
            row=r["row"],
            interface_text=r["interface_text"],
            interfaces=r["interfaces"],
            recommended_interface=r["recommended_interface"],
            port_text=r["port_text"],
            port_start=r["port_start"],
            port_end=r["port_end"],
            protocol=r["protocol"],
            protocol_inferred=r["protocol_inferred"],
            direction=r["direction"],
            initiator=r["initiator"],
            listener=r["listener"],
            description=r["description"],
            footnotes=[{"kind": kind, **catalog["footnotes"][kind], "sign": signs[kind]} for kind in r["footnotes"]],
            notes=r["notes"],
            features=r["features"],
            service=r["service"],
        )
        for r in catalog["requirements"]
    )
    return version, True


def catalog_files() -> list[Path]:
    return sorted(p for p in CATALOG_DIR.iterdir() if p.suffix in {".yaml", ".yml", ".json"})
