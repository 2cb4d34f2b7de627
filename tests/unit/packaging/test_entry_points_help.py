"""`--help` on every entry point exits 0 with readable text: the `python -m` packages and every
console script pyproject.toml declares (run from its `module:function`, so a script added to
pyproject is covered whether or not the venv has been reinstalled since)."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import pytest

from support import REPO_ROOT

MODULES = ["conch_engines", "conch_gateway", "conch_operator", "conch_cluster"]
SCRIPTS = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def _assert_help(result: subprocess.CompletedProcess, name: str) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "usage:" in result.stdout and len(result.stdout.splitlines()) >= 3, result.stdout


@pytest.mark.parametrize("module", MODULES)
def test_python_m_help(module, tmp_path):
    # from an empty directory: --help must not need a config file, a models file or a cluster
    result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60)
    _assert_help(result, module)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_console_script_help(name, tmp_path):
    module, _, function = SCRIPTS[name].partition(":")
    code = f"import sys\nsys.argv = [{name!r}, '--help']\nfrom {module} import {function}\nsys.exit({function}())"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    _assert_help(result, name)


def test_engines_up_help_names_the_model_choices():
    result = subprocess.run([sys.executable, "-m", "conch_engines", "up", "--help"], capture_output=True, text=True,
                            timeout=60)
    _assert_help(result, "up")
    for word in ("--model", "--port", "--device", "smollm2", "qwen2", "llama3", "cuda:N"):
        assert word in result.stdout
