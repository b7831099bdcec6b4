"""A remote probe site: its worker runs in a network namespace of the test's own that reaches the
broker and nothing else, with no database credentials and a broker user that sees only its own
queue. Results and heartbeats reach the database through the recorder's queue."""

from __future__ import annotations

import datetime
import json
import os
import socket
import subprocess
import time

import pytest
import redis
from django.core.management import call_command
from django.test import Client, override_settings
from django.utils import timezone

from ports.deployments import save_deployment
from probes.models import ProbeBatch, ProbeRun, WorkerHeartbeat
from probes.reports import DROPPED_KEY
from probes.worker import site_acl

from .conftest import make_member, token_client
from .probe_worker import OwnRedis, Recorder, Worker, flush_broker, needs_redis, portal_broker
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


DMZ_DOCUMENT = {
    "team": "Mail team",
    "name": "DMZ site",
    "features": [],
    "appliances": [{"hostname": "esa", "c_address": "127.0.0.1", "site": "dmz"}],
    "hosts": [
        {"role": "security_manager", "name": "fsm", "address": "127.0.0.1", "site": "dmz"},
        {"role": "log_server", "name": "log", "address": "127.0.0.1", "site": "dmz"},
    ],
}


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
    deployment = save_deployment(DMZ_DOCUMENT).deployment
    site_env = {
        "REDIS_URL": site_url,
        "BROKER_UNACKED_KEY": "unacked.dmz",
        "WORKER_REMOTE_CONTROL": "0",
        "CELERY_VISIBILITY_TIMEOUT": "8",
        "PORTAL_VAR_DIR": broker.folder,  # nothing of the central site's on disk either
    }
    recorder = Recorder("central", REDIS_URL=central_url)
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


# The keys of the centre and of other sites, as a site's user must never touch them (its own
# report stream only by XADD).
FOREIGN_KEYS = ["portal.report.dmz", "portal.report.lan", DROPPED_KEY, "celery", "unacked", "probes.lan"]


def commands_by_first_key(client: redis.Redis) -> list[list[str]]:
    """Every command and subcommand of this Redis whose first argument is a key (COMMAND)."""
    found = []
    for name, info in client.command().items():
        if info["first_key_pos"] == 1:
            found.append([name])
        for sub in info["subcommands"]:
            if sub[3] == 2:  # "xgroup|create key ..."
                found.append(sub[0].decode().split("|"))
    return found


def dry_run(client: redis.Redis, user: str, command: list[str], key: str) -> bool:
    """Whether Redis would let `user` run `command key ...` (ACL DRYRUN: nothing runs), with the
    arguments after the key as a call could give them: the key again, numbers, or a count and
    the key ("ZUNIONSTORE dest 1 key"); only forms that Redis reads as naming the key count."""
    for extra in range(8):
        for filling in {(key,) * extra, ("1",) * extra, ("1",) + (key,) * (extra - 1) if extra else ()}:
            arguments = [*command, key, *filling]
            try:
                named = client.command_getkeys(*arguments)
                if key not in {k.decode() if isinstance(k, bytes) else k for k in named}:
                    continue
            except redis.ResponseError:
                continue  # not a well-formed call: Redis would refuse it before any key
            if client.execute_command("ACL", "DRYRUN", user, *arguments) in (b"OK", "OK", True):
                return True
    return False


