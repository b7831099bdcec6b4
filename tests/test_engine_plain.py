"""The probe engine is plain Python: a site worker that imports it loads no Django and no ORM.
Its states are declared once, and the database's choices are derived from them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from probes.choices import FAILING_STATES, PROBED_STATES, STATE_MEANINGS, ProbeState
from probes.engine import State

ROOT = Path(__file__).resolve().parent.parent

# Imports the engine, probes a listener of its own on loopback, and says which of Django's
# modules came along (none, for the test to pass). No traffic leaves 127.0.0.1.
PLAIN_RUN = textwrap.dedent(
    """
    import asyncio, socket, sys

    from probes.engine import Check, Engine

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    found = {}
    check = Check(1, "127.0.0.1", port, port, "tcp", "http")
    asyncio.run(Engine(timeout=2).run([check], lambda check, result: found.__setitem__(check.key, result)))
    listener.close()
    print(found[1].state)
    print(" ".join(sorted(name for name in sys.modules if name == "django" or name.startswith("django."))))
    """
)


def test_the_engine_loads_no_django_and_probes_loopback() -> None:
    ran = subprocess.run(
        [sys.executable, "-c", PLAIN_RUN], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert ran.returncode == 0, ran.stderr
    state, django_modules = ran.stdout.split("\n")[:2]
    assert state == "open", ran.stdout
    assert django_modules == "", f"importing probes.engine loaded {django_modules}"


def test_the_database_keeps_the_engines_states() -> None:
    assert ProbeState.values == [
        "pending",
        "open",
        "refused",
        "filtered",
        "unreachable",
        "dns_error",
        "intercepted",
        "unverifiable",
        "error",
        "not_probed",
    ]
    assert [ProbeState(state).label for state in State] == [state.label for state in State]
    assert ProbeState.NOT_PROBED not in PROBED_STATES and ProbeState.PENDING not in PROBED_STATES
    assert set(STATE_MEANINGS) == set(ProbeState) - {ProbeState.PENDING}
    failing = {"refused", "filtered", "unreachable", "dns_error", "intercepted", "error"}
    assert failing == FAILING_STATES


# What a probe site's worker loads: its Celery app and the modules it includes (the site's task),
# with no database configured. Then which of Django's ORM modules came along (none, to pass).
SITE_WORKER_IMPORTS = textwrap.dedent(
    """
    import sys

    from portal.probe_site import app

    app.loader.import_default_modules()
    app.finalize()
    print(" ".join(sorted(name for name in app.tasks if not name.startswith("celery."))))
    print(" ".join(sorted(name for name in sys.modules if name.startswith(("django.db", "django.apps")))))
    """
)


def test_a_site_worker_loads_no_orm() -> None:
    environment = {name: value for name, value in os.environ.items() if name != "DATABASE_URL"}
    ran = subprocess.run(
        [sys.executable, "-c", SITE_WORKER_IMPORTS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=environment,
    )
    assert ran.returncode == 0, ran.stderr
    tasks, orm_modules = ran.stdout.split("\n")[:2]
    assert tasks == "probes.tasks.probe_site", ran.stdout
    assert orm_modules == "", f"a site worker loaded {orm_modules}"
