"""The tools provisioning engineers use, against the live server: an Ansible playbook
(ansible.builtin.uri, from requirements.txt) that plans, applies and repeats without changes, and
a TypeScript flow typed by openapi-typescript from /api/schema/ that `tsc --strict` accepts.
The playbook runs on a local connection and reaches the live server alone, on loopback; npm
reaches its registry once, to install the TypeScript tools into var/ts/, which keeps them."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from django.core.management import call_command

from portal.api.filters import ChecklistItemFilterSet
from ports.models import Deployment, StatusChange

from .conftest import FULL_DEPLOYMENT, api_key, make_member
from .npm import npm_ci

HERE = Path(__file__).resolve().parent
PLAYBOOK = HERE / "ansible" / "provision.yml"
TS = HERE / "ts"
# The TypeScript tools, installed from TS's package-lock.json and kept between runs: a run that
# finds them installed from the same lockfile installs nothing.
TS_TOOLS = HERE.parent / "var" / "ts"


class Playbook:
    """ansible-playbook run as an engineer runs it, with a local inventory and settings of its own
    (none of the machine's ansible.cfg), its default output read back."""

    def __init__(self, workdir: Path, extra_vars: dict[str, str]) -> None:
        self.workdir, self.extra_vars = workdir, extra_vars
        (workdir / "inventory").write_text(
            f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n"
        )
        (workdir / "ansible.cfg").write_text(
            "[defaults]\nstdout_callback = default\nnocolor = true\nretry_files_enabled = false\n"
            f"home = {workdir}/home\nlocal_tmp = {workdir}/home/tmp\n"
        )

    def run(self, *args: str) -> tuple[dict[str, str], dict[str, int], str]:
        """Each task's status (ok, changed, skipping), the recap's counts, and the output."""
        # No proxy, and no setting of the machine's: the requests go to the live server directly.
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(self.workdir),
            "LC_ALL": "C.UTF-8",
            "ANSIBLE_CONFIG": str(self.workdir / "ansible.cfg"),
        }
        command = [
            str(Path(sys.executable).with_name("ansible-playbook")),
            "-i",
            str(self.workdir / "inventory"),
            "-e",
            json.dumps(self.extra_vars),
            *args,
            str(PLAYBOOK),
        ]
        done = subprocess.run(command, env=env, cwd=self.workdir, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
        tasks, task = {}, None
        for line in done.stdout.splitlines():
            if heading := re.match(r"TASK \[(.+?)\] \**$", line):
                task = heading[1]
            elif task and (status := re.match(r"(ok|changed|skipping): \[localhost\]", line)):
                tasks[task] = status[1]
        recap = re.search(r"^localhost\s+:\s+(.+)$", done.stdout, re.MULTILINE)
        counts = {name: int(value) for name, value in (pair.split("=") for pair in recap[1].split())}
        return tasks, counts, done.stdout


@pytest.mark.django_db(transaction=True)
def test_an_ansible_playbook_plans_applies_and_changes_nothing_the_second_time(live_server, tmp_path):
    call_command("load_catalog", verbosity=0)
    user = make_member("ansible", "Mail team")
    document = tmp_path / "deployment.json"
    document.write_text(json.dumps({**copy.deepcopy(FULL_DEPLOYMENT), "team": "Mail team"}))
    exports = tmp_path / "exports"
    exports.mkdir()
    playbook = Playbook(
        tmp_path,
        {
            "portal_url": live_server.url,
            "portal_token": api_key(user),
            "deployment_file": str(document),
            "change": "CHG-42",
            "export_dir": str(exports),
        },
    )
    upsert, mark = "Upsert the deployment", "Mark the SMTP rules requested in the change request"
    download = "Download the nftables rules"

    # --check before anything exists: the plan, and nothing saved.
    tasks, counts, output = playbook.run("--check")
    planned = int(re.search(r"created: (\d+) rules to add, 0 to remove, 0 unchanged", output)[1])
    assert tasks[upsert] == "changed" and tasks[mark] == tasks[download] == "skipping", tasks
    assert counts["changed"] == 1 and counts["failed"] == 0, counts
    assert not Deployment.objects.exists()

    # Applied: created, the SMTP rules marked, the rules downloaded.
    tasks, counts, _ = playbook.run()
    assert tasks[upsert] == tasks[mark] == tasks[download] == "changed", tasks
    assert counts["changed"] == 3, counts
    deployment = Deployment.objects.get()
    assert deployment.checklist.count() == planned  # the plan's rules, exactly
    smtp = ChecklistItemFilterSet({"port": 25}, queryset=deployment.checklist.all()).qs
    assert smtp.exists() and set(smtp.values_list("status", flat=True)) == {"requested"}
    nft = (exports / "mail-gateways.nft").read_text()
    assert (
        nft
        == requests.get(
            f"{live_server.url}/api/deployments/{deployment.pk}/firewall/nftables/",
            headers={"Authorization": f"Token {playbook.extra_vars['portal_token']}"},
            timeout=60,
        ).text
    )
    revision, history = deployment.checklist_revision, StatusChange.objects.count()

    # Again: nothing changes, not even the downloaded file.
    tasks, counts, _ = playbook.run()
    assert tasks[upsert] == tasks[mark] == tasks[download] == "ok", tasks
    assert counts["changed"] == 0, counts
    deployment.refresh_from_db()
    assert deployment.checklist_revision == revision
    assert StatusChange.objects.count() == history

    # --check with an edit: the plan of the edit, and nothing saved.
    edited = json.loads(document.read_text()) | {"dlp_base_port": 18000}
    document.write_text(json.dumps(edited))
    tasks, counts, output = playbook.run("--check")
    assert re.search(r"updated: [1-9]\d* rules to add, [1-9]\d* to remove, [1-9]\d* unchanged", output), output
    assert re.search(r"\b0 of [1-9]\d* rules to mark requested", output), output  # requested already
    assert tasks[upsert] == "changed" and tasks[mark] == "ok" and tasks[download] == "skipping", tasks
    assert counts["changed"] == 1, counts
    deployment.refresh_from_db()
    assert deployment.dlp_base_port == 17500 and deployment.checklist_revision == revision


def installed_typescript_tools() -> Path:
    """TS_TOOLS with the packages of TS's lockfile installed (tests.npm)."""
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed (make test installs it with node: TEST_TOOLS)")
    return npm_ci(TS, TS_TOOLS, "the TypeScript tools")


@pytest.mark.django_db(transaction=True)
def test_a_typescript_flow_typed_from_the_schema_compiles_under_strict(live_server, tmp_path):
    call_command("load_catalog", verbosity=0)
    tools = installed_typescript_tools()
    user = make_member("typescript", "Mail team")
    headers = {"Authorization": f"Token {api_key(user)}"}
    schema = requests.get(f"{live_server.url}/api/schema/?format=json", headers=headers, timeout=60)
    assert schema.status_code == 200
    (tmp_path / "schema.json").write_bytes(schema.content)
    for name in ("flow.ts", "tsconfig.json"):
        shutil.copy(TS / name, tmp_path / name)
    (tmp_path / "node_modules").symlink_to(tools / "node_modules")
    commands = tools / "node_modules" / ".bin"

    generated = subprocess.run(
        [commands / "openapi-typescript", "schema.json", "--output", "schema.d.ts"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    # The generator's warnings (an unknown format, a $ref it cannot follow, ...): none.
    assert not re.search(r"warn|error", generated.stdout + generated.stderr, re.IGNORECASE), (
        generated.stdout + generated.stderr
    )
    compiled = subprocess.run(
        [commands / "tsc", "--project", "tsconfig.json"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert compiled.returncode == 0, compiled.stdout[-4000:]
    assert "error TS" not in compiled.stdout
