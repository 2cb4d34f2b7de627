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


def test_an_update_keeps_what_seed_003_cannot_express(cluster, rbac, tmp_path):
    """Fields set with kubectl that the seed's body has no words for (GPU product, nodeSelector,
    aliases, tolerations, engine limits) survive a PUT: the body is merged onto the spec."""
    body = {"name": "keep", "framework": "tensorrt-llm", "config": {"model_path": "hf://org/model", "n_ctx": 4096},
            "resource_requirements": {"gpu_count": 1}, "description": "v1"}
    by_hand = {"spec": {"gpu": {"product": "NVIDIA-L4"}, "nodeSelector": {"pool": "gpu"}, "aliases": ["kept"],
                        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                        "engine": {"maxBatchSize": 16}}}

    def spec() -> dict:
        return json.loads(cluster.kubectl("-n", rbac, "get", "model", "keep", "-o", "json").stdout)["spec"]

    async def scenario():
        service = await _service(cluster, rbac, f"{RELEASE}-management", tmp_path / "kc")
        try:
            await service.create(ModelCreate.model_validate(body))
            cluster.kubectl("-n", rbac, "patch", "model", "keep", "--type=merge", "-p", json.dumps(by_hand))
            # No resource_version: the write is made at the version the merge read.
            updated = await service.update("keep", ModelUpdate.model_validate(
                {**body, "description": "v2", "config": {"model_path": "hf://org/model", "n_ctx": 2048}}))
            assert (updated.description, updated.config["n_ctx"]) == ("v2", 2048)
            after = spec()
            assert after["gpu"] == {"count": 1, "product": "NVIDIA-L4"}
            assert (after["nodeSelector"], after["aliases"], after["tolerations"]) == (
                by_hand["spec"]["nodeSelector"], ["kept"], by_hand["spec"]["tolerations"])
            assert (after["engine"]["maxBatchSize"], after["engine"]["maxSeqLen"]) == (16, 2048)
            # What the body does express still changes: two GPUs, tensor parallel with them.
            grown = await service.update("keep", ModelUpdate.model_validate(
                {**body, "resource_requirements": {"gpu_count": 2}, "resource_version": updated.resource_version}))
            assert grown.resource_version != updated.resource_version
            after = spec()
            assert (after["gpu"], after["engine"]["tensorParallel"]) == ({"count": 2, "product": "NVIDIA-L4"}, 2)
            assert after["nodeSelector"] == {"pool": "gpu"}
            await service.delete("keep")
        finally:
            await service.backend.close()

    run(scenario())


def _pod(name: str, model: str, component: str, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"conch.dev/model": model, "app.kubernetes.io/component": component}},
            "spec": {"containers": [{"name": "triton" if component == "triton" else "build", "image": "unused"}],
                     **spec}}


def test_logs_read_the_triton_pods_only_and_a_log_no_node_serves_is_an_error(cluster, rbac, tmp_path):
    """Which pods /logs reads, against the real API server as the management ServiceAccount. kwok's
    pods run nowhere, so the API server cannot fetch their logs (the merged logs of real pods are
    tests/e2e/test_management_in_cluster.py): that is 502 LOGS_UNAVAILABLE naming the pod, answered
    before any line rather than a 200 cut short. A pod not scheduled yet, and the engine build's
    pod, are not read at all."""
    from support.k8s import model_manifest, wait_until

    def apply(*docs: dict) -> None:
        cluster.kubectl("-n", rbac, "apply", "-f", "-", input=yaml.safe_dump_all(docs))

    def phase(pod: str) -> str:
        return cluster.kubectl("-n", rbac, "get", "pod", pod, "-o", "jsonpath={.status.phase}").stdout

    apply(model_manifest("logged"),
          _pod("logged-triton-pending", "logged", "triton", nodeSelector={"no-such-node": "true"}),
          _pod("logged-engine-build", "logged", "engine-build"))
    wait_until(lambda: phase("logged-engine-build") == "Running", 30, message="the build pod running on kwok")

    async def logs() -> list[str]:
        service = await _service(cluster, rbac, f"{RELEASE}-management", tmp_path / "kc")
        try:
            return [line async for line in await service.logs("logged", 10, None, False)]
        finally:
            await service.backend.close()

    assert run(logs()) == []  # nothing readable yet, and not the build's log
    apply(_pod("logged-triton-a", "logged", "triton"))
    wait_until(lambda: phase("logged-triton-a") == "Running", 30, message="the Triton pod running on kwok")
    with pytest.raises(ConchError) as unavailable:
        run(logs())
    assert (unavailable.value.status, unavailable.value.code) == (502, "LOGS_UNAVAILABLE")
    assert "'logged-triton-a'" in unavailable.value.message
    with pytest.raises(ConchError) as missing:
        run(_missing_logs(cluster, rbac, tmp_path))
    assert (missing.value.status, missing.value.code) == (404, "MODEL_NOT_FOUND")


async def _missing_logs(cluster, namespace, tmp_path):
    service = await _service(cluster, namespace, f"{RELEASE}-management", tmp_path / "kc-missing")
    try:
        await service.logs("no-such-model", 10, None, False)
    finally:
        await service.backend.close()
