"""The routing table: which models this gateway serves, where, and whether they are healthy.

A *source* keeps the table current — the local source for the embedded default, the Kubernetes
source by watching `Model` resources. Routes only ever read the table, so a new source plugs in
without touching them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, Protocol

from conch_api import Model, Phase, Runtime, TensorInterface

from ..errors import model_not_found, model_not_ready, no_default_model, unsupported_task
from ..prompts import PromptFormat

HEALTHY = "healthy"
UNHEALTHY = "unhealthy"


@dataclass(frozen=True, slots=True)
class ServedModel:
    id: str
    name: str  # the real model name, reported back in responses
    endpoint: str | None  # Triton base URL
    grpc_address: str | None  # host:port of the same Triton's gRPC endpoint: streams use it when known
    triton_model: str | None
    interface: TensorInterface
    prompt: PromptFormat
    routable: bool  # may requests be sent? (a Model that is not Ready is known but not routable)
    health: str  # "healthy", "unhealthy", or a phase such as "deploying"
    reason: str = ""
    namespace: str | None = None
    supports: tuple[str, ...] = ("completion", "instruct", "chat")
    runtime: str = "external"  # tensorrt-llm, llama-cpp or external

    @property
    def healthy(self) -> bool:
        return self.health == HEALTHY

    def with_health(self, healthy: bool, reason: str = "") -> "ServedModel":
        return replace(self, health=HEALTHY if healthy else UNHEALTHY, reason=reason)


def served_model(model: Model, *, routable: bool | None = None, model_id: str | None = None) -> ServedModel:
    """The routing entry for a `Model` resource, from its spec and status."""
    spec, status = model.spec, model.status
    interface = status.interface or (spec.external.interface if spec.external else TensorInterface.ENSEMBLE)
    endpoint = status.endpoint or (spec.external.url if spec.runtime == Runtime.EXTERNAL and spec.external else None)
    triton_model = status.tritonModel or (spec.external.tritonModel if spec.external else None)
    grpc_address = status.grpcAddress or (spec.external.grpcAddress if spec.external else None)
    ready = status.ready and endpoint is not None and triton_model is not None
    if ready:
        health, reason = HEALTHY, ""
    else:
        cond = status.condition("Ready")
        health = (status.phase or Phase.PENDING).value.lower()
        reason = (cond.message or cond.reason) if cond else "the operator has not reported status yet"
    family = spec.promptFamily.value if spec.promptFamily else None
    return ServedModel(
        id=model_id or model.metadata.name,
        name=model.display_name,
        endpoint=endpoint.rstrip("/") if endpoint else None,
        grpc_address=grpc_address,
        triton_model=triton_model,
        interface=TensorInterface(interface),
        prompt=PromptFormat.for_model(family, spec.chatTemplate),
        routable=ready if routable is None else routable,
        health=health,
        reason=reason,
        namespace=model.metadata.namespace,
        supports=("completion", "instruct", "chat") if TensorInterface(interface).generates_text else ("embeddings",),
        runtime=spec.runtime.value,
    )


class ModelRegistry:
    """The current routing table. Sources write; request handlers read (no I/O, no locks:
    updates swap whole entries on the event loop)."""

    def __init__(self) -> None:
        self._models: dict[str, ServedModel] = {}

    def replace_all(self, models: Iterable[ServedModel]) -> None:
        self._models = {m.id: m for m in models}

    def upsert(self, model: ServedModel) -> None:
        self._models[model.id] = model

    def remove(self, model_id: str) -> None:
        self._models.pop(model_id, None)

    def get(self, model_id: str) -> ServedModel | None:
        return self._models.get(model_id)

    def all(self) -> list[ServedModel]:
        return sorted(self._models.values(), key=lambda m: m.id)

    def resolve(self, model_id: str, param: str = "model_id", *, embeddings: bool = False) -> ServedModel:
        """The model to send a request to, or the error the client should get. `embeddings` says
        whether the route wants an embedding model or a text-generation one."""
        model = self._models.get(model_id)
        if model is None:
            raise model_not_found(model_id, param=param)
        if model.interface.generates_text == embeddings:
            raise unsupported_task(model_id, "embeddings" if embeddings else "text generation",
                                   ", ".join(model.supports), param=param)
        if not model.routable or model.endpoint is None or model.triton_model is None:
            raise model_not_ready(model_id, model.reason or model.health)
        return model


    def resolve_default(self, model_id: str | None, configured: str | None, param: str = "model") -> ServedModel:
        """For APIs without a model field (TGI, /api/v1): the model asked for, else the configured
        default, else the only text-generation model there is."""
        chosen = model_id or configured
        if chosen is None:
            generators = [m.id for m in self._models.values() if m.interface.generates_text]
            if len(generators) != 1:
                raise no_default_model(generators, param=param)
            chosen = generators[0]
        return self.resolve(chosen, param=param)


class ModelSource(Protocol):
    """Keeps a registry current until stopped."""

    async def start(self, registry: ModelRegistry) -> None: ...
    async def stop(self) -> None: ...
