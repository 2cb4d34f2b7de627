"""The serving objects of runtime tensorrt-llm, both backends."""

from __future__ import annotations

import pytest

from conch_engines import tensorrt_llm
from conch_operator import render
from conch_operator.manifests import kit
from conch_operator.manifests import tensorrt_llm as tensorrt_llm_manifests
from support.engine_builds import SETTINGS, key_of, model


@pytest.mark.parametrize("tp", [1, 2])
def test_engine_backend_serves_the_ensemble(tp):
    m = model(engine={"tensorParallel": tp}, replicas=2)
    objects = {o["kind"]: o for o in render.desired_objects(m, SETTINGS)}
    assert set(objects) == {"ConfigMap", "Deployment", "Service"}
    key = key_of(m)
    files = tensorrt_llm.ensemble_repository(m.spec, key)
    assert objects["ConfigMap"]["data"] == {path.replace("/", "__"): text for path, text in files.items()}
    deployment = objects["Deployment"]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == "uid-qwen"
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == SETTINGS.trtllm_triton_image
    assert container["command"] == tensorrt_llm.serve_command(m.spec, kit.REPOSITORY_DIR)
    assert (container["command"][0] == "mpirun") == (tp > 1)
    resources = container["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == str(tp)
    assert resources["requests"]["cpu"] and resources["requests"]["memory"]
    assert pod["nodeSelector"]["nvidia.com/gpu.product"] == "NVIDIA-L4"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["cache"]["persistentVolumeClaim"] == {"claimName": "conch-engine-cache", "readOnly": True}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": f"{2 * tp}Gi"}
    assert {"name": "cache", "mountPath": "/cache", "readOnly": True} in container["volumeMounts"]
    probe = container["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] >= 30 * 60
    assert [p["containerPort"] for p in container["ports"]] == [8000, 8001, 8002]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    # The init container assembles the repository: the image's templates, then the ConfigMap's files.
    (init,) = pod["initContainers"]
    assert "/app/all_models/inflight_batcher_llm/." in init["command"][2]
    assert init["command"][4:] == sorted(files)
    items = volumes["config"]["configMap"]["items"]
    assert {i["path"] for i in items} == set(files) and {i["key"] for i in items} == set(objects["ConfigMap"]["data"])
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations[tensorrt_llm_manifests.ENGINE_KEY_ANNOTATION] == key


def test_pytorch_backend_serves_the_llmapi_model():
    m = model(quantization="int4_awq", tensorrtLLM={"backend": "pytorch"},
              source={"huggingFace": {"repoId": "hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4",
                                      "tokenSecretRef": {"name": "hf", "key": "token"}}})
    objects = {o["kind"]: o for o in render.desired_objects(m, SETTINGS)}
    files = tensorrt_llm.llmapi_repository(m.spec, "/models/source")
    assert objects["ConfigMap"]["data"] == {p.replace("/", "__"): t for p, t in files.items()}
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    download, assemble = pod["initContainers"]
    assert download["command"][-3:] == ["hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4", "main", "/models/source"]
    assert {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}} in download["env"]
    assert "/app/all_models/llmapi/." in assemble["command"][2]
    assert not any(v["name"] == "cache" for v in pod["volumes"])  # nothing is built, nothing cached
    assert (render.triton_model(m), render.interface(m).value) == ("tensorrt_llm", "llmapi")
    assert (render.triton_model(model()), render.interface(model()).value) == ("ensemble", "ensemble")

    on_pvc = model(quantization="fp8", tensorrtLLM={"backend": "pytorch"},
                   source={"pvc": {"claimName": "weights", "path": "llama-fp8"}})
    assert tensorrt_llm_manifests.checkpoint_path(on_pvc) == "/models/source/llama-fp8"
    pod = next(o for o in tensorrt_llm_manifests.serving_objects(on_pvc, SETTINGS)
               if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["repository"]


def test_user_resources_keep_the_gpu_count():
    m = model(engine={"tensorParallel": 2}, resources={"requests": {"cpu": "16", "memory": "96Gi", "nvidia.com/gpu": 1},
                                                        "limits": {"memory": "128Gi"}})
    assert tensorrt_llm_manifests.gpu_resources(m, SETTINGS) == {
        "requests": {"cpu": "16", "memory": "96Gi", "nvidia.com/gpu": "2"},
        "limits": {"memory": "128Gi", "nvidia.com/gpu": "2"}}
