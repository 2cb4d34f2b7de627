"""The `Model` custom resource: one definition shared by the CRD, the operator and the gateway.

Field names are the Kubernetes (camelCase) names; the CRD's OpenAPI schema is generated from
these classes (`conch_api.crd`), so a field documented here is what `kubectl explain` shows.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

GROUP = "conch.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "Model"
PLURAL = "models"
SINGULAR = "model"
SHORT_NAMES = ("mdl",)


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
    """Which TensorRT-LLM tensor names the Triton model speaks."""

    ENSEMBLE = "ensemble"
    LLMAPI = "llmapi"


class PromptFamily(str, Enum):
    """Chat template family used to render prompts when the Model gives no template of its own."""

    CHATML = "chatml"
    LLAMA3 = "llama3"


class Phase(str, Enum):
    PENDING = "Pending"
    BUILDING = "Building"
    DEPLOYING = "Deploying"
    READY = "Ready"
    DEGRADED = "Degraded"
    FAILED = "Failed"


class _Spec(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", use_enum_values=False)


class _Status(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")


class HuggingFaceSource(_Spec):
    repoId: str = Field(description="Hugging Face repository id, e.g. Qwen/Qwen2-7B-Instruct-GPTQ-Int4.")
    revision: str = Field("main", description="Branch, tag or commit of the repository.")
    filename: str | None = Field(None, description="File inside the repository (required for a GGUF model).")


class PVCSource(_Spec):
    claimName: str = Field(description="PersistentVolumeClaim holding the model.")
    path: str = Field(description="Path of the model file or checkpoint directory inside the volume.")


class FileSource(_Spec):
    path: str = Field(description="Absolute path of a GGUF file already present in the runtime image.")


class ModelSource(_Spec):
    """Where the weights come from. Exactly one of the fields is set."""

    huggingFace: HuggingFaceSource | None = Field(None, description="A Hugging Face repository.")
    pvc: PVCSource | None = Field(None, description="A path inside a PersistentVolumeClaim.")
    file: FileSource | None = Field(None, description="A file inside the runtime image.")


class EngineLimits(_Spec):
    maxBatchSize: int = Field(8, ge=1, le=1024, description="Largest number of sequences decoded together.")
    maxInputLen: int = Field(2048, ge=16, le=131072, description="Longest prompt, in tokens.")
    maxSeqLen: int = Field(4096, ge=32, le=262144, description="Longest prompt plus generated text, in tokens.")
    tensorParallel: int = Field(1, ge=1, le=8, description="GPUs one replica shards the model over.")


class GPUSpec(_Spec):
    count: int = Field(1, ge=0, le=8, description="nvidia.com/gpu per replica.")
    product: str | None = Field(None, description="Required value of the node label nvidia.com/gpu.product, e.g. NVIDIA-L4.")


class ExternalSpec(_Spec):
    url: str = Field(description="Base URL of an existing Triton HTTP endpoint, e.g. http://triton.infra:8000.")
    tritonModel: str = Field(description="Name of the model inside that Triton.")
    interface: TensorInterface = Field(TensorInterface.ENSEMBLE, description="Tensor interface the model speaks.")


class ImageOverrides(_Spec):
    triton: str | None = Field(None, description="Triton server image for this Model's pods.")
    engineBuilder: str | None = Field(None, description="Image of the engine build Job (tensorrt-llm).")


class ModelSpec(_Spec):
    displayName: str | None = Field(None, description="Human-readable model name shown by the API; defaults to metadata.name.")
    runtime: Runtime = Field(description="Serving runtime: tensorrt-llm (GPU), llama-cpp (CPU, GGUF) or external.")
    source: ModelSource | None = Field(None, description="Where the weights come from (not used by external).")
    quantization: Quantization = Field(Quantization.NONE, description="Weight quantization the runtime applies.")
    engine: EngineLimits = Field(default_factory=EngineLimits, description="Engine and context limits.")
    promptFamily: PromptFamily | None = Field(None, description="Chat template family used to render prompts.")
    chatTemplate: str | None = Field(None, description="A Jinja chat template overriding promptFamily.")
    replicas: int = Field(1, ge=0, le=64, description="Number of Triton replicas.")
    gpu: GPUSpec | None = Field(None, description="GPU requirements per replica.")
    nodeSelector: dict[str, str] | None = Field(None, description="Extra node labels the pods require.")
    tolerations: list[dict[str, Any]] | None = Field(None, description="Pod tolerations.")
    affinity: dict[str, Any] | None = Field(None, description="Pod affinity rules.")
    resources: dict[str, Any] | None = Field(None, description="Container resources of the Triton container.")
    images: ImageOverrides | None = Field(None, description="Image overrides.")
    env: list[dict[str, Any]] | None = Field(None, description="Extra environment variables of the Triton container.")
    external: ExternalSpec | None = Field(None, description="The existing endpoint, for runtime external.")


class Condition(_Status):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    lastTransitionTime: str | None = None
    observedGeneration: int | None = None


class ModelStatus(_Status):
    phase: Phase | None = None
    conditions: list[Condition] = Field(default_factory=list)
    replicas: int = 0
    readyReplicas: int = 0
    endpoint: str | None = None
    tritonModel: str | None = None
    interface: TensorInterface | None = None
    observedGeneration: int | None = None
    selector: str | None = None

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
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class Model(_Status):
    apiVersion: str = API_VERSION
    kind: Literal["Model"] = KIND
    metadata: ObjectMeta
    spec: ModelSpec
    status: ModelStatus = Field(default_factory=ModelStatus)

    @property
    def display_name(self) -> str:
        return self.spec.displayName or self.metadata.name
