"""DRF's tokens (rest_framework.authtoken, kept in plain text, never expiring) become API tokens
(ports.ApiToken): each key is kept as knox keeps one, its hash, so that the scripts holding it keep
working with the same key, until it expires API_TOKEN_DAYS from now. The plain-text rows go.

Not reversible in full: going back leaves no DRF token, as the keys are no longer known."""

import datetime

from django.conf import settings
from django.db import migrations
from django.utils import timezone
from knox.crypto import hash_token
from knox.settings import CONSTANTS

CARRIED_OVER = "Carried over from before expiring tokens"


def carry_over(apps, schema_editor):
    Token = apps.get_model("authtoken", "Token")
    ApiToken = apps.get_model("ports", "ApiToken")
    expiry = timezone.now() + datetime.timedelta(days=settings.API_TOKEN_DAYS)
    for old in Token.objects.all():
        digest = hash_token(old.key)
        ApiToken(
            digest=digest,
            token_key=old.key[: CONSTANTS.TOKEN_KEY_LENGTH],
            user_id=old.user_id,
            expiry=expiry,
            name=CARRIED_OVER,
        ).save(force_insert=True)
        # When the key was made, not when it was carried over (`created` is set on the first save).
        ApiToken.objects.filter(digest=digest).update(created=old.created)
    Token.objects.all().delete()


class Migration(migrations.Migration):

    dependencies = [
        ("ports", "0014_api_tokens"),
        ("authtoken", "0004_alter_tokenproxy_options"),
    ]

    operations = [migrations.RunPython(carry_over, migrations.RunPython.noop)]
