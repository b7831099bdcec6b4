"""The browser's deployment form (a document of the API, as forms and formsets), and how
the API's field errors are put in place on forms (also the admin's)."""

from __future__ import annotations

from django import forms

from .choices import HOST_ROLES, NETWORK_ROLES, Feature
from .models import Team


class DeploymentForm(forms.Form):
    team = forms.ModelChoiceField(queryset=Team.objects.none(), to_field_name="name")
    name = forms.CharField(max_length=100)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    dlp_base_port = forms.IntegerField(initial=17500, label="DLP base port")
    features = forms.MultipleChoiceField(choices=Feature.choices, widget=forms.CheckboxSelectMultiple, required=False)


class ApplianceForm(forms.Form):
    hostname = forms.CharField(required=False)
    c_address = forms.CharField(required=False, label="C address")
    p1_address = forms.CharField(required=False, label="P1 address")
    p2_address = forms.CharField(required=False, label="P2 address")
    site = forms.CharField(required=False, initial="default")


class HostForm(forms.Form):
    role = forms.ChoiceField(choices=[("", "—")] + [(r.value, r.label) for r in HOST_ROLES], required=False)
    name = forms.CharField(required=False)
    address = forms.CharField(required=False)
    site = forms.CharField(required=False, initial="default")


class NetworkForm(forms.Form):
    role = forms.ChoiceField(choices=[("", "—")] + [(r.value, r.label) for r in NETWORK_ROLES], required=False)
    name = forms.CharField(required=False)
    network = forms.CharField(required=False, help_text='CIDR or "any"')
    site = forms.CharField(required=False, initial="default")


# Each list of rows, and how many empty rows the form offers.
ROWS = {
    "appliances": (ApplianceForm, 2),
    "hosts": (HostForm, 3),
    "peer_networks": (NetworkForm, 1),
}


def formsets_for(data: object, initial: dict[str, list[dict]]) -> dict[str, forms.BaseFormSet]:
    return {
        prefix: forms.formset_factory(form, extra=extra)(data, prefix=prefix, initial=initial.get(prefix))
        for prefix, (form, extra) in ROWS.items()
    }


def filled(row: dict) -> bool:
    """A row the user wrote in: anything but the site, which every empty row shows as "default".
    A row without its name is still a row: the API says what it lacks, on that row."""
    return any(value for name, value in row.items() if name != "site")


def document_of(form: DeploymentForm, formsets: dict[str, forms.BaseFormSet]) -> tuple[dict, dict[str, list[int]]]:
    """The API document the forms describe, and which form row each list entry came from."""
    document = {**form.cleaned_data, "team": form.cleaned_data["team"].name}
    rows: dict[str, list[int]] = {}
    for prefix, formset in formsets.items():
        entries = [(i, f.cleaned_data) for i, f in enumerate(formset.forms) if filled(f.cleaned_data)]
        rows[prefix] = [i for i, _ in entries]
        document[prefix] = [{k: v or None if k.endswith("_address") else v for k, v in d.items()} for _, d in entries]
        for entry in document[prefix]:
            entry["site"] = entry.get("site") or "default"
    return document, rows


def show_errors(errors: dict, form: DeploymentForm, formsets: dict, rows: dict[str, list[int]]) -> None:
    """Put the API's field errors in place on the forms: a list's on the rows they came from."""
    for field, messages in errors.items():
        row_forms = [formsets[field].forms[index] for index in rows[field]] if field in formsets else []
        if not (row_forms and put_row_errors(row_forms, messages)):
            put_errors(form, {field: messages})


def put_errors(form: forms.BaseForm, detail: object) -> None:
    """A serializer's errors (field messages, or messages) on a form: a field's on the field,
    any other on the form, named."""
    if not isinstance(detail, dict):
        form.add_error(None, [str(message) for message in detail] if isinstance(detail, list) else str(detail))
        return
    for name, messages in detail.items():
        if name in form.fields:
            form.add_error(name, messages)
        else:
            text = " ".join(map(str, messages)) if isinstance(messages, list) else str(messages)
            form.add_error(None, text if name == "non_field_errors" else f"{name}: {text}")


def put_row_errors(row_forms: list[forms.BaseForm], detail: object) -> bool:
    """A list's errors, one dict per row, on the rows' forms; False if they are not per row."""
    if not (isinstance(detail, list) and detail and all(isinstance(row, dict) for row in detail)):
        return False
    for row_form, errors in zip(row_forms, detail, strict=False):
        put_errors(row_form, errors)
    return True
