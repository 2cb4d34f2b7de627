"""Kubernetes tier: the session's real control plane (the `cluster` fixture, tests/conftest.py), a
namespace per test, kubectl in it, and the operator as a real process."""

from __future__ import annotations

import uuid
from typing import Iterator

import pytest

from support.k8s import GatewayProcess, Kubectl, Operator, wait_until


@pytest.fixture
def namespace(cluster) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    wait_until(lambda: cluster.kubectl("-n", name, "get", "serviceaccount", "default", check=False).returncode == 0,
               30, message="default ServiceAccount")
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def kubectl(cluster, namespace) -> Kubectl:
    return Kubectl(cluster, namespace)


@pytest.fixture
def operator(cluster, namespace, tmp_path) -> Iterator[Operator]:
    running = Operator(cluster, namespace, tmp_path).start()
    yield running
    running.stop()


@pytest.fixture
def echo_triton(triton):
    """The session's real Triton; its `echo` model answers at once."""
    return triton


@pytest.fixture
def gateway(cluster, namespace, tmp_path) -> Iterator[GatewayProcess]:
    """A gateway process with the Kubernetes model source, watching `namespace` (modules needing
    more — auth, a chart's ServiceAccount — define their own)."""
    process = GatewayProcess(cluster, namespace, tmp_path).start()
    yield process
    process.stop()
