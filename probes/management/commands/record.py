from __future__ import annotations

import signal
import threading

from django.core.management.base import BaseCommand

from probes import recorder


class Command(BaseCommand):
    help = "The recorder: write the results and heartbeats that the probe sites report (README: Probe sites)."

    def handle(self, **options: object) -> None:
        stopped = threading.Event()
        # Stopped between reports: one being written is written and acknowledged first.
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, lambda *_: stopped.set())
        self.stdout.write("recording the probe sites' reports")
        self.stdout.flush()
        recorder.run(stopped)
