"""Conch on real pods, the way a user runs it: `helm install` with the images built here →
`kubectl apply -f examples/smollm2-cpu.yaml` → a real Triton pod (llama.cpp, read-only root, non-root)
turns the Model Ready → the official `openai` SDK gets real tokens through the ingress (and the chart's
Gateway API HTTPRoute serves in its place). Then what a
cluster does to it: scaling to two replicas, a Triton pod killed mid-stream, the operator pod
restarted, `helm upgrade` to a new image tag under a client loop, the Model deleted, the chart
uninstalled — and, on the local cluster, not one packet to the cluster's ranges leaves the machine.

The tests share one release and run in file order (each leaves the state the next one starts from).
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import httpx
import openai
import pytest
import yaml

from support import REPO_ROOT
from support.k8s import wait_until

# The first test of a module also starts the cluster and installs the chart (helm may wait 360 s).
pytestmark = [pytest.mark.k8s, pytest.mark.timeout(1200)]

CHART = REPO_ROOT / "charts" / "conch"
EXAMPLE = REPO_ROOT / "examples" / "smollm2-cpu.yaml"
MODEL = yaml.safe_load(EXAMPLE.read_text())["metadata"]["name"]
CHAT = [{"role": "user", "content": "What is the capital of France?"}]
TRITON_SELECTOR = f"conch.dev/model={MODEL},app.kubernetes.io/component=triton"
# The operator's and gateway's requests sized for a two-core node, so that the rolling updates'
# surge pods fit next to two Triton replicas.
SMALL = {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}}


@pytest.fixture(scope="module")
def release(e2e_cluster, tmp_path_factory) -> Iterator[dict]:
    namespace = f"conch-e2e-{uuid.uuid4().hex[:6]}"
    values = {"image": e2e_cluster.image_values,
              "gateway": {"ingress": {"enabled": True, "className": e2e_cluster.ingress_class}, "resources": SMALL},
              "operator": {"resources": SMALL}}
    values_file = tmp_path_factory.mktemp("e2e-values") / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    # --take-ownership: another module's release, uninstalled, kept the Model CRD (docs/kubernetes.md)
    e2e_cluster.helm("install", "conch", str(CHART), "-n", namespace, "--create-namespace", "-f", str(values_file),
                     "--take-ownership", "--wait", "--timeout=360s", timeout=420)
    yield {"namespace": namespace, "values": values_file}
    e2e_cluster.helm("uninstall", "conch", "-n", namespace, "--wait", check=False)
    e2e_cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture(scope="module")
def models(e2e_cluster, release) -> Iterator[str]:
    namespace = f"models-{uuid.uuid4().hex[:6]}"
    e2e_cluster.kubectl("create", "namespace", namespace)
    yield namespace
    e2e_cluster.kubectl("-n", namespace, "delete", "model", "--all", "--wait=false", check=False)
    e2e_cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture(scope="module")
def api_key(e2e_cluster, release) -> str:
    """The admin API key the chart generated (docs/auth.md), or nothing when the gateway has no auth."""
    secret = e2e_cluster.get("secret", "conch-admin-key", "-n", release["namespace"])
    return base64.b64decode(secret["data"]["key"]).decode() if secret else "unused"


@pytest.fixture(scope="module")
def sdk(e2e_cluster, api_key) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{e2e_cluster.ingress_url}/v1", api_key=api_key, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def http(e2e_cluster, api_key) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=e2e_cluster.ingress_url, timeout=30,
                      headers={"Authorization": f"Bearer {api_key}"}) as client:
        yield client


# ---------------------------------------------------------------------------------------------- helpers


def pods(cluster, namespace: str, selector: str) -> list[dict]:
    """Pods of the selector that are not on their way out."""
    return [p for p in cluster.get("pods", "-n", namespace, "-l", selector)["items"]
            if not p["metadata"].get("deletionTimestamp")]


def is_ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


def ready_triton_pods(cluster, namespace: str, count: int) -> list[dict]:
    found = [p for p in pods(cluster, namespace, TRITON_SELECTOR) if is_ready(p)]
    return found if len(found) == count else []


def model(cluster, namespace: str) -> dict:
    return cluster.get("model", MODEL, "-n", namespace) or {}


def model_ready(cluster, namespace: str, replicas: int) -> bool:
    status = model(cluster, namespace).get("status", {})
    return status.get("phase") == "Ready" and status.get("readyReplicas") == replicas


def ask(sdk: openai.OpenAI, max_tokens: int = 16) -> str:
    answer = sdk.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=max_tokens, temperature=0)
    return answer.choices[0].message.content


def pod_proxy(cluster, namespace: str, pod: str, port: int, path: str, body: dict | None = None) -> str:
    """A request to one pod through the API server's pod proxy (works on any cluster)."""
    raw = f"/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy{path}"
    if body is None:
        return cluster.kubectl("get", "--raw", raw).stdout
    return cluster.kubectl("create", "--raw", raw, "-f", "-", input=json.dumps(body)).stdout


