"""The layer contracts of pyproject.toml ([tool.importlinter]) hold, and the checker really bites."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from support import REPO_ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--config", str(REPO_ROOT / "pyproject.toml"), "--no-cache"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_every_layer_contract_is_kept():
    result = lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_gateway_importing_kopf_breaks_the_build(tmp_path):
    """A copy of the gateway that imports kopf, found first on the path: the contract must fail."""
    shutil.copytree(REPO_ROOT / "gateway" / "conch_gateway", tmp_path / "conch_gateway")
    routes = tmp_path / "conch_gateway" / "routes" / "health.py"
    routes.write_text("import kopf  # a deliberate violation\n" + routes.read_text())
    result = lint_imports({**os.environ, "PYTHONPATH": str(tmp_path)})
    assert result.returncode != 0
    assert "conch_gateway.routes.health -> kopf" in result.stdout
