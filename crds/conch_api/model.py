"""The `Model` custom resource: one definition shared by the CRD, the operator and the gateway.

Field names are the Kubernetes (camelCase) names. The CRD's OpenAPI schema — descriptions,
bounds, defaults and the CEL rules in `x-kubernetes-validations` — is generated from these
classes (`python -m conch_api.crd`), so what is documented here is what `kubectl explain` shows
and what `kubectl apply` enforces.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

GROUP = "conch.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "Model"
PLURAL = "models"
SINGULAR = "model"
SHORT_NAMES = ("mdl",)

Name = Annotated[str, StringConstraints(min_length=1, max_length=253)]
ModelAlias = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9._]*[a-z0-9])?$", max_length=63),
                      Field(description="A model id: lower-case letters, digits, '-', '.', '_'.")]
Path = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
Quantity = Annotated[str | int, Field(json_schema_extra={"x-kubernetes-int-or-string": True})]


def rules(*pairs: tuple[str, str]) -> dict[str, Any]:
    """CEL validation rules for the generated schema: (rule, message) pairs."""
    return {"x-kubernetes-validations": [{"rule": rule, "message": message} for rule, message in pairs]}


class Runtime(str, Enum):
    TENSORRT_LLM = "tensorrt-llm"
    LLAMA_CPP = "llama-cpp"
    EXTERNAL = "external"


class Quantization(str, Enum):
    INT4_AWQ = "int4_awq"
    INT4_GPTQ = "int4_gptq"
    FP8 = "fp8"
    NONE = "none"


class TensorInterface(str, Enum):
    """Which tensor names the Triton model speaks: TensorRT-LLM's two text-generation interfaces,
    or Conch's sentence-embedding one (`text_input` → `embedding`)."""

    ENSEMBLE = "ensemble"
    LLMAPI = "llmapi"
    EMBEDDING = "embedding"

    @property
    def generates_text(self) -> bool:
        return self is not TensorInterface.EMBEDDING


class TensorRTLLMBackend(str, Enum):
    """How a tensorrt-llm Model is served (both pinned to TensorRT-LLM 1.2.1)."""

    ENGINE = "engine"  # quantize + trtllm-build once by a Job, Triton's inflight_batcher_llm repository
    PYTORCH = "pytorch"  # Triton's llmapi Python model: LLM(**model.yaml) loads the checkpoint itself


class PromptFamily(str, Enum):
    """Chat template family used to render prompts when the Model gives no template of its own."""

    CHATML = "chatml"
    LLAMA3 = "llama3"


class Phase(str, Enum):
    PENDING = "Pending"
    BUILDING = "Building"
    DEPLOYING = "Deploying"
    READY = "Ready"
    STOPPED = "Stopped"
    DEGRADED = "Degraded"
    FAILED = "Failed"


