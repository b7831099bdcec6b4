"""Loopback services for the demo deployment, so that its first "Probe all" shows what the
probes tell apart: an honest mail server (open), a TLS service whose certificate comes from a
TLS-inspecting product (intercepted), a DNS server (open), a service that never answers
(filtered), and nothing at all on the other ports (refused). Every address is on loopback."""

from __future__ import annotations

import contextlib
import signal
import threading

from django.core.management.base import BaseCommand

from ports.demo import DEMO_DEPLOYMENT
from probes.responders import Listeners, self_signed


def demo_address(role: str) -> str:
    return next(host["address"] for host in DEMO_DEPLOYMENT["hosts"] if host["role"] == role)


class Command(BaseCommand):
    help = "Serve the demo's loopback responders until stopped (make run starts it)."

    def handle(self, *args: object, **options: object) -> None:
        listeners = Listeners()
        inspected = self_signed("hybrid.demo.test", issuer_name="FortiGate CA")[:2]
        mail = self_signed("esa.demo.test")[:2]
        services = [
            *(
                (f"SMTP with STARTTLS on {a['hostname']}", lambda a=a: listeners.smtp(a["p1_address"], 25, tls=mail))
                for a in DEMO_DEPLOYMENT["appliances"]
            ),
            ("DNS", lambda: listeners.dns(demo_address("dns"), 53)),
            (
                "TLS with an inspection CA's certificate",
                lambda: listeners.tls(*inspected, demo_address("hybrid_service"), 443),
            ),
            ("a log server that never answers", lambda: listeners.filtered(demo_address("log_server"), 50800)),
        ]
        for name, start in services:
            try:
                start()
            except OSError as failed:  # ports below 1024 need root; say so and serve the others
                self.stderr.write(f"demo responders: {name} not served: {failed}")
            else:
                self.stdout.write(f"demo responders: {name}")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
        listeners.close()
