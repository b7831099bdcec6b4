from django.contrib import admin

from .checklist import regenerate_checklist
from .models import Appliance, CatalogVersion, ChecklistItem, Deployment, Host, PeerNetwork, Requirement, Team


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    filter_horizontal = ["members"]
    search_fields = ["name"]


class RequirementInline(admin.TabularInline):
    model = Requirement
    fields = ["uid", "table", "row", "interface_text", "port_text", "protocol", "direction", "description"]
    readonly_fields = fields
    can_delete = False
    extra = 0


@admin.register(CatalogVersion)
class CatalogVersionAdmin(admin.ModelAdmin):
    # Catalog versions are data files loaded by `load_catalog`; never edited here.
    list_display = ["product", "version", "loaded_at"]
    inlines = [RequirementInline]

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_add_permission(self, request) -> bool:
        return False


class ApplianceInline(admin.TabularInline):
    model = Appliance
    extra = 0


class HostInline(admin.TabularInline):
    model = Host
    extra = 0


class PeerNetworkInline(admin.TabularInline):
    model = PeerNetwork
    extra = 0


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "catalog_version", "updated"]
    list_filter = ["team"]
    search_fields = ["name"]
    inlines = [ApplianceInline, HostInline, PeerNetworkInline]

    def save_related(self, request, form, formsets, change) -> None:
        super().save_related(request, form, formsets, change)
        regenerate_checklist(form.instance)


@admin.register(ChecklistItem)
class ChecklistItemAdmin(admin.ModelAdmin):
    list_display = ["deployment", "source", "destination", "protocol", "ports", "status"]
    list_filter = ["status", "deployment__team"]
    readonly_fields = [f.name for f in ChecklistItem._meta.fields if f.name != "status"]
