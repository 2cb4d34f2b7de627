"""Kubernetes tier: a real control plane (etcd, kube-apiserver, controller-manager, scheduler) with
kwok fake nodes — two CPU-only, two with GPUs — built from Go modules by cluster/build-tools.sh."""

from __future__ import annotations

import uuid
from typing import Iterator

import pytest

from conch_cluster import ControlPlane
from support import REPO_ROOT
from support.k8s import Kubectl, Operator, wait_until

CRD = REPO_ROOT / "crds" / "conch.dev_models.yaml"


@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> Iterator[ControlPlane]:
    plane = ControlPlane(tmp_path_factory.mktemp("cluster"))
    plane.start()
    plane.kubectl("apply", "-f", str(CRD))
    established = "jsonpath={.status.conditions[?(@.type=='Established')].status}"
    wait_until(lambda: plane.kubectl("get", "crd", "models.conch.dev", "-o", established).stdout == "True", 60,
               message="CRD established")
    wait_until(lambda: plane.kubectl("get", "models", check=False).returncode == 0, 30, message="Model API served")
    yield plane
    plane.stop()


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
