"""The TypeScript SDK (sdk/typescript) as its tests use it: built with tsc after `npm ci` (the locked
dev dependencies, from the npm cache when offline), its node tests run with the environment given."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

SDK = Path(__file__).resolve().parents[2] / "sdk" / "typescript"


def run(command: list[str], timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=SDK, env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout)


def build_sdk() -> None:
    assert shutil.which("node") and shutil.which("npm"), "Node.js 20+ and npm are needed (apt-get install nodejs npm)"
    for step in (["npm", "ci", "--no-audit", "--no-fund", "--prefer-offline"], ["npm", "run", "build"]):
        done = run(step)
        assert done.returncode == 0, done.stdout + done.stderr
