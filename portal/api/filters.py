import datetime

import django_filters as filters
from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.http import QueryDict
from django_filters.fields import IsoDateTimeField
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field

from ports.choices import CatalogTable, ChangeAction, ChangedObject, ChangeSource, Interface, ItemStatus, Protocol, Role
from ports.models import STOP_AT, ChecklistItem, Deployment, ObjectChange, Requirement
from probes.choices import FAILING_STATES, PROBED_STATES
from probes.stops import stopping

# The rules the "opened_failing" flag shows: their latest probe fails, and they are marked opened
# (states, status). The page's summary counts them from the checklist's counts by both.
OPENED_FAILING = (FAILING_STATES, ItemStatus.OPENED)


class AnyOfField(forms.MultipleChoiceField):
    """Values to match any of; a blank one (a form's "any", sent with every other field) is none."""

    def to_python(self, value: object) -> list[str]:
        return [choice for choice in super().to_python(value) if choice != ""]


class AnyOfFilter(filters.MultipleChoiceFilter):
    field_class = AnyOfField


@extend_schema_field(OpenApiTypes.INT)
class PortFilter(filters.NumberFilter):
    """A port: a whole number 0-65535 (0.5 or 70000 is the client's mistake, a 400)."""

    field_class = forms.IntegerField

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, min_value=0, max_value=65535, **kwargs)


class AddressFilter(filters.CharFilter):
    """An IPv4 or IPv6 address, as a probe names a device (10.0.1.1, fd00::1): anything else is the
    client's mistake, a 400. IPv6 is compared in its compressed form, as the probes write it."""

    field_class = forms.GenericIPAddressField


@extend_schema_field({"type": "integer", "minimum": 1, "maximum": 2**63 - 1})
class IdFilter(filters.NumberFilter):
    """An object's id: a whole number that a database key holds (an id of 1e30 or 1.5 is the
    client's mistake, a 400, not a query the database refuses)."""

    field_class = forms.IntegerField

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, min_value=1, max_value=2**63 - 1, **kwargs)


class MomentField(IsoDateTimeField):
    """An ISO 8601 date and time (a date alone is its midnight, no offset is UTC), read as the same
    moment in UTC: PostgreSQL takes no offset beyond 15:59, where Python takes up to 23:59. One
    that UTC cannot hold (year 1 at +01:00) is the client's mistake."""

    def to_python(self, value: object) -> datetime.datetime | None:
        moment = super().to_python(value)
        if moment is None:
            return None
        try:
            return moment.astimezone(datetime.UTC)
        except OverflowError as overflow:
            raise ValidationError("A time between the years 1 and 9999, in UTC.", code="invalid") from overflow


class MomentFilter(filters.IsoDateTimeFilter):
    field_class = MomentField


