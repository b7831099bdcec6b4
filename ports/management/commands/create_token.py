from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from ports.models import ApiToken


class Command(BaseCommand):
    help = (
        "Make an API token of a user and print its key (alone on stdout, for a script to take); it is "
        "shown this once: the portal keeps only its hash. Replaces DRF's drf_create_token."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("username", help="Whose token: what it reaches is what this user reaches.")
        parser.add_argument("--name", required=True, help="What the token is for, as its list shows it.")
        parser.add_argument(
            "--days",
            type=int,
            default=None,
            help=f"How many days it lives (default API_TOKEN_DAYS, {settings.API_TOKEN_DAYS}; "
            f"at most API_TOKEN_MAX_DAYS, {settings.API_TOKEN_MAX_DAYS}).",
        )

    def handle(self, *args, username: str, name: str, days: int | None, **options) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user is named {username!r}: nothing was made.")
        if not user.is_active:
            raise CommandError(f"{username} is deactivated: their tokens would not work. Nothing was made.")
        try:
            token, key = ApiToken.issue(user, name, days)
        except ValidationError as invalid:
            raise CommandError(f"{' '.join(invalid.messages)} Nothing was made.") from invalid
        self.stdout.write(key)
        if options["verbosity"] >= 1:
            expiry = f"{token.expiry:%Y-%m-%d %H:%M} UTC"
            self.stderr.write(
                f"Token {token.name!r} of {username} ({token.token_key}…), valid until {expiry}: "
                "the key above is shown this once. Send it as 'Authorization: Token <key>'."
            )
