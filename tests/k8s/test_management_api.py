"""The management service against the real kube-apiserver, as the chart's management
ServiceAccount (a token of it, nothing else): writes, conflicts, unknown ids, a create asking for
more GPUs than any (kwok) node has; and the inference gateway's ServiceAccount stays read-only."""

from __future__ import annotations

import asyncio
import json

import pytest
import yaml

from conch_gateway.errors import ConchError
from conch_gateway.management.kube import KubernetesBackend
from conch_gateway.management.protocol import ModelCreate, ModelUpdate
from conch_gateway.management.service import ManagementService
from support.chart import CHART, RELEASE, Helm, helm_env, service_account_kubeconfig


@pytest.fixture
def rbac(cluster, namespace, tmp_path):
    """The chart's management and gateway RBAC, rendered for this namespace and applied."""
    helm = Helm(helm_env(cluster.env(), tmp_path / "helm", cluster.bin_dir), tmp_path / "helm")
    docs = [d for d in yaml.safe_load_all(helm("template", RELEASE, str(CHART), "-n", namespace,
                                                "--set", f"gateway.watchNamespace={namespace}").stdout) if d]
    wanted = {"ServiceAccount", "Role", "RoleBinding"}
    cluster.kubectl("apply", "-n", namespace, "-f", "-",
                    input=yaml.safe_dump_all([d for d in docs if d["kind"] in wanted]))
    return namespace


def run(coro):
    return asyncio.new_event_loop().run_until_complete(coro)


async def _service(cluster, namespace, account, path):
    from kubernetes.aio import client, config

    kubeconfig = service_account_kubeconfig(cluster, namespace, account, path)
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    return ManagementService(KubernetesBackend(namespace, client.ApiClient(configuration)))


BODY = {"name": "m1", "framework": "llama.cpp", "config": {"model_path": "/models/m.gguf", "n_ctx": 2048},
        "description": "d", "tags": ["chat"]}


def code(coro) -> tuple[int, str]:
    with pytest.raises(ConchError) as err:
        run(coro)
    return err.value.status, err.value.code


def test_management_service_account_writes_models(cluster, rbac, tmp_path):
    async def scenario():
        service = await _service(cluster, rbac, f"{RELEASE}-management", tmp_path / "kc")
        try:
            created = await service.create(ModelCreate.model_validate(BODY))
            assert created.id == "m1"
            with pytest.raises(ConchError) as dup:
                await service.create(ModelCreate.model_validate(BODY))
            assert (dup.value.status, dup.value.code) == (409, "MODEL_ALREADY_EXISTS")
            item = await service.get("m1")
            assert (item.framework, item.tags, item.config["n_ctx"]) == ("llama.cpp", ["chat"], 2048)
            page = await service.list(1, 100, None, "llama.cpp")
            assert [i.id for i in page.items] == ["m1"]
            version = item.resource_version
            updated = await service.update("m1", ModelUpdate.model_validate({**BODY, "description": "v2",
                                                                            "resource_version": version}))
            assert updated.description == "v2"
            with pytest.raises(ConchError) as stale:
                await service.update("m1", ModelUpdate.model_validate({**BODY, "resource_version": version}))
            assert (stale.value.status, stale.value.code) == (409, "CONFLICT")
            await service.stop("m1")
            assert (await service.get("m1")).status == "stopped"
            await service.start("m1")
            assert (await service.get("m1")).config["replicas"] == 1
            for call in (service.get("nope"), service.stop("nope"), service.delete("nope")):
                with pytest.raises(ConchError) as missing:
                    await call
                assert (missing.value.status, missing.value.code) == (404, "MODEL_NOT_FOUND")
            with pytest.raises(ConchError) as bad:
                await service.create(ModelCreate.model_validate({**BODY, "name": "m2", "framework": "onnx"}))
            assert (bad.value.status, bad.value.param) == (400, "framework")
            await service.delete("m1")
        finally:
            await service.backend.close()

    run(scenario())


