from django import forms
from django.contrib import admin
from knox.models import AuthToken
from rest_framework.authtoken.models import TokenProxy
from rest_framework.exceptions import ValidationError

from .deployments import delete_deployment, save_deployment
from .forms import put_errors, put_row_errors
from .models import (
    ApiToken,
    Appliance,
    CatalogVersion,
    ChecklistItem,
    Deployment,
    Host,
    Membership,
    ObjectChange,
    PeerNetwork,
    Requirement,
    Team,
)
from .serializers import DeploymentSerializer


class MembershipInline(admin.TabularInline):
    model = Membership
    autocomplete_fields = ["user"]
    extra = 1


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    inlines = [MembershipInline]  # each member with their role
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


class DocumentFormSet(forms.BaseInlineFormSet):
    """An inline list of a deployment (appliances, hosts, networks), validated as the API
    validates that list of a deployment document."""

    document_field = ""

    def kept_forms(self) -> list[forms.Form]:
        return [form for form in self.forms if form.cleaned_data and not self._should_delete_form(form)]

    def rows(self) -> list[dict]:
        names = DeploymentSerializer().fields[self.document_field].child.fields
        # An empty box of a field that may be null (an interface address) means null, as in the API.
        nullable = {name for name in names if self.model._meta.get_field(name).null}
        return [
            {name: form.cleaned_data.get(name) or (None if name in nullable else "") for name in names}
            for form in self.kept_forms()
        ]

    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return
        serializer = DeploymentSerializer()
        try:
            value = serializer.fields[self.document_field].run_validation(self.rows())
            getattr(serializer, f"validate_{self.document_field}")(value)
        except ValidationError as invalid:
            if not put_row_errors(self.kept_forms(), invalid.detail):
                raise forms.ValidationError(str(invalid.detail)) from invalid
            raise forms.ValidationError("Correct the rows marked below.") from invalid


def document_inline(model_class: type, field: str) -> type[admin.TabularInline]:
    formset_class = type(f"{model_class.__name__}FormSet", (DocumentFormSet,), {"document_field": field})
    return type(
        f"{model_class.__name__}Inline",
        (admin.TabularInline,),
        {"model": model_class, "extra": 0, "formset": formset_class},
    )


class DeploymentAdminForm(forms.ModelForm):
    """The deployment's own fields, validated as the API validates them."""

    class Meta:
        model = Deployment
        fields = ["team", "name", "description", "catalog_version", "dlp_base_port", "features"]

    def document(self) -> dict:
        data = self.cleaned_data
        return {
            "team": data["team"].name,
            "name": data["name"],
            "description": data.get("description", ""),
            "catalog_version": data["catalog_version"].pk,
            "dlp_base_port": data["dlp_base_port"],
            "features": data.get("features") or [],
        }

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.fields["features"].required = False  # none in use is a choice, as in the API

    def clean(self) -> dict:
        cleaned = super().clean()
        if not self.errors:
            instance = self.instance if self.instance.pk else None
            serializer = DeploymentSerializer(instance, data=self.document(), partial=instance is not None)
            if not serializer.is_valid():
                put_errors(self, serializer.errors)
        return cleaned


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    """Saved through ports.deployments.save_deployment(), like every other write: the admin
    cannot store what the API would refuse, and the checklist follows at once."""

    form = DeploymentAdminForm
    list_display = ["name", "team", "catalog_version", "updated"]
    list_filter = ["team"]
    search_fields = ["name"]
    inlines = [
        document_inline(Appliance, "appliances"),
        document_inline(Host, "hosts"),
        document_inline(PeerNetwork, "peer_networks"),
    ]

    def save_model(self, request, obj, form, change) -> None:
        pass  # saved with its lists in save_related(), in one go

    def save_related(self, request, form, formsets, change) -> None:
        document = form.document() | {formset.document_field: formset.rows() for formset in formsets}
        # A fresh instance: the form has already copied its values onto form.instance.
        instance = Deployment.objects.get(pk=form.instance.pk) if change else None
        saved = save_deployment(document, instance=instance)
        # The admin's messages and redirect name form.instance; its change message reads what
        # each formset's save() would have set.
        form.instance.pk, form.instance._state.adding = saved.deployment.pk, False
        for formset in formsets:
            formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []

    def delete_model(self, request, obj) -> None:
        delete_deployment(obj)  # as the API and the page delete: its last state stays in the change log

    def delete_queryset(self, request, queryset) -> None:
        for deployment in queryset:
            delete_deployment(deployment)


@admin.register(ChecklistItem)
class ChecklistItemAdmin(admin.ModelAdmin):
    list_display = ["deployment", "source", "destination", "protocol", "ports", "status"]
    list_filter = ["status", "deployment__team"]
    readonly_fields = [f.name for f in ChecklistItem._meta.fields if f.name != "status"]

    def has_add_permission(self, request) -> bool:
        return False  # items follow from their deployment (DeploymentAdmin)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # likewise: a rule goes when the deployment no longer needs it

    def save_model(self, request, obj, form, change) -> None:
        # As every status change: recorded in the item's history, with who and when.
        if "status" in form.changed_data:
            ChecklistItem.objects.get(pk=obj.pk).change_status(obj.status, request.user, "changed in the admin")


@admin.register(ObjectChange)
class ObjectChangeAdmin(admin.ModelAdmin):
    """The change log, to read: an entry is what happened, so nobody adds, edits or deletes one
    (CHANGE_LOG_RETENTION_DAYS purges the old)."""

    list_display = ["time", "team", "deployment_name", "object_type", "object_repr", "action", "user_name", "source"]
    list_filter = ["team", "object_type", "action", "source"]
    search_fields = ["deployment_name", "object_repr", "user_name", "request_id"]
    date_hierarchy = "time"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


# The API's tokens are the portal's (ApiToken): DRF's plain-text ones are no longer made (their rows
# were carried over), and knox's own model is swapped for ApiToken, so neither has a page here.
for replaced in (TokenProxy, AuthToken):
    if admin.site.is_registered(replaced):
        admin.site.unregister(replaced)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Every user's API tokens, to see and revoke (delete); never a key or its hash. A token is made
    by its user (the API tokens page) or `manage.py create_token`, the one time its key is shown."""

    list_display = ["user", "name", "token_key", "created", "expiry", "last_used"]
    list_display_links = None  # no page per token: its address would be its hash (the primary key)
    list_filter = ["user__is_active"]
    search_fields = ["user__username", "name", "token_key"]
    date_hierarchy = "created"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
