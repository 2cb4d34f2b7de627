"""Static packaging checks (no API server): the chart through the pinned `helm` (lint, schema,
templates) and the Dockerfiles and image requirement lists read as files."""

from __future__ import annotations

import os

import pytest

from conch_cluster import toolchain
from support.chart import Helm, helm_env


@pytest.fixture(scope="session")
def helm(tmp_path_factory) -> Helm:
    """helm without a cluster: lint and template."""
    home = tmp_path_factory.mktemp("helm")
    return Helm(helm_env(dict(os.environ), home, toolchain.ensure()), home)
