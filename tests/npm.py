"""Node packages the tests run (a TypeScript compiler, an OpenID Connect provider), each installed
from its lockfile under var/ once, and again only when the lockfile changes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def npm_ci(source: Path, into: Path, what: str) -> Path:
    """`into` with the packages of source/package-lock.json installed (npm ci), unless they already
    are from the same lockfile; a test that needs them fails saying why npm could not."""
    installed = into / "package-lock.json"
    lockfile = (source / "package-lock.json").read_text()
    if (into / "node_modules").is_dir() and installed.is_file() and installed.read_text() == lockfile:
        return into
    into.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copy(source / name, into / name)
    done = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
        cwd=into,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        installed.unlink()  # installed in part: install again next time
        pytest.fail(f"npm could not install {what}: {done.stderr[-1000:]}")
    return into