def inference_count(cluster, namespace: str, pod: str) -> float:
    metrics = pod_proxy(cluster, namespace, pod, 8002, "/metrics")
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("nv_inference_request_success{") and f'model="{MODEL}"' in line)


def exec_in(cluster, namespace: str, pod: str, *command: str, check: bool = True):
    return cluster.kubectl("-n", namespace, "exec", pod, "--", *command, check=check)


# ---------------------------------------------------------------------------------------------- the flow


def test_helm_install_runs_the_operator_and_the_gateway_on_a_real_node(e2e_cluster, release, http):
    namespace = release["namespace"]
    running = pods(e2e_cluster, namespace, "app.kubernetes.io/instance=conch")
    components = Counter(p["metadata"]["labels"]["app.kubernetes.io/component"] for p in running)
    assert components == {"operator": 2, "gateway": 2, "management": 1}
    real = e2e_cluster.real_nodes()
    for pod in running:
        assert is_ready(pod) and pod["spec"]["nodeName"] in real, pod["metadata"]["name"]
    gateway = next(p["metadata"]["name"] for p in running
                   if p["metadata"]["labels"]["app.kubernetes.io/component"] == "gateway")
    assert exec_in(e2e_cluster, namespace, gateway, "id", "-u").stdout.strip() == "10001"
    # The gateway answers through the ingress, with no Model yet.
    listed = http.get("/v1/models")
    assert listed.status_code == 200 and listed.json()["data"] == []


def test_the_chart_s_httproute_serves_the_gateway_through_the_gateway_api(e2e_cluster, release, http):
    """The chart's Gateway API HTTPRoute instead of its Ingress: the controller accepts the route and
    resolves its backend, and the gateway answers at the same address with no Ingress left."""
    # Only on an existing cluster without CONCH_E2E_GATEWAY: the local cluster always has Traefik's Gateway,
    # so `make test` runs this test every time.
    if e2e_cluster.gateway_parent is None:
        pytest.skip("CONCH_E2E_GATEWAY names no Gateway on this cluster")
    namespace = release["namespace"]

    def upgrade(gateway: dict) -> None:
        extra = release["values"].with_name("ways-in.yaml")
        extra.write_text(yaml.safe_dump({"gateway": gateway}))
        e2e_cluster.helm("upgrade", "conch", str(CHART), "-n", namespace, "-f", str(release["values"]),
                         "-f", str(extra), "--wait", "--timeout=120s")

    try:
        # First no way in at all: the controller's own 404 shows the Ingress's route is gone ...
        upgrade({"ingress": {"enabled": False}})
        wait_until(lambda: http.get("/v1/models").status_code == 404, 30, message="the Ingress's route gone")
        # ... so that what answers next came through the HTTPRoute.
        upgrade({"ingress": {"enabled": False},
                 "httpRoute": {"enabled": True, "parentRefs": [e2e_cluster.gateway_parent]}})

        def accepted():
            parents = (e2e_cluster.get("httproute", "conch-gateway", "-n", namespace) or {}).get("status", {}).get(
                "parents", [])
            conditions = {c["type"]: c["status"] for p in parents for c in p.get("conditions", [])}
            return conditions.get("Accepted") == "True" and conditions.get("ResolvedRefs") == "True"

        wait_until(accepted, 60, interval=1, message="the HTTPRoute Accepted with its backend resolved")
        wait_until(lambda: http.get("/v1/models").status_code == 200, 30, message="the gateway through the HTTPRoute")
    finally:  # back to the Ingress, which the rest of the flow uses
        e2e_cluster.helm("upgrade", "conch", str(CHART), "-n", namespace, "-f", str(release["values"]),
                         "--wait", "--timeout=120s")
    assert e2e_cluster.get("httproute", "conch-gateway", "-n", namespace) is None
    wait_until(lambda: http.get("/v1/models").status_code == 200, 30, message="the gateway through the Ingress again")


