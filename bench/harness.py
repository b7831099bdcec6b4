"""What the benchmarks share: Django on the configured database (PostgreSQL under `make
bench`), and a throwaway test database with the catalog loaded and a bench user."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-secret-key-long-enough-to-pass-the-settings-check")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from ports.models import Team  # noqa: E402
from probes.models import ProbeRun  # noqa: E402

# A run's deadline that no bench reaches.
FAR = "2100-01-01T00:00Z"


@contextmanager
def bench_database() -> Iterator[object]:
    """A test database for the run, removed afterwards; yields the bench user (team "Bench").

    Not Django's test environment: it instruments every template rendering (a deep copy of
    each context), which would be timed with the pages."""
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        call_command("load_catalog", verbosity=0)
        user = get_user_model().objects.create_user("bench")
        Team.objects.create(name="Bench").members.add(user)
        yield user
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


def analyzed() -> None:
    """The planner's statistics of the tables just filled, as autovacuum gathers them within a
    minute of such writes (PostgreSQL): without them it plans thousands of rows as one, and a
    bench measures plans no running portal has."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("analyze")


def recorded(deployment_id: int, states: dict[int, str]) -> None:
    """A probe run of these items (id: state) whose results the recorder took in one batch, as a
    site worker sends them: a sweep of a deployment, or one rule probed again."""
    pending = {"default": sorted(states)}
    run = ProbeRun.objects.create(
        deployment_id=deployment_id, total=len(states), timeout=1, deadline=FAR, pending=pending
    )
    outcomes = {item: {"state": state, "summary": f"{state} (bench)"} for item, state in states.items()}
    assert ProbeRun.record(run.pk, "bench@default", outcomes) == len(states)


# The other roles' hosts of a deployment at scale (bench/export_pdf.py, bench/exports.py).
HOSTS = [
    ("security_manager", "fsm"), ("log_server", "log"), ("sql_server", "sql"), ("dlp_server", "dlp"),
    ("hybrid_service", "hybrid"), ("filtering_service", "filtering"), ("linking_service", "linking"),
    ("ldap", "ldap"), ("dns", "dns"), ("snmp_trap", "nms"),
]  # fmt: skip


def document_at_scale(name: str, appliances: int, copies: int, extra_hosts: tuple[dict, ...] = ()) -> dict:
    """A deployment of `appliances` appliances, every host once and `copies` DNS and LDAP servers
    in all, without Personal Email Manager (no peer-appliance mesh): its rules grow linearly."""
    return {
        "team": "Bench",
        "name": name,
        "features": ["dlp", "hybrid", "smd", "snmp", "web_protection"],
        "appliances": [
            {
                "hostname": f"esa{n}",
                "c_address": f"127.5.{n // 250}.{n % 250 + 1}",
                "p1_address": f"127.6.{n // 250}.{n % 250 + 1}",
            }
            for n in range(appliances)
        ],
        "hosts": [
            {"role": role, "name": f"{host}{copy}", "address": f"127.7.{copy}.{i + 1}"}
            for copy in range(copies)
            for i, (role, host) in enumerate(HOSTS)
            if copy == 0 or role in ("dns", "ldap")
        ]
        + list(extra_hosts),
        "peer_networks": [
            {"role": "end_users", "name": "Staff", "network": "127.8.0.0/16"},
            {"role": "mail_senders", "name": "Internet", "network": "any"},
        ],
    }


def against(goal: str, met: bool) -> str:
    """A figure's goal, said after it: "(goal >= 2x: met)"."""
    return f"(goal {goal}: {'met' if met else 'NOT MET'})"
