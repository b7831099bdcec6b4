import os

from celery import Celery

from probes.worker import add_probe_steps

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

# The sites' task too: the central workers of `make run` serve the default probe site. What the
# sites report is not a task: the recorder reads it (probes.recorder, `manage.py record`).
app = Celery("portal", include=["probes.probing"])
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
add_probe_steps(app)
