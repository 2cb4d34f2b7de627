"""Monitoring live against the real kube-apiserver, as the chart's ServiceAccounts (tokens of them,
nothing else): a Model scaled through its scale subresource (what `kubectl scale` does) reaches
/ws/monitor clients within a second, pushed by the gateway's Model watch; and /api/config written
on one replica (the management API, which may write the chart's ConfigMap) is read on another
(an inference gateway, which may only watch it) within a couple of seconds."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest
import websockets
import yaml

from support.chart import CHART, RELEASE, Helm, helm_env, service_account_kubeconfig
from support.k8s import GatewayProcess, model_manifest, wait_until

pytestmark = pytest.mark.k8s
GATEWAY_ACCOUNT, MANAGEMENT_ACCOUNT = f"{RELEASE}-gateway", f"{RELEASE}-management"


@pytest.fixture
def chart(cluster, namespace, tmp_path) -> dict[str, str]:
    """The chart's ServiceAccounts, namespaced RBAC and monitoring ConfigMap, rendered for this
    namespace and applied; returns the CONCH_MONITORING_CONFIG_MAP the chart gives both Deployments."""
    helm = Helm(helm_env(cluster.env(), tmp_path / "helm", cluster.bin_dir), tmp_path / "helm")
    docs = [d for d in yaml.safe_load_all(helm("template", RELEASE, str(CHART), "-n", namespace,
                                                "--set", f"gateway.watchNamespace={namespace}").stdout) if d]
    settings = {}
    for deployment in (d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] in
                       (GATEWAY_ACCOUNT, MANAGEMENT_ACCOUNT)):
        env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        settings[deployment["metadata"]["name"]] = env["CONCH_MONITORING_CONFIG_MAP"]
    config_map = settings[GATEWAY_ACCOUNT]
    assert settings[MANAGEMENT_ACCOUNT] == config_map and config_map.startswith(f"{namespace}/")
    wanted = [d for d in docs if d["kind"] in ("ServiceAccount", "Role", "RoleBinding")
              or (d["kind"] == "ConfigMap" and d["metadata"]["name"] == config_map.split("/")[1])]
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(wanted))
    return {"CONCH_MONITORING_CONFIG_MAP": config_map}


def _as_account(cluster, namespace: str, account: str, log_dir: Path, **env: str) -> GatewayProcess:
    process = GatewayProcess(cluster, namespace, log_dir)
    process.env["KUBECONFIG"] = str(service_account_kubeconfig(cluster, namespace, account,
                                                               log_dir / f"{account}-{process.port}.kubeconfig"))
    process.env.update(env)
    return process.start()


@pytest.fixture
def gateway(cluster, namespace, chart, tmp_path) -> Iterator[GatewayProcess]:
    process = _as_account(cluster, namespace, GATEWAY_ACCOUNT, tmp_path, **chart)
    yield process
    process.stop()


@pytest.fixture
def management(cluster, namespace, chart, tmp_path) -> Iterator[GatewayProcess]:
    process = _as_account(cluster, namespace, MANAGEMENT_ACCOUNT, tmp_path, CONCH_MANAGEMENT="true", **chart)
    yield process
    process.stop()


async def _scale(cluster, namespace: str, name: str, replicas: int) -> None:
    """PATCH models/<name>/scale, the request `kubectl scale` sends (admin credentials: the test is the user)."""
    from kubernetes.aio import client, config

    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=configuration)
    async with client.ApiClient(configuration) as api:
        await client.CustomObjectsApi(api).patch_namespaced_custom_object_scale(
            "conch.dev", "v1alpha1", namespace, "models", name, {"spec": {"replicas": replicas}})


async def _update_for(ws, model_id: str, replicas: int, timeout: float, field: str = "replicas") -> tuple[dict, float]:
    """The first model_status_update of `model_id` reporting `replicas` (in `field`), and when it came."""
    deadline = time.monotonic() + timeout
    while True:
        event = json.loads(await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic())))
        if event["type"] == "model_status_update" and event["data"]["model_id"] == model_id \
                and event["data"][field] == replicas:
            return event, time.monotonic()


def test_a_scale_reaches_websocket_clients_within_a_second(cluster, kubectl, gateway):
    # No operator runs: only spec.replicas changes, so any event is the gateway's watch at work.
    kubectl.apply(model_manifest("scaled", replicas=1))
    wait_until(lambda: httpx.get(f"{gateway.url}/api/system/status").json()["models_total"] == 1, 10,
               message="the gateway lists the Model")
    url = gateway.url.replace("http", "ws") + "/ws/monitor"

    async def run():
        clients = [await websockets.connect(url) for _ in range(10)]
        try:
            for ws in clients:
                await ws.send(json.dumps({"action": "subscribe", "events": ["model_status"]}))
                assert json.loads(await ws.recv())["type"] == "subscribed"
            started = time.monotonic()
            await _scale(cluster, kubectl.namespace, "scaled", 0)
            stopped = await asyncio.gather(*(_update_for(ws, "scaled", 0, 5) for ws in clients))
            # The same through the kubectl binary: seen within a second of kubectl returning.
            await asyncio.to_thread(kubectl, "scale", "model/scaled", "--replicas=3")
            returned = time.monotonic()
            scaled = await asyncio.gather(*(_update_for(ws, "scaled", 3, 5) for ws in clients))
            # Replicas becoming ready, as the operator writes them to the status subresource.
            await asyncio.to_thread(kubectl, "patch", "model/scaled", "--subresource=status", "--type=merge",
                                    "-p", json.dumps({"status": {"replicas": 3, "readyReplicas": 2}}))
            patched = time.monotonic()
            ready = await asyncio.gather(*(_update_for(ws, "scaled", 2, 5, "ready_replicas") for ws in clients))
            assert max(at for _, at in ready) - patched < 1.0
            assert ready[0][0]["data"]["replicas"] == 3
            return started, stopped, returned, scaled
        finally:
            for ws in clients:
                await ws.close()

    started, stopped, returned, scaled = asyncio.run(run())
    assert max(at for _, at in stopped) - started < 1.0, gateway.log()[-2000:]
    assert max(at for _, at in scaled) - returned < 1.0
    event = stopped[0][0]["data"]
    assert (event["status"], event["health"], event["replicas"], event["ready_replicas"]) == ("stopped", "unknown", 0, 0)
    # Not Ready (no operator): a model meant to run that is not running yet is starting.
    assert (scaled[0][0]["data"]["status"], scaled[0][0]["data"]["replicas"]) == ("starting", 3)
    assert kubectl.model("scaled")["spec"]["replicas"] == 3


def test_config_put_on_one_replica_is_read_on_another(cluster, namespace, chart, management, gateway):
    config = {"prometheus_url": "http://prometheus.example:9090", "metrics_retention_s": 900,
              "gpu_poll_interval_s": 2.0}
    rule = {"name": "TooManyErrors", "expr": 'sum(rate(conch_http_requests_total{status=~"5.."}[5m])) > 1',
            "for": "5m", "severity": "critical", "summary": "errors"}
    with httpx.Client(base_url=management.url, timeout=10) as writer, \
            httpx.Client(base_url=gateway.url, timeout=10) as reader:
        assert reader.get("/api/config").json()["metrics_retention_s"] == 3600  # the defaults: the map is empty
        answer = writer.put("/api/config", json=config)
        assert answer.status_code == 200, management.log()[-3000:]
        written = time.monotonic()
        wait_until(lambda: reader.get("/api/config").json() == config, 5, interval=0.05,
                   message="the other replica reads the PUT")
        assert time.monotonic() - written < 2.0
        assert writer.get("/api/config").json() == config  # the writer reads its own write at once

        assert writer.post("/api/config/alerts", json=rule).status_code == 201
        wait_until(lambda: reader.get("/api/config/alerts").json() == [rule], 5, interval=0.05,
                   message="the other replica reads the new rule")

        # The inference gateway's ServiceAccount may only read the ConfigMap: a write is refused, not lost.
        refused = reader.put("/api/config", json={**config, "metrics_retention_s": 60})
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "OPERATION_REFUSED", refused.text
        assert writer.put("/api/config", json={"metrics_retention_s": 1}).status_code == 422  # validated first

    # What the replicas share is the chart's ConfigMap, in Prometheus' rule-file format too.
    name = chart["CONCH_MONITORING_CONFIG_MAP"].split("/")[1]
    live = json.loads(cluster.kubectl("-n", namespace, "get", "configmap", name, "-o", "json").stdout)
    data = live["data"]
    assert json.loads(data["monitoring-config.json"]) == config
    assert live["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"  # writes keep the chart's metadata
    rule_file = yaml.safe_load(data["alert-rules.yml"])
    assert rule_file["groups"][0]["rules"][0]["alert"] == "TooManyErrors"

    # Least privilege: the gateway reads that one ConfigMap only; nobody here may create ConfigMaps.
    gateway_sa = f"system:serviceaccount:{namespace}:{GATEWAY_ACCOUNT}"
    management_sa = f"system:serviceaccount:{namespace}:{MANAGEMENT_ACCOUNT}"

    def can(account: str, *request: str) -> bool:
        return cluster.kubectl("auth", "can-i", *request, "-n", namespace, "--as", account,
                               check=False).stdout.strip() == "yes"

    assert can(gateway_sa, "watch", f"configmaps/{name}") and not can(gateway_sa, "update", f"configmaps/{name}")
    assert not can(gateway_sa, "get", "configmaps/other") and not can(gateway_sa, "list", "configmaps")
    assert can(management_sa, "update", f"configmaps/{name}") and not can(management_sa, "create", "configmaps")
    assert not can(management_sa, "get", "configmaps/other")
