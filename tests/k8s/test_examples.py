"""Every manifest in examples/ is accepted by the real API server."""

from __future__ import annotations

import pytest

from support import REPO_ROOT

pytestmark = pytest.mark.k8s

EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_applies(kubectl, path):
    result = kubectl("apply", "--dry-run=server", "-f", str(path))
    assert "created (server dry run)" in result.stdout