def test_gateway_service_account_stays_read_only(cluster, rbac):
    account = f"system:serviceaccount:{rbac}:{RELEASE}-gateway"
    for verb in ("create", "update", "patch", "delete"):
        answer = cluster.kubectl("auth", "can-i", verb, "models.conch.dev", "-n", rbac, "--as", account, check=False)
        assert answer.stdout.strip() == "no", (verb, answer.stdout)
    management = f"system:serviceaccount:{rbac}:{RELEASE}-management"
    assert cluster.kubectl("auth", "can-i", "create", "models.conch.dev", "-n", rbac, "--as", management,
                           check=False).stdout.strip() == "yes"
    assert cluster.kubectl("auth", "can-i", "get", "pods/log", "-n", rbac, "--as", management,
                           check=False).stdout.strip() == "yes"
    assert cluster.kubectl("auth", "can-i", "get", "secrets", "-n", rbac, "--as", management,
                           check=False).stdout.strip() == "yes"  # credentials, like the gateway


@pytest.fixture
def node_reader(cluster, rbac, tmp_path):
    """The chart's management ClusterRole on nodes, under a name of this test's own: the chart's
    cluster-scoped names belong to the chart tests' Helm releases."""
    helm = Helm(helm_env(cluster.env(), tmp_path / "helm-nodes", cluster.bin_dir), tmp_path / "helm-nodes")
    docs = [d for d in yaml.safe_load_all(helm("template", RELEASE, str(CHART), "-n", rbac).stdout) if d]
    role = next(d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == f"{RELEASE}-management-nodes")
    name = f"{rbac}-management-nodes"
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
               "subjects": [{"kind": "ServiceAccount", "name": f"{RELEASE}-management", "namespace": rbac}]}
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([
        {"apiVersion": role["apiVersion"], "kind": "ClusterRole", "metadata": {"name": name}, "rules": role["rules"]},
        binding]))
    yield rbac
    cluster.kubectl("delete", "clusterrolebinding,clusterrole", name, "--wait=false", check=False)


def _gpus(node: dict) -> int:
    return int(node["status"].get("allocatable", {}).get("nvidia.com/gpu", 0))


@pytest.fixture
def biggest_gpu_nodes_cordoned(cluster):
    """The fixtures' kwok GPU nodes with the most GPUs, cordoned for the test (a replica cannot
    land there), so the largest schedulable node is below the 8 GPUs a Model may ask for."""
    nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    most = max(_gpus(n) for n in nodes)
    biggest = [n["metadata"]["name"] for n in nodes if _gpus(n) == most]
    for name in biggest:
        cluster.kubectl("cordon", name)
    try:
        yield max(_gpus(n) for n in nodes if n["metadata"]["name"] not in biggest)
    finally:
        for name in biggest:
            cluster.kubectl("uncordon", name, check=False)


def test_more_gpus_than_any_node_has_is_insufficient_resources(cluster, node_reader, biggest_gpu_nodes_cordoned,
                                                                tmp_path):
    """The largest allocatable nvidia.com/gpu of one schedulable node bounds a replica's GPUs."""
    largest = biggest_gpu_nodes_cordoned
    assert 0 < largest < 8  # the fixtures' other GPU node
    body = {"name": "big", "framework": "tensorrt-llm", "config": {"model_path": "hf://org/model"},
            "resource_requirements": {"gpu_count": largest + 1}}

    async def scenario():
        service = await _service(cluster, node_reader, f"{RELEASE}-management", tmp_path / "kc")
        try:
            with pytest.raises(ConchError) as short:
                await service.create(ModelCreate.model_validate(body))
            assert (short.value.status, short.value.code) == (503, "INSUFFICIENT_RESOURCES")
            assert short.value.param == "resource_requirements.gpu_count"
            assert f"has {largest} allocatable" in short.value.message
            with pytest.raises(ConchError) as missing:
                await service.get("big")
            assert missing.value.code == "MODEL_NOT_FOUND"  # nothing was written
            fits = {**body, "resource_requirements": {"gpu_count": largest}}
            assert (await service.create(ModelCreate.model_validate(fits))).id == "big"
            item = await service.get("big")
            # An update asking for more than fits is refused the same way, and changes nothing.
            with pytest.raises(ConchError) as grow:
                await service.update("big", ModelUpdate.model_validate({**body, "resource_version": item.resource_version}))
            assert grow.value.code == "INSUFFICIENT_RESOURCES"
            assert (await service.get("big")).resource_version == item.resource_version
            await service.delete("big")
        finally:
            await service.backend.close()

    run(scenario())
