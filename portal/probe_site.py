"""The Celery app of a probe site's worker: `celery -A portal.probe_site worker -Q probes.<site>`.

It runs the site's task (probes.probing) and the heartbeat, with the broker's and the probes'
settings (DJANGO_SETTINGS_MODULE, read as plain values), and nothing else: no Django app is set
up, so a site worker loads no ORM and needs no database (tests/test_engine_plain.py holds it).
Results and heartbeats go back to the recorder's queue by task name.
"""

import os

from celery import Celery

from probes.worker import add_probe_steps

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

# No fixups: Celery's Django fixup would call django.setup() when the worker starts.
app = Celery("probe-site", fixups=[], include=["probes.probing"])
app.config_from_object("django.conf:settings", namespace="CELERY")
add_probe_steps(app)
