import django_filters as filters
from django.db.models import Q, QuerySet

from .choices import CatalogTable, Interface, ItemStatus, Protocol, Role
from .models import ChecklistItem, Deployment, Requirement


class RequirementFilterSet(filters.FilterSet):
    product = filters.CharFilter(field_name="version__product__slug")
    version = filters.CharFilter(field_name="version__version", help_text="Catalog version (default: current).")
    port = filters.NumberFilter(method="filter_port", help_text="A port; a range that contains it matches.")
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


class ChecklistItemFilterSet(filters.FilterSet):
    deployment = filters.NumberFilter()
    status = filters.MultipleChoiceFilter(choices=ItemStatus.choices)
    protocol = filters.ChoiceFilter(choices=Protocol.choices)
    interface = filters.ChoiceFilter(choices=Interface.choices)
    role = filters.ChoiceFilter(choices=Role.choices, method="filter_role", help_text="Source or destination role.")
    port = filters.NumberFilter(method="filter_port", help_text="A port; a range that contains it matches.")
    q = filters.CharFilter(method="filter_text", help_text="Text in the endpoints or the requirement.")

    class Meta:
        model = ChecklistItem
        fields = ["deployment", "status", "protocol", "interface", "role", "port", "q"]

    def filter_role(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(Q(source_role=value) | Q(destination_role=value))

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
