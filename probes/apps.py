from django.apps import AppConfig


class ProbesConfig(AppConfig):
    name = "probes"

    def ready(self) -> None:
        # Alerts listen to the recorder (probes.signals), the probing of change requests to their
        # steps (ports.signals): the models never import them.
        from . import requests  # noqa: F401
        from .alerts import raising  # noqa: F401
