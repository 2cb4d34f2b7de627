"""The chart's Deployments: locked-down pods, images (tags and digests), the operator's and the
gateway's settings, the graceful stop of gateway pods, and the ways in: Ingress and HTTPRoute."""

from __future__ import annotations

import json

import pytest

from support.chart import APP_VERSION, container, env_of, everything, find, namespaced, one


@pytest.mark.parametrize("values", [None, everything(), namespaced()], ids=["default", "everything", "namespaced"])
def test_pods_are_locked_down(helm, values):
    docs = helm.render(values)
    deployments = find(docs, "Deployment")
    assert {d["metadata"]["name"] for d in deployments} == {"conch-operator", "conch-gateway", "conch-management"}
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                          "fsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"}}
        assert pod["automountServiceAccountToken"] is True  # both talk to the API server
        assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]
        for each in pod["containers"]:
            security = each["securityContext"]
            assert security["runAsNonRoot"] is True and security["runAsUser"] == 10001
            assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
            assert security["privileged"] is False and security["capabilities"] == {"drop": ["ALL"]}
            assert security["seccompProfile"] == {"type": "RuntimeDefault"}
            assert each["resources"]["requests"] and each["resources"]["limits"]
            assert {"name": "tmp", "mountPath": "/tmp"} in each["volumeMounts"]
            assert each["livenessProbe"] and each["readinessProbe"]
    for account in find(docs, "ServiceAccount"):
        assert account["automountServiceAccountToken"] is False  # only the pods that need it mount it


def test_images_and_settings(helm):
    docs = helm.render()
    operator, gateway = container(docs, "conch-operator"), container(docs, "conch-gateway")
    assert operator["image"] == f"ghcr.io/conch-dev/conch-operator:{APP_VERSION}"
    assert gateway["image"] == f"ghcr.io/conch-dev/conch-gateway:{APP_VERSION}"
    # The operator's own default Triton image is the one the chart passes on.
    from conch_operator.settings import OperatorSettings

    assert env_of(operator)["CONCH_OPERATOR_CPU_TRITON_IMAGE"] == OperatorSettings.model_fields["cpu_triton_image"].default
    assert env_of(operator)["CONCH_OPERATOR_METRICS_PORT"] == str(OperatorSettings.model_fields["metrics_port"].default)
    for setting, value in (("trtllm_triton_image", env_of(operator)["CONCH_OPERATOR_TRTLLM_TRITON_IMAGE"]),
                           ("trtllm_builder_image", env_of(operator)["CONCH_OPERATOR_TRTLLM_BUILDER_IMAGE"]),
                           ("gpu_default_requests", json.loads(env_of(operator)["CONCH_OPERATOR_GPU_DEFAULT_REQUESTS"])),
                           ("build_requests", json.loads(env_of(operator)["CONCH_OPERATOR_BUILD_REQUESTS"])),
                           ("build_retry_base_s", float(env_of(operator)["CONCH_OPERATOR_BUILD_RETRY_BASE_S"])),
                           ("build_retry_cap_s", float(env_of(operator)["CONCH_OPERATOR_BUILD_RETRY_CAP_S"]))):
        assert OperatorSettings().model_dump()[setting] == value, setting  # the chart's defaults are the operator's
    assert operator["args"] == ["--all-namespaces", "--liveness=http://0.0.0.0:8080/healthz", "--leader-election",
                                "--leader-election-name=conch-operator"]
    assert env_of(operator)["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert {p["name"]: p["containerPort"] for p in operator["ports"]} == {"healthz": 8080, "metrics": 8090}
    assert operator["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    operator_deployment = one(docs, "Deployment", "conch-operator")["spec"]
    assert operator_deployment["replicas"] == 2  # a leader and a standby
    assert operator_deployment["strategy"] == {"type": "RollingUpdate",
                                               "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    single = one(helm.render({"operator": {"replicas": 1, "leaderElection": {"enabled": False}}}),
                 "Deployment", "conch-operator")["spec"]
    assert single["strategy"] == {"type": "Recreate"}  # without a Lease, never two at once
    assert "--leader-election" not in single["template"]["spec"]["containers"][0]["args"]

    gateway_env = env_of(gateway)
    assert gateway_env["CONCH_MODEL_SOURCE"] == "kubernetes" and gateway_env["CONCH_HOST"] == "0.0.0.0"
    assert gateway_env["PORT"] == "8000" and "CONCH_WATCH_NAMESPACE" not in gateway_env
    assert "CONCH_DEFAULT_MODEL" not in gateway_env
    assert json.loads(gateway_env["CONCH_CORS_ALLOW_ORIGINS"]) == []  # closed unless origins are listed
    # The auth settings (auth-config.yaml) reach the gateway as its environment.
    auth_config = one(docs, "ConfigMap", "conch-gateway-auth")
    assert gateway["envFrom"] == [{"configMapRef": {"name": "conch-gateway-auth", "optional": True}}]
    assert auth_config["data"]["CONCH_AUTH"] == "on"
    # /health answers 503 while no model is healthy: never a probe.
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert not gateway[probe]["httpGet"]["path"].startswith("/health")
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/v1/models"

    custom = helm.render(everything("models"))
    operator, gateway = container(custom, "conch-operator"), container(custom, "conch-gateway")
    assert operator["image"] == "registry.example.com/ml/conch-operator:0.1.0-rc1"
    assert env_of(operator)["CONCH_OPERATOR_CPU_TRITON_IMAGE"] == "registry.example.com/ml/triton-cpu:0.1.0-rc1"
    assert operator["imagePullPolicy"] == "Always"
    assert operator["args"] == ["--all-namespaces", "--liveness=http://0.0.0.0:8080/healthz", "--leader-election",
                                "--leader-election-name=conch-operator", "--peering=conch", "--verbose"]
    assert env_of(operator)["POD_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env_of(gateway)["CONCH_WATCH_NAMESPACE"] == "models" and env_of(gateway)["CONCH_DEFAULT_MODEL"] == "smollm2"
    assert "replicas" not in one(custom, "Deployment", "conch-gateway")["spec"]  # the HPA owns it
    pod = one(custom, "Deployment", "conch-gateway")["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    ingress = one(custom, "Ingress", "conch-gateway")
    assert ingress["spec"]["tls"] == [{"secretName": "conch-gateway-tls", "hosts": ["conch.example.com"]}]
    assert ingress["spec"]["rules"][0]["host"] == "conch.example.com"
    assert all(d["metadata"]["labels"]["team"] == "ml" for d in custom)

    confined = container(helm.render(namespaced("models")), "conch-operator")
    assert confined["args"][:1] == ["--namespace=models"] and "--peering=conch" in confined["args"]
