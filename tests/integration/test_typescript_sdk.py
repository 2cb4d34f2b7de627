"""The TypeScript SDK (sdk/typescript) built with tsc and tested by Node's test runner against the real
gateway + Triton + SmolLM2 (the gateway fixture); the URL reaches Node through CONCH_URL."""

from __future__ import annotations

import pytest

from support.typescript import build_sdk, run

pytestmark = pytest.mark.triton


def test_typescript_sdk_against_the_real_gateway(gateway):
    build_sdk()
    tests = run(["node", "--test", "test/sdk.test.js"], CONCH_URL=gateway.url)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    # Every test ran: none was skipped for a missing URL.
    assert "# skipped 0" in tests.stdout and "# fail 0" in tests.stdout, tests.stdout
