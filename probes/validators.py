from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator, URLValidator

from .choices import ChannelKind
from .webhooks import DeliveryError, check_webhook_target


def validate_channel_target(kind: str | None, target: str) -> None:
    """An email channel's target is an address; a webhook's an http(s) URL whose host resolves
    into ALERT_WEBHOOK_ALLOWED_NETWORKS."""
    if kind == ChannelKind.EMAIL:
        EmailValidator(message="Give an email address.")(target)
    elif kind == ChannelKind.WEBHOOK:
        URLValidator(schemes=["http", "https"], message="Give an http:// or https:// URL.")(target)
        try:
            check_webhook_target(target)
        except DeliveryError as refused:
            raise ValidationError(str(refused)) from refused
