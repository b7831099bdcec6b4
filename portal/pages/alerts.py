"""The alerts page: a team's channels (add, test, turn off, remove) and its recent alerts."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import get_template
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from ports.choices import TeamRole
from ports.models import Team
from ports.scoping import require_role
from probes.alerts.delivery import retry_delays
from probes.alerts.raising import send_test_alert
from probes.choices import AlertKind
from probes.models import Alert, AlertChannel

RECENT_ALERTS = 25
# While a delivery on the page is pending, its script (static/alerts.js) asks for the rows this often.
POLL_SECONDS = 2


class ChannelForm(forms.ModelForm):
    """The target is checked by AlertChannel.clean(), as the form validates the instance."""

    kinds = forms.MultipleChoiceField(
        choices=AlertKind.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Carries",
        help_text="None ticked: every kind of alert.",
    )

    class Meta:
        model = AlertChannel
        fields = ["team", "name", "kind", "target", "kinds"]
        labels = {"target": "Email address or webhook URL"}

    def clean_kinds(self) -> list[str]:
        return sorted(set(self.cleaned_data["kinds"]))


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.3g} s"
    if seconds < 3600:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"


def retry_promise() -> str:
    """What the page promises about failed deliveries, from the schedule the worker follows."""
    delays = retry_delays()
    if not delays:
        return "A failed delivery is not tried again: it is marked failed."
    if len(delays) == 1:
        return f"A failed delivery is tried again once, after {duration(delays[0])}, then marked failed."
    after = [duration(delay) for delay in delays]
    when = f"{', '.join(after[:-1])} and {after[-1]}"
    total = duration(sum(delays))
    return f"A failed delivery is tried again {len(delays)} times, after {when} ({total} in all), then marked failed."


@login_required
def alert_channels(request: HttpRequest) -> HttpResponse:
    teams = Team.objects.for_user(request.user, TeamRole.EDITOR)  # where the user may add one
    if request.method == "POST" and not teams:
        raise PermissionDenied("Adding an alert channel needs the role editor in one of your teams.")
    only_team = teams[0] if len(teams) == 1 else None  # len() has read them: no second query
    form = ChannelForm(request.POST or None, initial={"team": only_team})
    form.fields["team"].queryset = teams
    if request.method == "POST" and form.is_valid():
        channel = form.save()
        messages.success(request, f"Channel {channel.name} added: send it a test alert.")
        return redirect("alerts")
    channels = AlertChannel.objects.for_user(request.user).select_related("team")
    context = {
        "form": form,
        "channels": channels,
        "alerts": recent(request),
        "tries": len(retry_delays()) + 1,
        "poll_seconds": POLL_SECONDS,
        "retry_promise": retry_promise(),
    }
    return render(request, "probes/alerts.html", context)


def recent(request: HttpRequest) -> list[Alert]:
    """The user's teams' latest alerts, with their deliveries: the rows of "Recent alerts"."""
    return list(Alert.objects.for_user(request.user).prefetch_related("deliveries__channel")[:RECENT_ALERTS])


@login_required
@never_cache
def recent_alerts(request: HttpRequest) -> HttpResponse:
    """The rows of "Recent alerts" as the page renders them (probes/_alert_row.html), newest first:
    the page's script swaps them in while a delivery is pending, so that a delivery's state, and a
    new alert, read as a reload would show them. Only the user's teams' alerts."""
    row, tries = get_template("probes/_alert_row.html"), len(retry_delays()) + 1
    return HttpResponse("\n".join(row.render({"alert": alert, "tries": tries}) for alert in recent(request)))


@login_required
@require_POST
def alert_channel_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    channel = get_object_or_404(AlertChannel.objects.for_user(request.user).select_related("team"), pk=pk)
    require_role(request.user, channel.team, TeamRole.EDITOR)
    if action == "test":
        send_test_alert(channel, request.user)
        messages.success(request, f"Test alert sent to {channel.name}: its delivery shows below.")
    elif action == "toggle":
        channel.enabled = not channel.enabled
        channel.save(update_fields=["enabled"])
        messages.success(request, f"Channel {channel.name} turned {'on' if channel.enabled else 'off'}.")
    elif action == "delete":
        channel.delete()
        messages.success(request, f"Channel {channel.name} removed.")
    else:
        raise Http404("No such action.")
    return redirect("alerts")
