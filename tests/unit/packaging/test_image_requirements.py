"""The gateway's and the operator's images install their own requirement lists: every module their
code imports is covered, and every specifier matches pyproject.toml."""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from support import REPO_ROOT

DOCKER = REPO_ROOT / "docker"


def third_party_imports(*paths: Path) -> set[str]:
    modules: set[str] = set()
    files = [f for p in paths for f in ([p] if p.is_file() else p.rglob("*.py"))]
    for file in files:
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return {m for m in modules if m not in sys.stdlib_module_names and not m.startswith("conch_")}


def requirement_closure(requirements: list[Requirement]) -> set[str]:
    """Distribution names the requirements install, following installed metadata (with extras)."""
    seen: set[tuple[str, frozenset[str]]] = set()
    stack = list(requirements)
    while stack:
        req = stack.pop()
        key = (canonicalize_name(req.name), frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = metadata.requires(req.name) or []
        except metadata.PackageNotFoundError:
            continue
        for spec in map(Requirement, requires):
            if spec.marker is None or any(spec.marker.evaluate({"extra": e}) for e in (req.extras or {""})):
                stack.append(spec)
    return {name for name, _ in seen}


@pytest.mark.parametrize("image, sources, extra", [
    ("gateway", ["gateway/conch_gateway", "crds/conch_api"], set()),
    # tritonclient: conch_engines.repository loads its model_config_pb2 by file location.
    # conch_engines.tensorrt_llm: all but builder.py, which runs in the engine builder's image.
    ("operator", ["operator/conch_operator", "crds/conch_api", "engines/conch_engines/repository.py",
                  "engines/conch_engines/contract.py",
                  *(f"engines/conch_engines/tensorrt_llm/{m}.py" for m in ("__init__", "pins", "inputs", "commands",
                                                                           "repository"))], {"tritonclient"}),
])
def test_image_requirements_cover_imports_and_match_pyproject(image, sources, extra):
    lines = [line.strip() for line in (DOCKER / "requirements" / f"{image}.txt").read_text().splitlines()]
    requirements = [Requirement(line) for line in lines if line and not line.startswith("#")]
    project = {canonicalize_name(r.name): r for r in map(Requirement, tomllib.loads(
        (REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"])}
    for req in requirements:
        declared = project.get(canonicalize_name(req.name))
        assert declared is not None, f"{req.name} is not a dependency in pyproject.toml"
        assert req.specifier == declared.specifier and req.extras <= declared.extras, \
            f"{req} differs from pyproject.toml's {declared}"
    installed = requirement_closure(requirements)
    providers = metadata.packages_distributions()
    for module in third_party_imports(*(REPO_ROOT / s for s in sources)) | extra:
        dists = {canonicalize_name(d) for d in providers.get(module, [module])}
        assert dists & installed, f"docker/requirements/{image}.txt installs nothing that provides `{module}`"
