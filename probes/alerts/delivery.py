"""How alerts reach people: email through Django's SMTP backend, or a signed webhook."""

from __future__ import annotations

import smtplib

from django.conf import settings
from django.core.mail import send_mail

from ..choices import ChannelKind
from ..models import AlertDelivery
from ..webhooks import DeliveryError, post_webhook


def deliver(delivery: AlertDelivery) -> None:
    channel, alert = delivery.channel, delivery.alert
    if channel.kind == ChannelKind.EMAIL:
        try:
            send_mail(f"[portal] {alert.subject}", alert.body, settings.ALERT_FROM_EMAIL, [channel.target])
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"the mail server did not take it: {exc}") from exc
    else:
        post_webhook(channel.target, channel.secret, alert.payload())
