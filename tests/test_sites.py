"""A remote probe site: its worker runs in a network namespace of the test's own that reaches the
broker and nothing else, with no database credentials and a broker user that sees only its own
queue. Results and heartbeats reach the database through the recorder's queue."""

from __future__ import annotations

import datetime
import os
import subprocess

import pytest
import redis
from django.core.management import call_command
from django.utils import timezone

from ports.deployments import save_deployment
from probes.models import ProbeBatch, ProbeRun, WorkerHeartbeat
from probes.worker import TO_RECORDER, site_acl

from .conftest import make_member, token_client
from .probe_worker import OwnRedis, Worker, flush_broker, needs_redis, portal_broker
from .waiting import wait_until

pytestmark = [needs_redis, pytest.mark.integration]

HOST_SIDE, SITE_SIDE = "169.254.77.1", "169.254.77.2"  # assigned here, on a veth pair made here
NAMESPACE = f"site-{os.getpid()}"
CENTRAL_PASSWORD, SITE_PASSWORD = "central-secret", "dmz-secret"
# The site's services, on the namespace's own loopback: nothing listens on one (refused at
# once), the namespace's firewall drops the other (3 s to time out).
REFUSED_PORT, DROPPED_PORT = 6671, 9443


def run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True)


@pytest.fixture
def site_network():
    """The namespace and its veth pair; inside, nftables lets out only the broker's port."""
    broker = OwnRedis(HOST_SIDE)  # its port, chosen now; started with the ACL below
    run("ip", "netns", "add", NAMESPACE)
    try:
        run("ip", "link", "add", f"vh{os.getpid()}", "type", "veth", "peer", "name", f"vs{os.getpid()}")
        run("ip", "link", "set", f"vs{os.getpid()}", "netns", NAMESPACE)
        run("ip", "addr", "add", f"{HOST_SIDE}/30", "dev", f"vh{os.getpid()}")
        run("ip", "link", "set", f"vh{os.getpid()}", "up")
        inside = ("ip", "netns", "exec", NAMESPACE)
        run(*inside, "ip", "addr", "add", f"{SITE_SIDE}/30", "dev", f"vs{os.getpid()}")
        run(*inside, "ip", "link", "set", f"vs{os.getpid()}", "up")
        run(*inside, "ip", "link", "set", "lo", "up")
        rules = f"""
            table inet site {{
                chain out {{
                    type filter hook output priority 0; policy drop;
                    oif lo tcp dport {DROPPED_PORT} drop
                    oif lo accept
                    ct state established,related accept
                    ip daddr {HOST_SIDE} tcp dport {broker.port} accept
                }}
            }}
        """
        subprocess.run([*inside, "nft", "-f", "-"], input=rules.encode(), check=True, capture_output=True)
        yield broker, inside
    finally:
        if broker.process is not None and broker.process.poll() is None:
            broker.stop()  # the tests that do not stop it themselves
        subprocess.run(["ip", "link", "delete", f"vh{os.getpid()}"], capture_output=True)
        subprocess.run(["ip", "netns", "delete", NAMESPACE], capture_output=True)


def start_broker(broker: OwnRedis) -> tuple[str, str]:
    """The broker with its two users: the central workers' and the site's (its ACL from the portal)."""
    acl = os.path.join(broker.folder, "users.acl")
    with open(acl, "w") as file:
        file.write(f"user default on >{CENTRAL_PASSWORD} ~* &* +@all\n")
        file.write(f"user site-dmz on >{SITE_PASSWORD} {site_acl('dmz')}\n")
    broker.options = ("--aclfile", acl, "--bind", f"{HOST_SIDE} 127.0.0.1")
    broker.url = f"redis://:{CENTRAL_PASSWORD}@127.0.0.1:{broker.port}/0"
    broker.start()
    return broker.url, f"redis://site-dmz:{SITE_PASSWORD}@{HOST_SIDE}:{broker.port}/0"