def test_kubectl_apply_of_the_example_serves_tokens_through_the_ingress(e2e_cluster, models, sdk, http):
    e2e_cluster.kubectl("-n", models, "apply", "-f", str(EXAMPLE))
    wait_until(lambda: model_ready(e2e_cluster, models, 1), 180, interval=1, message="Model Ready on a real pod")
    (pod,) = ready_triton_pods(e2e_cluster, models, 1)
    assert pod["spec"]["nodeName"] in e2e_cluster.real_nodes()
    triton = pod["spec"]["containers"][0]
    assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(triton)
    assert triton["securityContext"]["readOnlyRootFilesystem"] is True
    assert triton["securityContext"]["runAsNonRoot"] is True and triton["securityContext"]["allowPrivilegeEscalation"] is False
    # Really so inside the running container:
    name = pod["metadata"]["name"]
    assert exec_in(e2e_cluster, models, name, "id", "-u").stdout.strip() != "0"
    denied = exec_in(e2e_cluster, models, name, "touch", "/opt/conch/x", check=False)
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr

    wait_until(lambda: http.get("/v1/models").json()["data"], 60,
               message="the gateway routes the Model")
    whole = ask(sdk)
    assert "Paris" in whole
    streamed = "".join(c.choices[0].delta.content or "" for c in sdk.chat.completions.create(
        model=MODEL, messages=CHAT, max_tokens=16, temperature=0, stream=True) if c.choices)
    assert streamed == whole


def test_two_replicas_both_serve(e2e_cluster, models, sdk):
    e2e_cluster.kubectl("-n", models, "scale", "model", MODEL, "--replicas=2")
    wait_until(lambda: model_ready(e2e_cluster, models, 2), 180, interval=1, message="two replicas Ready")
    replicas = [p["metadata"]["name"] for p in ready_triton_pods(e2e_cluster, models, 2)]
    assert len({p for p in replicas}) == 2
    # Each pod answers on its own ...
    for pod in replicas:
        answer = json.loads(pod_proxy(e2e_cluster, models, pod, 8000, f"/v2/models/{MODEL}/generate",
                                      {"text_input": "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
                                                     "<|im_start|>assistant\n", "max_tokens": 8, "temperature": 0.0}))
        assert "Paris" in answer["text_output"], (pod, answer)
    # ... and the gateway's traffic, through the Service, reaches both.
    before = {pod: inference_count(e2e_cluster, models, pod) for pod in replicas}
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: ask(sdk, max_tokens=4), range(32)))
    assert all(answers)
    served = {pod: inference_count(e2e_cluster, models, pod) - before[pod] for pod in replicas}
    assert all(n > 0 for n in served.values()), served


