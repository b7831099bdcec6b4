from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from ports.loader import CatalogError, catalog_files, load_catalog


class Command(BaseCommand):
    help = "Load catalog versions from data files (default: every file of ports/catalogs/). Idempotent."

    def add_arguments(self, parser) -> None:
        parser.add_argument("files", nargs="*", type=Path, help="Catalog files (YAML or JSON).")

    def handle(self, *args, files: list[Path], **options) -> None:
        outcomes = []
        try:
            # All or nothing: one bad file leaves the database as it was, and nothing is said
            # to be loaded until every file is.
            with transaction.atomic():
                for path in files or catalog_files():
                    version, created = load_catalog(path)
                    count = version.requirements.count()
                    outcomes.append(
                        f"{version} ({count} requirements) from {path.name}: {'loaded' if created else 'unchanged'}"
                    )
        except CatalogError as exc:
            raise CommandError(f"{exc}\nNothing was loaded.") from exc
        if options["verbosity"] >= 1:
            self.stdout.write("\n".join(outcomes))
