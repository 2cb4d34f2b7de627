"""The Model CRD on a real kube-apiserver: valid specs apply, invalid ones are refused at
`kubectl apply` time by the OpenAPI schema and its CEL rules, with a message that says why."""

from __future__ import annotations

import copy

import pytest

from support.k8s import model_manifest

pytestmark = pytest.mark.k8s

GGUF = {"file": {"path": "/models/smollm2.gguf"}}
TRT = {"runtime": "tensorrt-llm", "source": {"huggingFace": {"repoId": "Qwen/Qwen2-7B-Instruct-GPTQ-Int4"}},
       "quantization": "int4_gptq", "gpu": {"count": 1}}
EXTERNAL = {"runtime": "external", "external": {"url": "http://triton.infra:8000", "tritonModel": "ensemble"}}

VALID = {
    "llama-cpp file": {"source": GGUF, "promptFamily": "chatml"},
    "llama-cpp pvc": {"source": {"pvc": {"claimName": "models", "path": "smollm2/model.gguf"}}},
    "llama-cpp hugging face": {"source": {"huggingFace": {"repoId": "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF",
                                                          "filename": "smollm2-135m-instruct-q4_k_m.gguf",
                                                          "tokenSecretRef": {"name": "hf", "key": "token"}}}},
    "external": EXTERNAL,
    "external with grpc": {**EXTERNAL, "external": {**EXTERNAL["external"], "grpcAddress": "triton.infra:8001",
                                                    "interface": "embedding"}},
    "tensorrt-llm gptq": TRT,
    "tensorrt-llm awq, everything set": {
        "runtime": "tensorrt-llm", "displayName": "Llama-3.1-8B-Instruct-AWQ-INT4", "quantization": "int4_awq",
        "source": {"pvc": {"claimName": "checkpoints", "path": "/llama-3.1-8b"}},
        "engine": {"maxBatchSize": 16, "maxInputLen": 4096, "maxSeqLen": 8192, "tensorParallel": 2},
        "gpu": {"count": 2, "product": "NVIDIA-A100-SXM4-80GB"}, "promptFamily": "llama3", "replicas": 2,
        "nodeSelector": {"pool": "gpu"}, "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        "resources": {"requests": {"cpu": 4, "memory": "32Gi"}, "limits": {"nvidia.com/gpu": 2}},
        "env": [{"name": "NCCL_DEBUG", "value": "WARN"}], "images": {"triton": "nvcr.io/nvidia/tritonserver:25.10-trtllm-python-py3"},
    },
    "tensorrt-llm pytorch backend, fp8": {**TRT, "quantization": "fp8", "tensorrtLLM": {
        "backend": "pytorch", "maxNumTokens": 4096, "kvCacheFreeGpuMemFraction": 0.8, "enableKvCacheReuse": False}},
    "tensorrt-llm own engine cache": {**TRT, "tensorrtLLM": {"buildTimeoutSeconds": 3600, "engineCache": {
        "claimName": "engines", "size": "500Gi", "storageClassName": "fast-rwx", "accessMode": "ReadWriteOnce"}}},
    "stopped": {"source": GGUF, "replicas": 0},
}


@pytest.mark.parametrize("spec", VALID.values(), ids=VALID.keys())
def test_valid_specs_are_accepted(kubectl, spec):
    kubectl.apply(model_manifest("m", **copy.deepcopy(spec)))
    model = kubectl.model("m")
    assert model["spec"]["engine"]["maxSeqLen"] >= 32  # defaults filled in by the API server
    assert model["spec"]["quantization"] in ("none", spec.get("quantization"))


def llama(**changes):
    return {"runtime": "llama-cpp", "source": GGUF, **changes}


def trt(**changes):
    return {**copy.deepcopy(TRT), **changes}