def test_a_triton_pod_killed_mid_stream_ends_the_stream_cleanly_and_is_replaced(e2e_cluster, models, sdk):
    e2e_cluster.kubectl("-n", models, "scale", "model", MODEL, "--replicas=1")
    wait_until(lambda: model_ready(e2e_cluster, models, 1) and ready_triton_pods(e2e_cluster, models, 1), 120,
               interval=1, message="back to one replica")
    (victim,) = [p["metadata"]["name"] for p in ready_triton_pods(e2e_cluster, models, 1)]
    stream = sdk.chat.completions.create(
        model=MODEL, stream=True, max_tokens=1500, temperature=0,  # greedy: 1500 tokens, no early stop
        messages=[{"role": "user", "content": "Write a very long, detailed story about a lighthouse keeper. "
                                              "Use at least 2000 words."}])
    received, error = [], None
    try:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
                if len(received) == 5:
                    e2e_cluster.kubectl("-n", models, "delete", "pod", victim, "--grace-period=0", "--force")
    except openai.APIError as e:  # the dialect's error event, turned into an exception by the SDK
        error = e
    assert len(received) >= 5, "the stream was cut before the pod was killed"
    assert error is not None, f"the stream ended normally after {len(received)} chunks: the kill came too late"
    assert error.body is None or isinstance(error.body, dict), error  # a JSON error event, not a broken read

    wait_until(lambda: model_ready(e2e_cluster, models, 1) and ready_triton_pods(e2e_cluster, models, 1), 180,
               interval=1, message="a replacement pod Ready")
    (replacement,) = [p["metadata"]["name"] for p in ready_triton_pods(e2e_cluster, models, 1)]
    assert replacement != victim
    assert "Paris" in wait_until(lambda: _answer_or_none(sdk), 60, message="the replacement serves")


def _answer_or_none(sdk: openai.OpenAI) -> str | None:
    try:
        return ask(sdk)
    except openai.APIStatusError:
        return None


def test_restarting_the_operator_changes_nothing(e2e_cluster, release, models, sdk):
    namespace = release["namespace"]
    deployment = e2e_cluster.get("deployment", f"{MODEL}-triton", "-n", models)
    triton_pods = {p["metadata"]["uid"] for p in ready_triton_pods(e2e_cluster, models, 1)}
    old = {p["metadata"]["uid"] for p in pods(e2e_cluster, namespace, "app.kubernetes.io/component=operator")}
    e2e_cluster.kubectl("-n", namespace, "delete", "pod", "-l", "app.kubernetes.io/component=operator", "--wait=true")

    def replaced():
        now = pods(e2e_cluster, namespace, "app.kubernetes.io/component=operator")
        return len(now) == 2 and all(is_ready(p) for p in now) and not old & {p["metadata"]["uid"] for p in now}

    wait_until(replaced, 120, interval=1, message="new operator pods Ready")
    time.sleep(10)  # room for a new leader's first reconcile pass to change something, if it would
    after = e2e_cluster.get("deployment", f"{MODEL}-triton", "-n", models)
    assert after["metadata"]["generation"] == deployment["metadata"]["generation"]
    assert after["spec"]["template"] == deployment["spec"]["template"]
    assert {p["metadata"]["uid"] for p in ready_triton_pods(e2e_cluster, models, 1)} == triton_pods
    assert model_ready(e2e_cluster, models, 1)
    assert "Paris" in ask(sdk)