def test_a_site_broker_user_reaches_only_its_own_queue_and_appends_to_its_own_stream(transactional_db, site_network):
    broker, _ = site_network
    central_url, site_url = start_broker(broker)
    central = redis.Redis.from_url(central_url)
    site = redis.Redis.from_url(site_url.replace(HOST_SIDE, "127.0.0.1"))
    central.lpush("probes.lan", "another site's task")
    central.lpush("celery", "a central task")
    central.hset("unacked", "tag", "a message the central workers hold")
    central.xadd("portal.report.lan", {"kind": "heartbeat", "body": "{}"})

    site.lpush("probes.dmz", "own queue")
    assert site.rpop("probes.dmz") == b"own queue"
    site.xadd("portal.report.dmz", {"kind": "heartbeat", "body": "{}"})  # it may report, as itself...
    site.set("unacked.dmz_mutex", "1")
    for forbidden in (
        lambda: site.xrange("portal.report.dmz"),  # ...but not read, trim, delete or retype its reports
        lambda: site.xdel("portal.report.dmz", "0-1"),
        lambda: site.xtrim("portal.report.dmz", 0),
        lambda: site.delete("portal.report.dmz"),
        lambda: site.expire("portal.report.dmz", 1),
        lambda: site.set("portal.report.dmz", "x"),
        lambda: site.xgroup_destroy("portal.report.dmz", "recorders"),
        lambda: site.xadd("portal.report.lan", {"kind": "heartbeat", "body": "{}"}),  # nor as another site
        lambda: site.hincrby(DROPPED_KEY, "lan", -5),
        lambda: site.set("portal.closed.1", "1"),
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
    with pytest.raises(redis.exceptions.ResponseError, match="can't access"):  # not from a script either
        site.eval("return redis.call('del', 'portal.report.dmz')", 0)
    assert central.llen("probes.lan") == 1 and central.llen("celery") == 1
    assert central.xlen("portal.report.dmz") == 1 and central.xlen("portal.report.lan") == 1

    # Every command of this Redis that takes a key first, on every key of the centre and of other
    # sites: refused, but for XADD on its own stream.
    commands = commands_by_first_key(central)
    assert len(commands) > 150, commands
    allowed = {
        (" ".join(command), key)
        for command in commands
        for key in FOREIGN_KEYS
        if dry_run(central, "site-dmz", command, key)
    }
    assert allowed == {("xadd", "portal.report.dmz")}


def test_the_centre_sends_a_site_its_checks_whatever_the_site_wrote_in_its_routing(transactional_db, site_network):
    """A site's user may write its queue's routing entry (its worker declares the queue): the
    centre never reads it, so a site cannot turn its own checks into the central workers' tasks."""
    broker, _ = site_network
    central_url, site_url = start_broker(broker)
    site = redis.Redis.from_url(site_url.replace(HOST_SIDE, "127.0.0.1"))
    site.sadd("_kombu.binding.probes.dmz", "probes.dmz\x06\x16\x06\x16celery")
    call_command("load_catalog", verbosity=0)
    make_member("alice", "Mail team")
    deployment = save_deployment(DMZ_DOCUMENT).deployment
    now = timezone.now()
    WorkerHeartbeat.objects.create(worker="w@dmz", site="dmz", started=now, last_seen=now)
    with portal_broker(central_url):
        ProbeRun.start(deployment, None, list(deployment.checklist.only(*ProbeRun.ITEM_FIELDS)))
    central = redis.Redis.from_url(central_url)
    assert central.llen("probes.dmz") == 1 and central.llen("celery") == 0


def test_the_recorder_takes_only_what_a_site_was_asked_and_survives_anything_it_sends(
    transactional_db, site_network, full_document
):
    """As a compromised site can, with only its broker user: junk, oversized and wrong-shaped
    reports, a Celery task message with callbacks, results for another site's and another
    team's items, and a heartbeat naming another site. The recorder drops or ignores each,
    keeps recording, and runs nothing."""
    broker, _ = site_network
    central_url, site_url = start_broker(broker)
    call_command("load_catalog", verbosity=0)
    make_member("alice", "Mail team")
    make_member("bob", "Branch team")
    ours = save_deployment(DMZ_DOCUMENT).deployment
    theirs = save_deployment({**full_document, "team": "Branch team"}).deployment
    ours_items = list(ours.checklist.order_by("pk"))
    theirs_items = list(theirs.checklist.order_by("pk")[:3])
    deadline = timezone.now() + datetime.timedelta(hours=1)
    our_run = ProbeRun.objects.create(
        deployment=ours, timeout=1, deadline=deadline, total=len(ours_items),
        pending={"dmz": [item.pk for item in ours_items[:-1]], "lan": [ours_items[-1].pk]},
    )  # fmt: skip
    their_run = ProbeRun.objects.create(
        deployment=theirs, timeout=1, deadline=deadline, total=3, pending={"branch": [i.pk for i in theirs_items]}
    )
    old = ProbeBatch.objects.create(
        run=their_run, worker="w", received=timezone.now() - datetime.timedelta(days=400), results={}
    )
    opened = {"state": "open", "summary": "forged", "evidence": {}}
    started = timezone.now().isoformat()
    site = redis.Redis.from_url(site_url.replace(HOST_SIDE, "127.0.0.1"))
    stream = "portal.report.dmz"
    task_message = {
        "body": "W1tdLCB7fSwgeyJjYWxsYmFja3MiOiBudWxsfV0=",
        "headers": {"task": "probes.tasks.purge_old_results", "id": "x"},
        "properties": {"callbacks": [{"task": "probes.tasks.start_due_runs"}], "reply_to": "celery"},
    }
    hostile = [
        {"kind": "results", "body": "not json"},
        {"kind": "results", "body": "[1, 2]"},
        {"kind": "results", "body": json.dumps({"run": "1; drop table", "results": {}})},
        {"kind": "results", "body": json.dumps({"run": our_run.pk, "worker": "w", "results": {"x": opened}})},
        {"kind": "results", "body": json.dumps({"run": our_run.pk, "worker": "w\nforged", "results": {}})},
        {"kind": "results", "body": "[" * 100_000},
        {"kind": "results", "body": json.dumps({"run": our_run.pk, "worker": "w", "x": "y" * 2_500_000})},
        {"kind": "task", "body": json.dumps(task_message)},
        {"body": json.dumps(task_message)},
        {"kind": "heartbeat", "body": json.dumps({"worker": "w@dmz", "started": "yesterday"})},
        # Well-formed, and still not taken: another site's item of our run, another team's items.
        {"kind": "results", "body": json.dumps(
            {"run": our_run.pk, "worker": "w@dmz", "results": {str(ours_items[-1].pk): opened}}
        )},
        {"kind": "results", "body": json.dumps(
            {"run": their_run.pk, "worker": "w@dmz", "results": {str(i.pk): opened for i in theirs_items}}
        )},
        {"kind": "heartbeat", "body": json.dumps({"worker": "w@branch", "site": "branch", "started": started})},
        # And what it was asked: recorded.
        {"kind": "results", "body": json.dumps(
            {"run": our_run.pk, "worker": "w@dmz", "results": {str(ours_items[0].pk): opened}}
        )},
    ]  # fmt: skip
    for fields in hostile:
        site.xadd(stream, fields)
    recorder = Recorder("hostile", REDIS_URL=central_url)
    try:
        wait_until(lambda: redis.Redis.from_url(central_url).xlen(stream) == 0, 30, recorder.tail, interval=0.2)
        assert recorder.process.poll() is None, recorder.tail()  # still recording
        site.xadd(stream, {"kind": "heartbeat", "body": json.dumps({"worker": "late@dmz", "started": started})})
        wait_until(WorkerHeartbeat.objects.filter(worker="late@dmz").exists, 30, recorder.tail)
        with override_settings(REDIS_URL=central_url):
            metrics = Client().get("/metrics").content.decode()
    finally:
        recorder.stop()

    our_run.refresh_from_db()
    their_run.refresh_from_db()
    rest = {"dmz": [i.pk for i in ours_items[1:-1]], "lan": [ours_items[-1].pk]}
    assert our_run.done == 1 and our_run.pending == {site: ids for site, ids in rest.items() if ids}
    assert their_run.done == 0 and len(their_run.pending["branch"]) == 3  # another team's: untouched
    assert set(WorkerHeartbeat.objects.values_list("site", flat=True)) == {"dmz"}  # the stream's site only
    assert ProbeBatch.objects.filter(pk=old.pk).exists()  # no purge ran
    central = redis.Redis.from_url(central_url)
    assert central.llen("celery") == 0  # nothing queued for the central workers
    assert 'portal_reports_dropped_total{site="dmz"} 10.0' in metrics, metrics
    assert "dropped a report of site dmz" in recorder.log.read_text()


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


def test_a_worker_is_live_for_a_site_only_while_it_consumes_the_sites_queue(transactional_db):
    """The heartbeat follows the consumer, not the process: a queue the worker stops consuming
    (here cancelled by remote control) is a site it no longer beats for."""
    from portal.celery import app

    flush_broker()
    worker = Worker(["default", "hq"], name="consumer")
    try:
        worker.wait_until_live()
        answer = app.control.cancel_consumer("probes.hq", destination=[f"consumer@{socket.gethostname()}"], reply=True)
        assert answer, "the worker did not answer the remote control"
        time.sleep(1.5)  # a beat that was on its way when the queue was cancelled
        seen = dict(WorkerHeartbeat.objects.filter(worker__startswith="consumer@").values_list("site", "last_seen"))
        time.sleep(3)  # three heartbeat intervals
        after = dict(WorkerHeartbeat.objects.filter(worker__startswith="consumer@").values_list("site", "last_seen"))
    finally:
        worker.stop()
    assert after["default"] > seen["default"]  # still beating for the site it consumes
    assert after["hq"] == seen["hq"]  # and no more for the other