class _Spec(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")


class _Status(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")


class HuggingFaceSource(_Spec):
    """A Hugging Face repository, downloaded by an init container of each replica."""

    repoId: str = Field(description="Repository id, e.g. Qwen/Qwen2-7B-Instruct-GPTQ-Int4.",
                        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=200)
    revision: str = Field("main", description="Branch, tag or commit.", min_length=1, max_length=100)
    filename: str | None = Field(None, description="One file of the repository (required for a GGUF model).",
                                 min_length=1, max_length=500)
    tokenSecretRef: SecretKeyRef | None = Field(None, description="Secret key holding a Hugging Face token, for gated repositories.")


class SecretKeyRef(_Spec):
    """A key of a Secret in the Model's namespace."""

    name: Name = Field(description="Secret name.")
    key: Name = Field(description="Key inside the Secret.")


class PVCSource(_Spec):
    """A path inside a PersistentVolumeClaim, mounted read-only."""

    claimName: Name = Field(description="PersistentVolumeClaim name, in the Model's namespace.")
    path: Path = Field(description="Path of the model file or checkpoint directory inside the volume.")


class FileSource(_Spec):
    """A file already present in the runtime image."""

    path: Path = Field(description="Absolute path of the file in the image.", pattern=r"^/")


class ModelSource(_Spec):
    """Where the weights come from: exactly one of huggingFace, pvc or file."""

    model_config = ConfigDict(json_schema_extra=rules(
        ("[has(self.huggingFace), has(self.pvc), has(self.file)].filter(x, x).size() == 1",
         "set exactly one of source.huggingFace, source.pvc or source.file"),
    ))

    huggingFace: HuggingFaceSource | None = Field(None, description="A Hugging Face repository.")
    pvc: PVCSource | None = Field(None, description="A path inside a PersistentVolumeClaim.")
    file: FileSource | None = Field(None, description="A file inside the runtime image.")


class EngineLimits(_Spec):
    """Engine and context limits."""

    model_config = ConfigDict(json_schema_extra=rules(
        ("self.maxInputLen < self.maxSeqLen", "engine.maxInputLen must be smaller than engine.maxSeqLen"),
    ))

    maxBatchSize: int = Field(8, ge=1, le=1024, description="Largest number of sequences decoded together.")
    maxInputLen: int = Field(2048, ge=16, le=131072, description="Longest prompt, in tokens.")
    maxSeqLen: int = Field(4096, ge=32, le=262144, description="Longest prompt plus generated text, in tokens (the context size).")
    tensorParallel: int = Field(1, ge=1, le=8, description="GPUs one replica shards the model over (tensorrt-llm).")


class EngineCache(_Spec):
    """The PersistentVolumeClaim that keeps built engines, shared by the Models of a namespace.
    An engine is stored in the claim under its cache key, so Models with the same key and the
    same claim reuse it."""

    claimName: Name = Field("conch-engine-cache", description="PersistentVolumeClaim name, in the Model's namespace. "
                            "The operator creates it when missing (and never deletes it).")
    size: Quantity = Field("200Gi", description="Requested size when the operator creates the claim.")
    storageClassName: str | None = Field(None, description="StorageClass when the operator creates the claim; "
                                         "the cluster default when unset.", max_length=253)
    accessMode: Literal["ReadWriteMany", "ReadWriteOnce"] = Field(
        "ReadWriteMany", description="ReadWriteMany lets build Jobs and replicas on different nodes share the cache.")


class TensorRTLLMSpec(_Spec):
    """Options of runtime tensorrt-llm."""

    backend: TensorRTLLMBackend = Field(TensorRTLLMBackend.ENGINE, description="engine: quantize and trtllm-build "
                                        "once (Job, cached), served by the inflight_batcher_llm ensemble. pytorch: "
                                        "Triton's llmapi model loads the (ModelOpt INT4-AWQ or FP8) checkpoint itself.")
    maxNumTokens: int | None = Field(None, ge=64, le=1048576, description="Most tokens batched in one iteration; "
                                     "defaults to engine.maxBatchSize x engine.maxInputLen, capped at 8192.")
    kvCacheFreeGpuMemFraction: float = Field(0.9, ge=0.05, le=0.98, description="Share of the GPU memory left after "
                                             "loading the weights that the paged KV cache takes.")
    enableKvCacheReuse: bool = Field(True, description="Reuse KV-cache blocks across requests sharing a prompt prefix.")
    buildTimeoutSeconds: int = Field(7200, ge=300, le=86400, description="Time limit of one engine build attempt.")
    engineCache: EngineCache = Field(default_factory=EngineCache, description="Where built engines are kept.",
                                     json_schema_extra={"default": {"claimName": "conch-engine-cache", "size": "200Gi",
                                                                    "accessMode": "ReadWriteMany"}})



class LlamaCppSpec(_Spec):
    """Options of runtime llama-cpp (continuous batching; engine.maxBatchSize is the number of slots)."""

    maxQueue: int = Field(64, ge=0, le=4096, description="Requests that may wait for a free slot; more are "
                          "refused at once (Triton UNAVAILABLE, message 'queue full: …').")
    batchInvariant: bool = Field(False, description="Give every request the same greedy or seeded answer whatever "
                                 "it shares the batch with (the KV cache is kept in 8-bit, q8_0, where llama.cpp's "
                                 "attention never changes kernel with the batch shape). Off, a request served alone "
                                 "always gets the same answer, but under concurrency a sequence longer than 256 "
                                 "tokens may get another one (runtimes/llama_cpp/README.md).")
    prefixCache: bool = Field(True, description="Keep each slot's KV cache after a request and reuse the longest "
                              "common prompt prefix (a shared system prompt, earlier chat turns): a shorter time to "
                              "first token. Answers do not change: reuse stops at 256 tokens, below which every "
                              "cached entry has the bits a fresh prefill gives (with batchInvariant, no limit).")


class GPUSpec(_Spec):
    """GPUs each replica needs."""

    count: int = Field(1, ge=0, le=8, description="nvidia.com/gpu requested per replica.")
    product: str | None = Field(None, description="Required node label nvidia.com/gpu.product, e.g. NVIDIA-L4.",
                                pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$", max_length=63)


class ExternalSpec(_Spec):
    """An existing Triton endpoint that the operator only health-checks and publishes."""

    url: str = Field(description="Base URL of the Triton HTTP endpoint, e.g. http://triton.infra:8000.",
                     pattern=r"^https?://[^\s/]+(/.*)?$", max_length=2048)
    grpcAddress: str | None = Field(None, description="host:port of the same Triton's gRPC endpoint, e.g. "
                                    "triton.infra:8001. Streams go over gRPC when it is set, so a client that "
                                    "disconnects cancels generation (Triton cancels only gRPC requests).",
                                    pattern=r"^[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}$", max_length=512)
    tritonModel: Name = Field(description="Name of the model inside that Triton.")
    interface: TensorInterface = Field(TensorInterface.ENSEMBLE, description="Tensor interface the model speaks.")


class ImageOverrides(_Spec):
    """Container images used for this Model instead of the operator's defaults."""

    triton: str | None = Field(None, description="Triton server image.", min_length=1, max_length=512)
    engineBuilder: str | None = Field(None, description="Engine build Job image (tensorrt-llm).", min_length=1, max_length=512)


class Toleration(_Spec):
    """A core/v1 Toleration."""

    key: str | None = Field(None, max_length=316, description="Taint key; empty with operator Exists matches all.")
    operator: Literal["Exists", "Equal"] | None = Field(None, description="Exists or Equal (default).")
    value: str | None = Field(None, max_length=63, description="Taint value, for operator Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(None, description="Taint effect; empty matches all.")
    tolerationSeconds: int | None = Field(None, description="How long a NoExecute taint is tolerated.")


class Resources(_Spec):
    """Compute resources of the Triton container."""

    requests: dict[str, Quantity] | None = Field(None, description="Minimum resources, e.g. cpu: 2, memory: 4Gi.")
    limits: dict[str, Quantity] | None = Field(None, description="Maximum resources.")


class EnvVar(_Spec):
    """An environment variable."""

    name: str = Field(pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$", max_length=256, description="Variable name.")
    value: str | None = Field(None, max_length=32768, description="Variable value.")


class ModelSpec(_Spec):
    """The desired state of a served model."""

    model_config = ConfigDict(json_schema_extra=rules(
        ("self.runtime == oldSelf.runtime", "spec.runtime is immutable; create a new Model instead"),
        ("self.runtime != 'external' || has(self.external)",
         "runtime external needs spec.external (url and tritonModel)"),
        ("self.runtime == 'external' || !has(self.external)", "spec.external is only for runtime external"),
        ("self.runtime == 'external' || has(self.source)", "spec.source is required for runtimes llama-cpp and tensorrt-llm"),
        ("self.runtime != 'external' || !has(self.source)", "runtime external serves no weights of its own: remove spec.source"),
        ("self.runtime != 'tensorrt-llm' || (has(self.gpu) && self.gpu.count >= 1)",
         "runtime tensorrt-llm needs at least one GPU: set spec.gpu.count >= 1"),
        ("self.runtime != 'tensorrt-llm' || !has(self.gpu) || self.gpu.count == self.engine.tensorParallel",
         "spec.gpu.count must equal spec.engine.tensorParallel (one replica spans its tensor-parallel GPUs)"),
        ("self.runtime != 'llama-cpp' || !has(self.gpu) || self.gpu.count == 0",
         "runtime llama-cpp runs on CPU: remove spec.gpu"),
        ("self.runtime == 'tensorrt-llm' || self.quantization == 'none'",
         "quantization int4_awq, int4_gptq and fp8 apply to runtime tensorrt-llm; a GGUF file carries its own quantization"),
        ("self.runtime != 'llama-cpp' || !has(self.source) || "
         "(has(self.source.file) && self.source.file.path.endsWith('.gguf')) || "
         "(has(self.source.pvc) && self.source.pvc.path.endsWith('.gguf')) || "
         "(has(self.source.huggingFace) && has(self.source.huggingFace.filename) && self.source.huggingFace.filename.endsWith('.gguf'))",
         "runtime llama-cpp serves a .gguf file: point source.file.path, source.pvc.path or source.huggingFace.filename at one"),
        ("self.runtime != 'tensorrt-llm' || !has(self.source) || !has(self.source.file)",
         "runtime tensorrt-llm builds from a Hugging Face repository or a PVC checkpoint, not an image file"),
        ("self.runtime == 'tensorrt-llm' || !has(self.tensorrtLLM)", "spec.tensorrtLLM is only for runtime tensorrt-llm"),
        ("self.runtime == 'llama-cpp' || !has(self.llamaCpp)", "spec.llamaCpp is only for runtime llama-cpp"),
        ("self.runtime != 'tensorrt-llm' || !has(self.tensorrtLLM) || self.tensorrtLLM.backend != 'pytorch' || "
         "self.quantization != 'int4_gptq'",
         "the pytorch backend of TensorRT-LLM 1.2.1 loads no GPTQ checkpoints: use backend engine for int4_gptq"),
    ))

    displayName: str | None = Field(None, description="Name shown by the API; defaults to metadata.name.",
                                    min_length=1, max_length=128)
    aliases: list[ModelAlias] | None = Field(None, max_length=16, description="Other model ids the API answers "
                                             "to with this Model (e.g. qwen2 for qwen2-7b-instruct-gptq-int4); a "
                                             "Model's own name wins over another's alias.")
    runtime: Runtime = Field(description="Serving runtime: tensorrt-llm (GPU), llama-cpp (CPU, GGUF) or external. Immutable.")
    source: ModelSource | None = Field(None, description="Where the weights come from (not for runtime external).")
    quantization: Quantization = Field(Quantization.NONE, description="Weight quantization applied when building a tensorrt-llm engine.")
    engine: EngineLimits = Field(default_factory=EngineLimits, description="Engine and context limits.",
                                 json_schema_extra={"default": {"maxBatchSize": 8, "maxInputLen": 2048,
                                                                "maxSeqLen": 4096, "tensorParallel": 1}})
    promptFamily: PromptFamily | None = Field(None, description="Chat template family: chatml (Qwen, SmolLM) or llama3.")
    chatTemplate: str | None = Field(None, description="A Jinja chat template; overrides promptFamily's.",
                                     min_length=1, max_length=65536)
    replicas: int = Field(1, ge=0, le=64, description="Triton replicas; 0 stops the model. kubectl scale sets it.")
    gpu: GPUSpec | None = Field(None, description="GPUs per replica.")
    nodeSelector: dict[str, str] | None = Field(None, description="Node labels the pods require.")
    tolerations: list[Toleration] | None = Field(None, description="Pod tolerations.", max_length=32)
    affinity: dict[str, Any] | None = Field(None, description="Pod affinity (core/v1 Affinity).",
                                            json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})
    resources: Resources | None = Field(None, description="Resources of the Triton container.")
    images: ImageOverrides | None = Field(None, description="Image overrides.")
    env: list[EnvVar] | None = Field(None, description="Extra environment variables of the Triton container.", max_length=64)
    external: ExternalSpec | None = Field(None, description="The existing endpoint, for runtime external.")
    tensorrtLLM: TensorRTLLMSpec | None = Field(None, description="Options of runtime tensorrt-llm (defaults apply when unset).")
    llamaCpp: LlamaCppSpec | None = Field(None, description="Options of runtime llama-cpp (defaults apply when unset).")

    @property
    def trtllm(self) -> TensorRTLLMSpec:
        return self.tensorrtLLM or TensorRTLLMSpec()

    @property
    def llama_cpp(self) -> LlamaCppSpec:
        return self.llamaCpp or LlamaCppSpec()


class Condition(_Status):
    """A standard Kubernetes condition."""

    type: str = Field(description="Ready, Available, EngineReady or Degraded.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field("", description="CamelCase reason for the last transition.")
    message: str = Field("", description="Human-readable details.")
    lastTransitionTime: str | None = Field(None, description="When the status last changed (RFC 3339).")
    observedGeneration: int | None = Field(None, description="metadata.generation this condition was computed from.")


class EngineStatus(_Status):
    """The TensorRT-LLM engine this Model serves (runtime tensorrt-llm, backend engine)."""

    cacheKey: str | None = Field(None, description="Hash of everything that shapes the engine.")
    path: str | None = Field(None, description="Directory of the engine inside the engine cache claim.")
    job: str | None = Field(None, description="Name of the build Job.")
    attempts: int = Field(0, description="Failed build attempts so far.")
    lastFailure: str | None = Field(None, description="Why the last build attempt failed (with its log tail).")
    retryAfter: str | None = Field(None, description="When a failed build is tried again (RFC 3339).")


class ModelStatus(_Status):
    """What the operator observed."""

    phase: Phase | None = Field(None, description="Summary: Pending, Building, Deploying, Ready, Stopped, Degraded or Failed.")
    conditions: list[Condition] = Field(default_factory=list, description="Ready, Available, EngineReady and Degraded.")
    replicas: int = Field(0, description="Triton replicas that exist.")
    readyReplicas: int = Field(0, description="Triton replicas that are ready.")
    endpoint: str | None = Field(None, description="Base URL of the Triton HTTP endpoint serving the model.")
    grpcAddress: str | None = Field(None, description="host:port of the same Triton's gRPC endpoint.")
    tritonModel: str | None = Field(None, description="Name of the model inside Triton.")
    interface: TensorInterface | None = Field(None, description="Tensor interface of that Triton model.")
    observedGeneration: int | None = Field(None, description="Last metadata.generation the operator acted on.")
    selector: str | None = Field(None, description="Label selector of the replicas' pods (scale subresource).")
    engine: EngineStatus | None = Field(None, description="The engine build (runtime tensorrt-llm, backend engine).")

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    @property
    def ready(self) -> bool:
        cond = self.condition("Ready")
        return cond is not None and cond.status == "True"


class ObjectMeta(_Status):
    name: str
    namespace: str | None = None
    generation: int | None = None
    uid: str | None = None
    resourceVersion: str | None = None
    creationTimestamp: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    deletionTimestamp: str | None = None


class Model(_Status):
    apiVersion: str = API_VERSION
    kind: Literal["Model"] = KIND
    metadata: ObjectMeta
    spec: ModelSpec
    status: ModelStatus = Field(default_factory=ModelStatus)

    @property
    def display_name(self) -> str:
        return self.spec.displayName or self.metadata.name


HuggingFaceSource.model_rebuild()
