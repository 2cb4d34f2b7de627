"""Seed 003's body ⇄ Model spec: what maps, what is kept, what is refused with its field named."""

import json

import pytest
from pydantic import ValidationError

from conch_api.model import Model
from conch_gateway.management.mapping import ANNOTATION, UnmappableField, merge_spec, status_of, to_item, to_spec
from conch_gateway.management.protocol import ModelCreate


def body(**over):
    base = {"name": "my-model", "display_name": "我的模型", "description": "d", "framework": "llama.cpp",
            "priority": 5, "config": {"model_path": "/models/m.gguf", "n_ctx": 2048, "n_threads": 4},
            "resource_requirements": {"cpu_cores": 4}, "tags": ["production", "chat"]}
    base.update(over)
    return ModelCreate.model_validate(base)


def model(spec, annotations=None, phase=None, conditions=(), replicas=0):
    return Model.model_validate({"metadata": {"name": "my-model", "annotations": annotations or {}}, "spec": spec,
                                 "status": {"phase": phase, "conditions": list(conditions), "replicas": replicas}})


def test_seed_body_maps_to_a_valid_spec_and_keeps_the_rest():
    spec, ann = to_spec(body())
    assert spec == {"runtime": "llama-cpp", "source": {"file": {"path": "/models/m.gguf"}}, "displayName": "我的模型",
                    "engine": {"maxSeqLen": 2048, "maxInputLen": 2047}, "resources": {"requests": {"cpu": "4"}}}
    assert json.loads(ann[ANNOTATION]) == {"description": "d", "tags": ["production", "chat"], "priority": 5,
                                           "n_threads": 4}


def test_round_trip_returns_what_was_created():
    spec, ann = to_spec(body())
    item = to_item(model(spec, ann, phase="Ready", conditions=[{"type": "Ready", "status": "True"}], replicas=1))
    assert (item.id, item.display_name, item.framework, item.status, item.health) == \
        ("my-model", "我的模型", "llama.cpp", "running", "healthy")
    assert item.config == {"model_path": "/models/m.gguf", "n_ctx": 2048, "replicas": 1, "n_threads": 4}
    assert (item.tags, item.priority, item.description) == (["production", "chat"], 5, "d")


@pytest.mark.parametrize("path,source", [
    ("hf://Qwen/Qwen2-0.5B-GGUF/q4.gguf", {"huggingFace": {"repoId": "Qwen/Qwen2-0.5B-GGUF", "filename": "q4.gguf"}}),
    ("pvc://weights/dir/m.gguf", {"pvc": {"claimName": "weights", "path": "dir/m.gguf"}}),
])
def test_model_path_schemes(path, source):
    spec, _ = to_spec(body(config={"model_path": path}))
    assert spec["source"] == source
    assert to_item(model(spec)).config["model_path"] == path


def test_tensorrt_llm_gets_gpus_and_tensor_parallel():
    spec, _ = to_spec(body(framework="tensorrt-llm", config={"model_path": "hf://Qwen/Qwen2-7B"},
                           resource_requirements={"gpu_count": 2}))
    assert spec["gpu"] == {"count": 2} and spec["engine"]["tensorParallel"] == 2


@pytest.mark.parametrize("over,field", [
    ({"framework": "onnx"}, "framework"),
    ({"name": "My_Model"}, "name"),
    ({"config": {"model_path": "/models/m.bin"}}, "config.model_path"),
    ({"config": {"model_path": "relative.gguf"}}, "config.model_path"),
    ({"config": {}}, "config.model_path"),
    ({"config": {"model_path": "/m.gguf", "n_gpu_layers": 32}}, "config.n_gpu_layers"),
    ({"resource_requirements": {"gpu_count": 1}}, "resource_requirements.gpu_count"),
    ({"resource_requirements": {"gpu_memory": 4096}}, "resource_requirements.gpu_memory"),
    ({"framework": "tensorrt-llm", "config": {"model_path": "hf://a/b"}}, "resource_requirements.gpu_count"),
])
def test_unmappable_fields_are_named(over, field):
    with pytest.raises(UnmappableField) as err:
        to_spec(body(**over))
    assert err.value.field == field


def test_unknown_fields_are_refused_not_dropped():
    with pytest.raises(ValidationError) as err:
        body(config={"model_path": "/m.gguf", "temperature": 0.1})
    assert err.value.errors()[0]["loc"] == ("config", "temperature")


@pytest.mark.parametrize("replicas,phase,status", [
    (0, "Ready", "stopped"), (1, "Stopped", "stopped"), (1, "Failed", "error"), (1, "Ready", "running"),
    (1, "Degraded", "running"), (1, "Deploying", "starting"), (1, None, "starting"),
])
def test_status(replicas, phase, status):
    spec, _ = to_spec(body())
    assert status_of(model({**spec, "replicas": replicas}, phase=phase)) == status


def test_an_update_merges_onto_the_spec_and_keeps_what_the_body_cannot_express():
    existing = {"runtime": "tensorrt-llm", "source": {"huggingFace": {"repoId": "org/old", "revision": "main"}},
                "replicas": 3, "gpu": {"count": 1, "product": "NVIDIA-L4"}, "nodeSelector": {"pool": "gpu"},
                "aliases": ["old"], "tolerations": [{"key": "gpu", "operator": "Exists"}],
                "engine": {"maxBatchSize": 16, "maxSeqLen": 4096, "maxInputLen": 2048, "tensorParallel": 1},
                "resources": {"requests": {"cpu": "1", "memory": "8Gi"}, "limits": {"memory": "16Gi"}}}
    mapped, _ = to_spec(body(framework="tensorrt-llm", config={"model_path": "hf://org/new", "n_ctx": 1024},
                             resource_requirements={"gpu_count": 2, "cpu_cores": 2}))
    merged = merge_spec(existing, mapped)
    assert merged == {
        "runtime": "tensorrt-llm", "displayName": "我的模型",
        "source": {"huggingFace": {"repoId": "org/new"}},  # replaced whole: one source, not old + new
        "replicas": 3, "gpu": {"count": 2, "product": "NVIDIA-L4"}, "nodeSelector": {"pool": "gpu"},
        "aliases": ["old"], "tolerations": [{"key": "gpu", "operator": "Exists"}],
        "engine": {"maxBatchSize": 16, "maxSeqLen": 1024, "maxInputLen": 1023, "tensorParallel": 2},
        "resources": {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"memory": "16Gi"}}}
    assert existing["gpu"] == {"count": 1, "product": "NVIDIA-L4"}  # the input is left alone
    # A file source replacing a PVC one leaves no PVC behind.
    assert merge_spec({"source": {"pvc": {"claimName": "c", "path": "m.gguf"}}},
                      {"source": {"file": {"path": "/m.gguf"}}}) == {"source": {"file": {"path": "/m.gguf"}}}
