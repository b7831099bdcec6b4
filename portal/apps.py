from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"

    def ready(self) -> None:
        # The central Celery app, so that whatever this process sends goes to the configured
        # broker. Not imported with the package: a probe site's worker (portal.probe_site) must
        # not create it, or Celery's Django fixup would set up Django and its ORM there too.
        from . import celery  # noqa: F401
