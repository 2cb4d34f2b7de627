"""Fixtures shared by every test tier."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from conch_cluster import ControlPlane
from conch_engines.triton_server import TritonPorts, TritonServer
from support import REPO_ROOT, free_port_block
from support.k8s import wait_until
from support.stack import write_test_repository


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def triton(tmp_path_factory) -> Iterator[TritonServer]:
    """One real Triton for the session, serving the bundled SmolLM2, the echo model and the fault
    model (loading the model takes seconds, not worth repeating)."""
    workdir = tmp_path_factory.mktemp("triton")
    server = TritonServer(write_test_repository(workdir / "repository"), workdir,
                          TritonPorts.from_http(free_port_block()))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def bundled_chat_template() -> str:
    from support.stack import bundled_template

    return bundled_template()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> Iterator[ControlPlane]:
    """A real control plane (etcd, kube-apiserver, controller-manager, scheduler) with kwok fake
    nodes — two CPU-only, two with GPUs — built from Go modules by cluster/build-tools.sh, with the
    Model CRD applied. Started on first use."""
    plane = ControlPlane(tmp_path_factory.mktemp("cluster"))
    plane.start()
    plane.kubectl("apply", "-f", str(REPO_ROOT / "crds" / "conch.dev_models.yaml"))
    established = "jsonpath={.status.conditions[?(@.type=='Established')].status}"
    wait_until(lambda: plane.kubectl("get", "crd", "models.conch.dev", "-o", established).stdout == "True", 60,
               message="CRD established")
    wait_until(lambda: plane.kubectl("get", "models", check=False).returncode == 0, 30, message="Model API served")
    yield plane
    plane.stop()