def test_a_site_worker_with_only_its_broker_user_probes_and_is_recorded_once(transactional_db, site_network):
    """The suite's one kill-mid-run scenario: the site's worker is killed (SIGKILL) mid-run, its
    heir finishes the run, and every item is recorded once, none lost and none written twice."""
    broker, inside = site_network
    central_url, site_url = start_broker(broker)
    call_command("load_catalog", verbosity=0)
    api = token_client(make_member("alice", "Mail team"))
    document = {
        "team": "Mail team",
        "name": "DMZ site",
        "features": [],
        "appliances": [{"hostname": "esa", "c_address": "127.0.0.1", "site": "dmz"}],
        "hosts": [
            {"role": "security_manager", "name": "fsm", "address": "127.0.0.1", "site": "dmz"},
            {"role": "log_server", "name": "log", "address": "127.0.0.1", "site": "dmz"},
        ],
    }
    deployment = save_deployment(document).deployment
    site_env = {
        "REDIS_URL": site_url,
        "BROKER_UNACKED_KEY": "unacked.dmz",
        "WORKER_REMOTE_CONTROL": "0",
        "CELERY_VISIBILITY_TIMEOUT": "8",
        "PORTAL_VAR_DIR": broker.folder,  # nothing of the central site's on disk either
    }
    recorder = Worker([], name="central", REDIS_URL=central_url)
    site = Worker(["dmz"], name="dmz", central=False, prefix=inside, **site_env)
    heir = None
    try:
        site.wait_until_live()
        with portal_broker(central_url):
            from django.test import override_settings

            with override_settings(PROBE_TIMEOUT=3):
                response = api.post(f"/api/deployments/{deployment.pk}/probe-runs/", {}, format="json")
            assert response.status_code == 202, response.content
            run_id = response.json()["id"]
            probe_run = ProbeRun.objects.get(pk=run_id)

            def refused() -> bool:  # at once; the dropped port waits 3 s
                probe_run.refresh_from_db()
                return bool(probe_run.by_state.get("refused"))

            def seen() -> str:
                return str([(r.item.port_start, r.item.source_site, r.state, r.summary) for r in probe_run.results()])

            wait_until(refused, 20, seen)
            assert probe_run.pending
            site.kill()  # mid-run: the dropped port's probe is still waiting
            before = {r.item.pk: (r.state, r.checked_at) for r in probe_run.results() if r.state != "pending"}
            heir = Worker(["dmz"], name="heir", central=False, prefix=inside, **site_env)

            def finished() -> bool:
                probe_run.refresh_from_db()
                return probe_run.is_finished

            wait_until(finished, 90, heir.tail, interval=0.3)
    finally:
        for worker in (site, heir, recorder):
            if worker:
                worker.stop()
        broker.stop()

    results = probe_run.results()
    items = deployment.checklist.count()
    assert probe_run.status == "done" and probe_run.progress() == {"done": items, "total": items}
    assert len(results) == items and len({r.item.pk for r in results}) == items  # each recorded once
    after = {r.item.pk: (r.state, r.checked_at) for r in results}
    assert before and all(after[item] == written for item, written in before.items())  # not recorded twice
    states = {(r.item.port_start, r.item.protocol): r for r in results}
    assert states[(REFUSED_PORT, "tcp")].state == "refused"
    dropped = states[(DROPPED_PORT, "tcp")]
    assert dropped.state == "filtered" and dropped.worker.startswith("heir@"), dropped


