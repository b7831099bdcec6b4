from django.apps import AppConfig


class ProbesConfig(AppConfig):
    name = "probes"

    def ready(self) -> None:
        # Alerts listen to the recorder (probes.signals): the models never import them.
        from .alerts import raising  # noqa: F401
