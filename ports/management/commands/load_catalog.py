from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from ports.loader import CatalogError, catalog_files, load_catalog


class Command(BaseCommand):
    help = "Load catalog versions from data files (default: every file of ports/catalogs/). Idempotent."

    def add_arguments(self, parser) -> None:
        parser.add_argument("files", nargs="*", type=Path, help="Catalog files (YAML or JSON).")

    def handle(self, *args, files: list[Path], **options) -> None:
        try:
            # All or nothing: one bad file leaves the database as it was.
            with transaction.atomic():
                for path in files or catalog_files():
                    version, created = load_catalog(path)
                    if options["verbosity"] >= 1:
                        count = version.requirements.count()
                        state = "loaded" if created else "unchanged"
                        self.stdout.write(f"{version} ({count} requirements) from {path.name}: {state}")
        except CatalogError as exc:
            raise CommandError(str(exc)) from exc
