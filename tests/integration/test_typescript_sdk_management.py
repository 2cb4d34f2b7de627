"""The TypeScript SDK's management calls (sdk/typescript/test/management.test.js, run by Node's test runner)
against seed 003's management API of a real local gateway (authentication on) over a real Triton in explicit
model-control mode, as `make up` runs them (support/management.py). The stack reaches Node through the
environment; the SDK is built with tsc as test_typescript_sdk.py builds it."""

from __future__ import annotations

import re

import pytest

from support.management import PASSWORD, USERNAME, management_stack
from support.typescript import SDK, build_sdk, run

pytestmark = pytest.mark.triton

TESTS = SDK / "test" / "management.test.js"


def test_typescript_sdk_management_calls(tmp_path):
    build_sdk()
    with management_stack(tmp_path) as stack:
        tests = run(["node", "--test", str(TESTS.relative_to(SDK))], CONCH_MANAGEMENT_URL=stack.url,
                    CONCH_ADMIN_KEY=stack.admin_key, CONCH_USER_KEY=stack.user_key, CONCH_GGUF=stack.gguf,
                    CONCH_USERNAME=USERNAME, CONCH_PASSWORD=PASSWORD)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    # Every test the file defines ran and passed: none was left out or skipped.
    defined = len(re.findall(r"^\s*test\(", TESTS.read_text(), re.MULTILINE))
    assert defined >= 7 and f"# pass {defined}\n" in tests.stdout, tests.stdout
    assert "# skipped 0" in tests.stdout and "# fail 0" in tests.stdout, tests.stdout