INVALID = {
    "no runtime": ({"source": GGUF, "runtime": None}, "spec.runtime: Required value"),
    "unknown runtime": (llama(runtime="vllm"), 'Unsupported value: "vllm"'),
    "llama-cpp without source": ({"runtime": "llama-cpp", "source": None}, "spec.source is required"),
    "two sources": (llama(source={**GGUF, "pvc": {"claimName": "m", "path": "x.gguf"}}), "exactly one of source"),
    "empty source": (llama(source={}), "exactly one of source"),
    "file that is not gguf": (llama(source={"file": {"path": "/models/model.safetensors"}}), "serves a .gguf file"),
    "pvc path not gguf": (llama(source={"pvc": {"claimName": "m", "path": "weights/"}}), "serves a .gguf file"),
    "hugging face without file": (llama(source={"huggingFace": {"repoId": "a/b"}}), "serves a .gguf file"),
    "quantization on llama-cpp": (llama(quantization="int4_awq"), "apply to runtime tensorrt-llm"),
    "gpu on llama-cpp": (llama(gpu={"count": 1}), "runs on CPU"),
    "external without endpoint": ({"runtime": "external", "source": None}, "needs spec.external"),
    "external with source": ({**EXTERNAL, "source": GGUF}, "serves no weights"),
    "external url without scheme": ({**EXTERNAL, "external": {"url": "triton:8000", "tritonModel": "m"}},
                                    "spec.external.url"),
    "external without model": ({**EXTERNAL, "external": {"url": "http://t:8000"}}, "spec.external.tritonModel: Required"),
    "external grpc address without port": ({**EXTERNAL, "external": {**EXTERNAL["external"], "grpcAddress": "triton"}},
                                           "spec.external.grpcAddress"),
    "external grpc address as a URL": ({**EXTERNAL, "external": {**EXTERNAL["external"],
                                                                 "grpcAddress": "http://triton:8001"}},
                                       "spec.external.grpcAddress"),
    "external block on llama-cpp": (llama(external=EXTERNAL["external"]), "only for runtime external"),
    "tensorrt-llm without gpu": (trt(gpu=None), "needs at least one GPU"),
    "tensorrt-llm zero gpus": (trt(gpu={"count": 0}), "needs at least one GPU"),
    "tensor parallel without the gpus": (trt(engine={"tensorParallel": 2}), "must equal spec.engine.tensorParallel"),
    "tensorrt-llm from an image file": (trt(source={"file": {"path": "/models/x"}}), "not an image file"),
    "unknown quantization": (trt(quantization="int8"), 'Unsupported value: "int8"'),
    "negative replicas": (llama(replicas=-1), "spec.replicas: Invalid value: -1"),
    "too many replicas": (llama(replicas=65), "spec.replicas: Invalid value: 65"),
    "replicas as text": (llama(replicas="two"), "spec.replicas: Invalid value"),
    "input not shorter than context": (llama(engine={"maxInputLen": 4096, "maxSeqLen": 4096}), "smaller than engine.maxSeqLen"),
    "zero batch": (llama(engine={"maxBatchSize": 0}), "spec.engine.maxBatchSize"),
    "tensor parallel 9": (trt(engine={"tensorParallel": 9}), "spec.engine.tensorParallel"),
    "bad repo id": (trt(source={"huggingFace": {"repoId": "not a repo"}}), "spec.source.huggingFace.repoId"),
    "relative file path": (llama(source={"file": {"path": "models/x.gguf"}}), "spec.source.file.path"),
    "unknown prompt family": (llama(promptFamily="alpaca"), 'Unsupported value: "alpaca"'),
    "bad toleration operator": (llama(tolerations=[{"key": "k", "operator": "Maybe"}]), 'Unsupported value: "Maybe"'),
    "bad env name": (llama(env=[{"name": "1 BAD", "value": "x"}]), "spec.env[0].name"),
    "gpu product with spaces": (trt(gpu={"count": 1, "product": "NVIDIA A100"}), "spec.gpu.product"),
    "empty display name": (llama(displayName=""), "spec.displayName"),
    "empty chat template": (llama(chatTemplate=""), "spec.chatTemplate"),
    "unknown field": (llama(maxTokens=5), 'unknown field "spec.maxTokens"'),
    "negative gpu count": (trt(gpu={"count": -1}), "spec.gpu.count"),
    "tensorrtLLM block on llama-cpp": (llama(tensorrtLLM={"backend": "engine"}), "only for runtime tensorrt-llm"),
    "gptq on the pytorch backend": (trt(tensorrtLLM={"backend": "pytorch"}), "loads no GPTQ checkpoints"),
    "unknown tensorrt-llm backend": (trt(tensorrtLLM={"backend": "tensorrt"}), 'Unsupported value: "tensorrt"'),
    "kv cache fraction of 1": (trt(tensorrtLLM={"kvCacheFreeGpuMemFraction": 1}), "spec.tensorrtLLM.kvCacheFreeGpuMemFraction"),
    "build timeout too short": (trt(tensorrtLLM={"buildTimeoutSeconds": 60}), "spec.tensorrtLLM.buildTimeoutSeconds"),
    "engine cache access mode": (trt(tensorrtLLM={"engineCache": {"accessMode": "ReadOnlyMany"}}),
                                 'Unsupported value: "ReadOnlyMany"'),
}


@pytest.mark.parametrize("spec, message", INVALID.values(), ids=INVALID.keys())
def test_invalid_specs_are_refused_with_a_reason(kubectl, spec, message):
    spec = copy.deepcopy(spec)
    manifest = model_manifest("m", **{k: v for k, v in spec.items() if v is not None})
    for removed in [k for k, v in spec.items() if v is None]:
        manifest["spec"].pop(removed, None)
    result = kubectl.apply(manifest, check=False)
    assert result.returncode != 0, f"accepted: {spec}"
    assert message in result.stderr, result.stderr
    assert kubectl.model("m") is None


@pytest.mark.parametrize("name, message", [
    ("a.b", "DNS-1035 label"),
    ("x" * 51, "at most 50 characters"),
    ("9lives", "DNS-1035 label"),
])
def test_model_names_must_fit_service_names(kubectl, name, message):
    result = kubectl.apply(model_manifest(name, source=GGUF), check=False)
    assert result.returncode != 0 and message in result.stderr, result.stderr


def test_runtime_is_immutable(kubectl):
    kubectl.apply(model_manifest("m", source=GGUF))
    result = kubectl.apply(model_manifest("m", **EXTERNAL), check=False)
    assert result.returncode != 0 and "spec.runtime is immutable" in result.stderr, result.stderr


def test_explain_describes_fields(kubectl):
    explained = kubectl("explain", "model.spec.engine.maxSeqLen").stdout
    assert "Longest prompt plus generated text" in explained
    assert "Where the weights come from" in kubectl("explain", "model.spec.source").stdout


def test_short_name_and_columns(kubectl):
    kubectl.apply(model_manifest("m", source=GGUF))
    table = kubectl("get", "mdl").stdout.splitlines()
    assert table[0].split() == ["NAME", "RUNTIME", "QUANTIZATION", "READY", "DESIRED", "PHASE", "ENDPOINT", "AGE"]
    assert table[1].split()[:3] == ["m", "llama-cpp", "none"]
