"""The management service against the real kube-apiserver, as the chart's management
ServiceAccount (a token of it, nothing else): writes, conflicts, unknown ids; and the inference
gateway's ServiceAccount stays read-only."""

from __future__ import annotations

import asyncio

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