def test_a_site_broker_user_reaches_only_its_own_queue(transactional_db, site_network):
    broker, _ = site_network
    central_url, site_url = start_broker(broker)
    central = redis.Redis.from_url(central_url)
    site = redis.Redis.from_url(site_url.replace(HOST_SIDE, "127.0.0.1"))
    central.lpush("probes.lan", "another site's task")
    central.lpush("celery", "a central task")
    central.hset("unacked", "tag", "a message the central workers hold")

    site.lpush("probes.dmz", "own queue")
    assert site.rpop("probes.dmz") == b"own queue"
    site.lpush("portal.record", "a result")  # it may send results...
    site.set("unacked.dmz_mutex", "1")
    for forbidden in (
        lambda: site.lrange("portal.record", 0, -1),  # ...but not read anyone's
        lambda: site.rpop("probes.lan"),
        lambda: site.lpush("probes.lan", "forged"),
        lambda: site.rpop("celery"),
        lambda: site.hgetall("unacked"),
        lambda: site.sadd("_kombu.binding.probes.lan", "probes.lan\x06\x16\x06\x16probes.dmz"),
        lambda: site.publish("/0.celery.pidbox", "shutdown"),
        lambda: site.keys("*"),
        lambda: site.flushdb(),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            forbidden()
    assert central.llen("probes.lan") == 1 and central.llen("celery") == 1


def test_the_recorder_runs_nothing_but_recorder_tasks_from_its_queue(transactional_db, full_document):
    """What a compromised site can push to the recorder's queue runs only as a recorder task."""
    call_command("load_catalog", verbosity=0)
    make_member("alice", "Mail team")
    deployment = save_deployment({**full_document, "team": "Mail team"}).deployment
    run_row = ProbeRun.objects.create(deployment=deployment, timeout=1, deadline=timezone.now())
    old = timezone.now() - datetime.timedelta(days=400)
    ProbeBatch.objects.create(run=run_row, worker="w", received=old, results={})
    now = timezone.now().isoformat()
    own = OwnRedis()
    own.start()
    recorder = Worker([], name="guard", REDIS_URL=own.url, RECORDER_ONLY="1")
    try:
        recorder.wait_until_ready()
        with portal_broker(own.url):
            from portal.celery import app

            # As a site can: straight into the recorder's queue, naming another task.
            app.send_task("probes.tasks.purge_old_results", **TO_RECORDER)
            app.send_task("probes.tasks.record_heartbeat", ("dmz", "w@dmz", now), **TO_RECORDER)

        def refused_and_recorded() -> bool:
            return "not a recorder task" in recorder.log.read_text() and WorkerHeartbeat.objects.exists()

        wait_until(refused_and_recorded, 30, recorder.tail, interval=0.2)
    finally:
        recorder.stop()
        own.stop()
    log = recorder.log.read_text()
    assert "probes.tasks.purge_old_results is not a recorder task" in log, log[-3000:]
    assert ProbeBatch.objects.exists()  # the purge did not run
    assert WorkerHeartbeat.objects.filter(site="dmz").exists()  # the recorder's own task did


def test_raw_results_past_their_days_are_purged_and_the_states_stay(transactional_db, full_document):
    """Beat's hourly purge, run by a real worker: batches older than PROBE_RESULT_RETENTION_DAYS
    go; the items' current states and their state changes stay, and so does the run."""
    from probes.models import LatestProbe, ProbeFlip

    from .conftest import recorded_run

    call_command("load_catalog", verbosity=0)
    make_member("alice", "Mail team")
    deployment = save_deployment({**full_document, "team": "Mail team"}).deployment
    items = list(deployment.checklist.order_by("pk")[:3])
    old = recorded_run(deployment, [(item, "open") for item in items])
    recent = recorded_run(deployment, [(items[0], "filtered")])
    ProbeBatch.objects.filter(run=old).update(received=timezone.now() - datetime.timedelta(days=31))
    flush_broker()
    worker = Worker([], name="purger", extra_queues=("celery",))
    try:
        worker.wait_until_ready()
        from portal.celery import app

        app.send_task("probes.tasks.purge_old_results", queue="celery")
        wait_until(lambda: not ProbeBatch.objects.filter(run=old).exists(), 30, worker.tail, interval=0.2)
    finally:
        worker.stop()
    assert ProbeBatch.objects.filter(run=recent).exists()
    assert ProbeRun.objects.filter(pk=old.pk).exists() and old.results() == []
    assert dict(LatestProbe.objects.values_list("item_id", "state")) == {
        items[0].pk: "filtered",
        items[1].pk: "open",
        items[2].pk: "open",
    }
    assert ProbeFlip.objects.count() == 4  # three first states and one change
