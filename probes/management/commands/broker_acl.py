from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from ports.validators import validate_site
from probes.worker import site_acl


class Command(BaseCommand):
    help = "Print the Redis ACL line of a probe site's broker user (README: broker users per site)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("site")
        parser.add_argument("--password-hash", default="", help="SHA-256 of the password, hex (Redis '#<hash>').")

    def handle(self, site: str, password_hash: str, **options: object) -> None:
        try:
            validate_site(site)
        except ValidationError as exc:
            raise CommandError(f"{site!r} is not a site name: {' '.join(exc.messages)}") from exc
        secret = f"#{password_hash}" if password_hash else "><password>"
        self.stdout.write(f"user site-{site} on {secret} {site_acl(site)}")
