"""Conch as a user deploys it, every part real: the chart installed with `helm install` into the
local control plane; the operator and the gateway running as the chart's ServiceAccounts with the
installed Deployments' arguments and settings; `kubectl apply` of Models; the real Triton serving
the bundled 4-bit SmolLM2; requests through the gateway with the official `openai` SDK.

kwok plays the kubelet, so Triton pods created in the cluster do not run. The Models that answer
with real tokens are therefore `external` ones pointing at the session's Triton (how a user
attaches a Triton already running) — once behind TensorRT-LLM's ensemble interface, once behind its
llmapi interface — while a `tensorrt-llm` Model walks its whole build-and-serve flow on kwok GPU
nodes and reaches the gateway's model list.
"""

from __future__ import annotations

import uuid
from typing import Iterator

import httpx
import openai
import pytest
import yaml

from support import REPO_ROOT
from support.chart import (ChartOperator, Helm, deployed_container, denied, helm_env, installed,
                           service_account_kubeconfig)
from support.k8s import GatewayProcess, engine_cache_volume, wait_until
from support.stack import LLMAPI_MODEL

pytestmark = [pytest.mark.k8s, pytest.mark.triton]

QWEN_EXAMPLE = REPO_ROOT / "examples" / "qwen2-7b-instruct-gptq-int4.yaml"


@pytest.fixture(scope="module")
def release(cluster, tmp_path_factory) -> Iterator[str]:
    """The chart with its default values, in a namespace of its own."""
    home = tmp_path_factory.mktemp("helm-e2e")
    with installed(cluster, Helm(helm_env(cluster.env(), home, cluster.bin_dir), home)) as namespace:
        yield namespace


@pytest.fixture(scope="module")
def stack(cluster, release, tmp_path_factory) -> Iterator[tuple[str, GatewayProcess]]:
    """A namespace for Models, the chart's operator reconciling it and the chart's gateway serving it."""
    namespace = f"models-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace)
    logs = tmp_path_factory.mktemp("e2e")
    operator = ChartOperator(cluster, release, logs, service_account_kubeconfig(
        cluster, release, "conch-operator", logs / "operator.kubeconfig"), "e2e-operator").start()
    gateway = GatewayProcess(cluster, None, logs)
    spec = deployed_container(cluster, release, "conch-gateway")
    gateway.env.update({e["name"]: e["value"] for e in spec["env"] if e["name"] not in ("CONCH_HOST", "PORT")})
    gateway.env.update({"KUBECONFIG": str(service_account_kubeconfig(cluster, release, "conch-gateway",
                                                                     logs / "gateway.kubeconfig")),
                        "HOME": str(logs)})
    gateway.start()
    yield namespace, gateway
    gateway.stop()
    operator.stop()
    assert not denied(operator.log() + gateway.log()), "\n".join(denied(operator.log() + gateway.log()))
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def external_model(name: str, triton, triton_model: str, interface: str, chat_template: str) -> dict:
    return {"apiVersion": "conch.dev/v1alpha1", "kind": "Model", "metadata": {"name": name},
            "spec": {"runtime": "external", "displayName": f"SmolLM2 ({interface})", "chatTemplate": chat_template,
                     "external": {"url": triton.url, "grpcAddress": f"127.0.0.1:{triton.ports.grpc}",
                                  "tritonModel": triton_model, "interface": interface}}}


def listed(gateway) -> dict[str, dict]:
    return {m["id"]: m for m in httpx.get(f"{gateway.url}/v1/models", timeout=10).json()["models"]}


def test_kubectl_apply_to_tokens_through_the_chart(cluster, stack, triton, bundled_chat_template):
    namespace, gateway = stack
    models = [external_model("smollm2", triton, "smollm2", "ensemble", bundled_chat_template),
              external_model("smollm2-llmapi", triton, LLMAPI_MODEL, "llmapi", bundled_chat_template)]
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump_all(models))
    wait_until(lambda: all(listed(gateway).get(m["metadata"]["name"], {}).get("status") == "healthy"
                           for m in models), 60, message="both Models Ready and routed")

    sdk = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0, timeout=120)
    chat = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France?"}]
    answers = {}
    for name in ("smollm2", "smollm2-llmapi"):
        answer = sdk.chat.completions.create(model=name, messages=chat, max_tokens=16, temperature=0)
        answers[name] = answer.choices[0].message.content
        assert "Paris" in answers[name]
        streamed = "".join(c.choices[0].delta.content or "" for c in sdk.chat.completions.create(
            model=name, messages=chat, max_tokens=16, temperature=0, stream=True) if c.choices)
        assert streamed == answers[name]
    assert answers["smollm2"] == answers["smollm2-llmapi"]  # one model, two tensor interfaces, greedy

    # Deleted by the user: it leaves the gateway at once (the watch, not a poll, decides).
    cluster.kubectl("-n", namespace, "delete", "model", "smollm2-llmapi")
    wait_until(lambda: "smollm2-llmapi" not in listed(gateway), 30, message="deleted Model leaves the gateway")
    missing = httpx.post(f"{gateway.url}/v1/chat/completions", json={"model": "smollm2-llmapi", "messages": chat})
    assert missing.status_code in (400, 404) and missing.json()["error"]["code"] == "MODEL_NOT_FOUND"


def test_tensorrt_llm_example_builds_serves_and_is_listed(cluster, stack):
    """The Qwen2 GPTQ example on kwok's L4 node: engine cache claim, build Job, engine recorded,
    GPU Deployment, Ready — and the gateway lists it from its status, with the ensemble interface."""
    namespace, gateway = stack
    with engine_cache_volume(cluster, namespace):
        cluster.kubectl("-n", namespace, "apply", "-f", str(QWEN_EXAMPLE))
        name = yaml.safe_load(QWEN_EXAMPLE.read_text())["metadata"]["name"]
        entry = wait_until(lambda: listed(gateway).get(name, {}).get("status") == "healthy" and listed(gateway)[name],
                           90, message=f"{name} built, deployed and routed")
        assert entry["endpoint"] == f"http://{name}-triton.{namespace}.svc:8000"
        jobs = yaml.safe_load(cluster.kubectl("-n", namespace, "get", "jobs", "-o", "yaml").stdout)["items"]
        assert len(jobs) == 1 and jobs[0]["status"].get("succeeded") == 1
        pod = yaml.safe_load(cluster.kubectl("-n", namespace, "get", "deployment", f"{name}-triton", "-o",
                                             "yaml").stdout)["spec"]["template"]["spec"]
        assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert pod["nodeSelector"]["nvidia.com/gpu.product"] == "NVIDIA-L4"
