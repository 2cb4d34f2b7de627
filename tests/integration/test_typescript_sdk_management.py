"""The TypeScript SDK's management calls (sdk/typescript/test/management.test.js, run by Node's test runner)
against seed 003's management API of a real local gateway (authentication on) over a real Triton in explicit
model-control mode, as `make up` runs them (support/management.py). The stack reaches Node through the
environment; the SDK is built with tsc as test_typescript_sdk.py builds it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from support.management import PASSWORD, USERNAME, management_stack

pytestmark = pytest.mark.triton

SDK = Path(__file__).resolve().parents[2] / "sdk" / "typescript"
TESTS = SDK / "test" / "management.test.js"


def run(command: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=SDK, env={**os.environ, **env}, capture_output=True, text=True, timeout=180)


def test_typescript_sdk_management_calls(tmp_path):
    assert shutil.which("node") and shutil.which("npm"), "Node.js 20+ and npm are needed (apt-get install nodejs npm)"
    # npm ci installs the locked dev dependencies (from the npm cache when offline).
    for step in (["npm", "ci", "--no-audit", "--no-fund", "--prefer-offline"], ["npm", "run", "build"]):
        done = run(step)
        assert done.returncode == 0, done.stdout + done.stderr
    with management_stack(tmp_path) as stack:
        tests = run(["node", "--test", str(TESTS.relative_to(SDK))], CONCH_MANAGEMENT_URL=stack.url,
                    CONCH_ADMIN_KEY=stack.admin_key, CONCH_USER_KEY=stack.user_key, CONCH_GGUF=stack.gguf,
                    CONCH_USERNAME=USERNAME, CONCH_PASSWORD=PASSWORD)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    # Every test the file defines ran and passed: none was left out or skipped.
    defined = len(re.findall(r"^\s*test\(", TESTS.read_text(), re.MULTILINE))
    assert defined >= 7 and f"# pass {defined}\n" in tests.stdout, tests.stdout
    assert "# skipped 0" in tests.stdout and "# fail 0" in tests.stdout, tests.stdout