class RequirementFilterSet(filters.FilterSet):
    product = filters.CharFilter(field_name="version__product__slug")
    version = filters.CharFilter(field_name="version__version", help_text="Catalog version (default: current).")
    port = PortFilter(method="filter_port", help_text="A port; a range that contains it matches.")
    protocol = filters.ChoiceFilter(choices=Protocol.choices)
    interface = filters.ChoiceFilter(choices=Interface.choices, method="filter_interface")
    role = filters.ChoiceFilter(choices=Role.choices, method="filter_role", help_text="Initiator or listener.")
    table = filters.ChoiceFilter(choices=CatalogTable.choices)
    q = filters.CharFilter(method="filter_text", help_text="Text in the id, description, port or notes.")

    class Meta:
        model = Requirement
        fields = ["product", "version", "port", "protocol", "interface", "role", "table", "q"]

    def filter_port(self, queryset: QuerySet, name: str, value: int) -> QuerySet:
        return queryset.filter(port_start__lte=value, port_end__gte=value)

    def filter_interface(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        # The allowed interfaces are a short JSON list, which SQLite cannot search inside;
        # a catalog version has a few dozen rows, so this is filtered here.
        return queryset.filter(pk__in=[r.pk for r in queryset if value in r.interfaces])

    def filter_role(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(Q(initiator=value) | Q(listener=value))

    def filter_text(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(
            Q(uid__icontains=value)
            | Q(description__icontains=value)
            | Q(port_text__icontains=value)
            | Q(notes__icontains=value)
            | Q(footnotes__icontains=value)
        )


class DeploymentFilterSet(filters.FilterSet):
    team = filters.CharFilter(field_name="team__name")
    name = filters.CharFilter()

    class Meta:
        model = Deployment
        fields = ["team", "name"]


NEVER_PROBED = "never"


class ChecklistItemFilterSet(filters.FilterSet):
    deployment = filters.NumberFilter()
    status = AnyOfFilter(choices=ItemStatus.choices)
    protocol = filters.ChoiceFilter(choices=Protocol.choices)
    interface = filters.ChoiceFilter(choices=Interface.choices)
    role = filters.ChoiceFilter(
        choices=Role.choices,
        method="filter_role",
        label="Role",
        empty_label="any",
        help_text="Source or destination role.",
    )
    port = PortFilter(method="filter_port", label="Port", help_text="A port; a range that contains it matches.")
    q = filters.CharFilter(method="filter_text", label="Text", help_text="Text in the endpoints or the requirement.")
    result = filters.ChoiceFilter(
        label="Latest probe",
        choices=[*((s.value, s.label) for s in PROBED_STATES), (NEVER_PROBED, "Never probed")],
        method="filter_result",
        empty_label="any",
        help_text='The latest probe\'s state, or "never".',
    )
    flag = filters.ChoiceFilter(
        label="Flag",
        empty_label="none",
        choices=[("opened_failing", "Marked opened, but the latest probe fails")],
        method="filter_flag",
        help_text="opened_failing: rules marked opened whose latest probe fails.",
    )
    stops_at = AddressFilter(
        label="Stops at",
        method="filter_stops_at",
        help_text="A device's address: the failing rules whose latest probe it rejected, or that met no "
        "answer after it on their trace.",
    )

    class Meta:
        model = ChecklistItem
        fields = ["deployment", "status", "protocol", "interface", "role", "port", "q", "result", "flag", "stops_at"]

    def filter_result(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.with_latest_state(None if value == NEVER_PROBED else [value])

    def filter_flag(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        states, status = OPENED_FAILING
        return queryset.with_latest_state(states).filter(status=status)

    def filter_role(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(Q(source_role=value) | Q(destination_role=value))

    def filter_stops_at(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return stopping(queryset).filter(**{STOP_AT: value})

    filter_port = RequirementFilterSet.filter_port

    def filter_text(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(
            Q(source__icontains=value)
            | Q(source_name__icontains=value)
            | Q(destination__icontains=value)
            | Q(destination_name__icontains=value)
            | Q(requirement__uid__icontains=value)
            | Q(requirement__description__icontains=value)
        )


class ObjectChangeFilterSet(filters.FilterSet):
    """The change log's filters; each value that does not parse is a 400 naming its filter."""

    deployment = IdFilter(
        field_name="deployment_id", help_text="A deployment's id: its entries, kept after it was deleted."
    )
    object_type = filters.ChoiceFilter(choices=ChangedObject.choices)
    object_id = IdFilter(help_text="The changed object's id (with object_type: one object's history).")
    action = filters.ChoiceFilter(choices=ChangeAction.choices)
    source = filters.ChoiceFilter(choices=ChangeSource.choices)
    user = filters.CharFilter(field_name="user_name", help_text="The username, as it was at the change.")
    request_id = filters.CharFilter(help_text="The request's X-Request-ID: every change one request made.")
    since = MomentFilter(field_name="time", lookup_expr="gte", help_text="Changes at or after this ISO 8601 time.")
    until = MomentFilter(field_name="time", lookup_expr="lte", help_text="Changes at or before this ISO 8601 time.")

    class Meta:
        model = ObjectChange
        fields = ["deployment", "object_type", "object_id", "action", "source", "user", "request_id", "since", "until"]


def filters_given(query: QueryDict) -> bool:
    """Whether a query asks for some of the checklist's rules: one of its filters has a value (a
    form sends every field, blank ones included)."""
    return any(query.get(name) for name in ChecklistItemFilterSet.base_filters)