def test_helm_upgrade_to_a_new_image_tag_fails_no_request(e2e_cluster, release, models, sdk):
    namespace = release["namespace"]
    old_tag = e2e_cluster.image_values.get("tag")
    new_tag = e2e_cluster.upgrade_tag or old_tag
    if e2e_cluster.plane is not None:
        e2e_cluster.add_image_tag(old_tag, new_tag)
    triton_before = {p["metadata"]["uid"] for p in ready_triton_pods(e2e_cluster, models, 1)}
    failures, answers, stop = [], [], threading.Event()

    def client_loop():
        while not stop.is_set():
            try:
                answers.append(ask(sdk, max_tokens=4))
            except openai.OpenAIError as e:
                failures.append(repr(e))

    loop = threading.Thread(target=client_loop)
    loop.start()
    try:
        extra = ["--set", f"image.tag={new_tag}"] if new_tag else []
        if new_tag == old_tag:  # an existing cluster without a second tag: force the rollout
            extra += ["--set-string", f"gateway.podAnnotations.e2e-rollout={uuid.uuid4().hex[:6]}"]
        e2e_cluster.helm("upgrade", "conch", str(CHART), "-n", namespace, "-f", str(release["values"]), *extra,
                         "--wait", "--timeout=300s")

        def triton_rolled():
            ready = ready_triton_pods(e2e_cluster, models, 1)
            return (ready and ready[0]["spec"]["containers"][0]["image"].endswith(f":{new_tag}")
                    and model_ready(e2e_cluster, models, 1))

        if new_tag != old_tag:  # the operator hands the new Triton image to the Model's pods
            wait_until(triton_rolled, 240, interval=1, message="Triton rolled to the new image")
            assert not triton_before & {p["metadata"]["uid"] for p in ready_triton_pods(e2e_cluster, models, 1)}
        time.sleep(3)
    finally:
        stop.set()
        loop.join(60)
    for deployment in ("conch-gateway", "conch-operator"):
        image = e2e_cluster.get("deployment", deployment, "-n", namespace)["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image.endswith(f":{new_tag}"), image
    assert len(answers) > 10 and not failures, f"{len(failures)} failed of {len(answers) + len(failures)}: {failures[:3]}"


def test_deleting_the_model_removes_its_pods_and_the_gateway_says_not_found(e2e_cluster, models, http):
    e2e_cluster.kubectl("-n", models, "delete", "model", MODEL)
    wait_until(lambda: not e2e_cluster.get("pods", "-n", models, "-l", TRITON_SELECTOR)["items"], 120,
               interval=1, message="Triton pods gone")
    assert e2e_cluster.get("deployment", f"{MODEL}-triton", "-n", models) is None

    # The model as a resource is 404, and so is an OpenAI request naming it (as OpenAI's API answers);
    # the generate API answers 400 for a model_id it does not serve (the gateway's documented split).
    def not_found():
        resource = http.get(f"/v1/models/{MODEL}")
        return resource.status_code == 404 and resource.json()["error"]["code"] == "MODEL_NOT_FOUND"

    wait_until(not_found, 30, message="404 MODEL_NOT_FOUND through the ingress")
    chat = http.post("/v1/chat/completions", json={"model": MODEL, "messages": CHAT})
    assert chat.status_code == 404 and chat.json()["error"]["code"] == "MODEL_NOT_FOUND", chat.text
    generate = http.post("/v1/generate", json={"model_id": MODEL, "inputs": "What is the capital of France?"})
    assert generate.status_code == 400 and generate.json()["error"]["code"] == "MODEL_NOT_FOUND", generate.text


def test_helm_uninstall_leaves_no_pods(e2e_cluster, release, models):
    namespace = release["namespace"]
    e2e_cluster.helm("uninstall", "conch", "-n", namespace, "--wait", "--timeout=120s")
    wait_until(lambda: not e2e_cluster.get("pods", "-n", namespace)["items"], 60, interval=1,
               message="the release's pods gone")
    assert not e2e_cluster.get("pods", "-n", models)["items"]


def test_nothing_left_the_machine(e2e_cluster):
    """The local cluster's egress guard dropped nothing: every packet to or from the pod, service and
    node ranges stayed on this machine. And it could not have been otherwise: the node has no route
    off the machine, the host forwards nothing, the API server advertises an address of its own."""
    plane = e2e_cluster.plane
    if plane is None:  # an existing cluster (CONCH_E2E_KUBECONFIG); `make test`'s local cluster always checks
        pytest.skip("an existing cluster's network is its own")
    from conch_cluster import hostnet

    net = plane.network
    assert hostnet.guard_installed(net)
    drops = hostnet.guard_drops(net)
    assert set(drops) == {"pods", "services", "node link", "fake pods"} and not any(drops.values()), drops
    routes = hostnet._run("ip", "route", "show", netns=net.netns).stdout
    assert "default" not in routes, routes
    slices = e2e_cluster.get("endpointslices", "-n", "default", "-l", "kubernetes.io/service-name=kubernetes")
    addresses = {a for s in slices["items"] for e in s["endpoints"] for a in e["addresses"]}
    assert addresses == {net.host_ip}
