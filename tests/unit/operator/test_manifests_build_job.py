"""The engine build Job and the engine cache claim: shared, never owned, on the serving GPU type."""

from __future__ import annotations

import pytest

from conch_engines import tensorrt_llm
from conch_operator.manifests import build_job
from support.engine_builds import JOB, SETTINGS, key_of, model


@pytest.mark.parametrize("tp, product", [(1, "NVIDIA-L4"), (2, "NVIDIA-A100-SXM4-80GB")])
def test_build_job_runs_on_the_serving_gpu_type(tp, product):
    m = model(engine={"tensorParallel": tp}, gpu={"count": tp, "product": product},
              tolerations=[{"key": "team", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}])
    manifest = build_job.build_job(m, key_of(m), 1, SETTINGS, "claim-1")
    key = key_of(m)
    assert manifest["metadata"]["name"] == JOB.format(key=key) and len(manifest["metadata"]["name"]) <= 63
    assert manifest["metadata"]["annotations"][build_job.CLAIM_UID_ANNOTATION] == "claim-1"
    assert "ownerReferences" not in manifest["metadata"]  # shared by every Model with this key and claim
    assert manifest["metadata"]["labels"][build_job.ENGINE_KEY_LABEL] == key
    spec = manifest["spec"]
    assert spec["activeDeadlineSeconds"] == 7200 and spec["backoffLimit"] == 2 and spec["ttlSecondsAfterFinished"] > 0
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["nodeSelector"]["nvidia.com/gpu.product"] == product
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert {"key": "team", "operator": "Equal", "value": "ml", "effect": "NoSchedule"} in pod["tolerations"]
    container = pod["containers"][0]
    assert container["resources"]["requests"]["nvidia.com/gpu"] == container["resources"]["limits"]["nvidia.com/gpu"] == str(tp)
    assert container["command"] == tensorrt_llm.builder_command(m.spec, key, None)
    assert container["image"] == SETTINGS.trtllm_builder_image
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["cache"]["persistentVolumeClaim"] == {"claimName": "conch-engine-cache"}
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    mounts = {v["name"]: v["mountPath"] for v in container["volumeMounts"]}
    assert mounts == {"cache": tensorrt_llm.CACHE_MOUNT, "dshm": "/dev/shm", "tmp": "/tmp"}
    assert pod["securityContext"]["fsGroup"]  # the claim is writable by the non-root builder


def test_build_job_sources_and_overrides():
    gated = model(source={"huggingFace": {"repoId": "meta-llama/Llama-3.1-8B-Instruct",
                                          "tokenSecretRef": {"name": "hf", "key": "token"}}},
                  quantization="int4_awq", images={"engineBuilder": "registry.local/builder:dev"},
                  tensorrtLLM={"buildTimeoutSeconds": 900})
    container = build_job.build_job(gated, key_of(gated), 1, SETTINGS, "claim-1")["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}} in container["env"]
    assert container["image"] == "registry.local/builder:dev"
    assert build_job.build_job(gated, key_of(gated), 1, SETTINGS, "claim-1")["spec"]["activeDeadlineSeconds"] == 900

    local = model(source={"pvc": {"claimName": "weights", "path": "/qwen2-7b"}})
    manifest = build_job.build_job(local, key_of(local), 1, SETTINGS, "claim-1")
    pod = manifest["spec"]["template"]["spec"]
    assert {"name": "source", "persistentVolumeClaim": {"claimName": "weights", "readOnly": True}} in pod["volumes"]
    assert pod["containers"][0]["command"] == tensorrt_llm.builder_command(local.spec, key_of(local),
                                                                            "/models/source/qwen2-7b")
    assert not any(e["name"] == "HF_TOKEN" for e in pod["containers"][0]["env"])


def test_cache_claim_is_shared_and_never_owned():
    claim = build_job.cache_claim(model(tensorrtLLM={"engineCache": {"claimName": "engines", "size": "500Gi",
                                                                 "storageClassName": "nfs", "accessMode": "ReadWriteOnce"}}))
    assert claim["metadata"]["name"] == "engines" and "ownerReferences" not in claim["metadata"]
    assert claim["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "500Gi"}},
                             "storageClassName": "nfs"}
    default = build_job.cache_claim(model())
    assert "storageClassName" not in default["spec"]  # the cluster's default class
    assert default["spec"]["accessModes"] == ["ReadWriteMany"]
