"""How alerts reach people: email through Django's SMTP backend, or a signed webhook."""

from __future__ import annotations

import smtplib

from django.conf import settings
from django.core.mail import send_mail

from ..choices import ChannelKind
from ..models import AlertDelivery
from ..webhooks import DeliveryError, network_error, post_webhook


def retry_delays() -> list[float]:
    """How long a failed delivery waits before each further try: ALERT_RETRY_BASE seconds, doubled
    each time, ALERT_MAX_RETRIES times. The worker (tasks.deliver_alert) and the page that
    promises it read this one list."""
    return [settings.ALERT_RETRY_BASE * 2**n for n in range(settings.ALERT_MAX_RETRIES)]


def deliver(delivery: AlertDelivery) -> None:
    """One try; a failure is a DeliveryError whose message the page shows as it is."""
    channel, alert = delivery.channel, delivery.alert
    if channel.kind == ChannelKind.EMAIL:
        try:
            send_mail(f"[portal] {alert.subject}", alert.body, settings.ALERT_FROM_EMAIL, [channel.target])
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(f"the mail server answered {exc.smtp_code} {_text(exc.smtp_error)}") from exc
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            raise DeliveryError(f"the mail server refused {channel.target}: {code} {_text(text)}") from exc
        except smtplib.SMTPException as exc:  # an OSError too: first, for its own words
            raise DeliveryError(f"the mail server: {exc}") from exc
        except OSError as exc:
            where = f"mail server {settings.EMAIL_HOST}:{settings.EMAIL_PORT}"
            raise DeliveryError(network_error(exc, where, settings.EMAIL_TIMEOUT)) from exc
    else:
        post_webhook(channel.target, channel.secret, alert.payload())


def _text(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else reply
