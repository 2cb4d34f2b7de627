"""The TypeScript SDK (sdk/typescript) built with tsc and tested by Node's test runner against the real
gateway + Triton + SmolLM2 (the gateway fixture); the URL reaches Node through CONCH_URL."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.triton

SDK = Path(__file__).resolve().parents[2] / "sdk" / "typescript"


def run(command: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=SDK, env={**os.environ, **env}, capture_output=True, text=True, timeout=600)


def test_typescript_sdk_against_the_real_gateway(gateway):
    assert shutil.which("node") and shutil.which("npm"), "Node.js 20+ and npm are needed (apt-get install nodejs npm)"
    # npm ci installs the locked dev dependencies (from the npm cache when offline).
    for step in (["npm", "ci", "--no-audit", "--no-fund", "--prefer-offline"], ["npm", "run", "build"]):
        done = run(step)
        assert done.returncode == 0, done.stdout + done.stderr
    tests = run(["node", "--test", "test/sdk.test.js"], CONCH_URL=gateway.url)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    # Every test ran: none was skipped for a missing URL.
    assert "# skipped 0" in tests.stdout and "# fail 0" in tests.stdout, tests.stdout
