"""The routing table: which models this gateway serves, where, and whether they are healthy.

A *source* keeps the table current — the local source for the embedded default, the Kubernetes
source by watching `Model` resources. Routes only ever read the table, so a new source plugs in
without touching them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Protocol, Sequence

from conch_api import Model, Phase, Runtime, TensorInterface
from conch_api.external import url_allowed

from ..errors import model_ambiguous, model_not_found, model_not_ready, no_default_model, redact, unsupported_task
from ..prompts import PromptFormat
from ..templating import Limits

HEALTHY = "healthy"
UNHEALTHY = "unhealthy"
# Model names that clients send when they have no name to give: huggingface_hub's
# InferenceClient(base_url=…) sends "dummy", TGI's own examples "tgi", the /api/v1 API's "default".
# They mean the default model — never a model that happens to have such a name.
PLACEHOLDER_IDS = frozenset({"default", "dummy", "tgi"})


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
    aliases: tuple[str, ...] = ()  # other ids this model answers to (spec.aliases)
    context_tokens: int | None = None  # prompt + generated tokens the model holds (spec.engine.maxSeqLen)
    replicas: int = 1  # ready Triton replicas behind the endpoint (admission control scales with them)
    desired_replicas: int | None = None  # spec.replicas (kubectl scale); None where the source has none
    ready_replicas: int = 0  # status.readyReplicas as reported (0 while none is ready, unlike `replicas`)

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
        # Clients see it (MODEL_NOT_READY): no internal addresses, no build-log tails.
        reason = redact((cond.message or cond.reason) if cond else "the operator has not reported status yet")
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
        aliases=tuple(spec.aliases or ()),
        context_tokens=spec.engine.maxSeqLen if spec.runtime != Runtime.EXTERNAL else None,
        replicas=max(1, status.readyReplicas),
        desired_replicas=spec.replicas,
        ready_replicas=status.readyReplicas,
    )


def refuse_disallowed_url(model: ServedModel, allowlist: Sequence[str]) -> ServedModel:
    """An `external` Model whose URL the admin's allowlist does not cover stays known but is never
    routed to (conch_api.external)."""
    if model.runtime != Runtime.EXTERNAL.value:
        return model
    urls = [u for u in (model.endpoint, model.grpc_address) if u]
    if all(url_allowed(u, allowlist) for u in urls):
        return model
    return replace(model, routable=False, health="refused",
                   reason="its external URL is not allowed by this gateway (CONCH_EXTERNAL_URL_ALLOWLIST)")


log = logging.getLogger("conch.gateway.registry")

# Hooks for monitoring (issue 16, docs/monitoring.md), so the registry needs not know it:
# told the id and new entry (None: gone) of every entry a source wrote, and every model a request resolved to.
ChangeListener = Callable[[str, "ServedModel | None"], None]
ResolveListener = Callable[["ServedModel"], None]


class ModelRegistry:
    """The current routing table. Sources write; request handlers read (no I/O, no locks:
    updates swap whole entries on the event loop)."""

    def __init__(self, default_model: str | None = None, *, external_allowlist: Sequence[str] = (),
                 template_limits: Limits | None = None) -> None:
        self._models: dict[str, ServedModel] = {}
        self._aliases: dict[str, str] = {}
        self._default = default_model  # for requests without a model, or with a placeholder name
        self._allowlist = tuple(external_allowlist)
        self._template_limits = template_limits
        # A Model name held in several namespaces: its entries are `namespace/name`, and the bare
        # name is refused as ambiguous (409) — never "the oldest wins".
        self._ambiguous: dict[str, tuple[str, ...]] = {}
        self._on_change: list[ChangeListener] = []
        self._on_resolve: list[ResolveListener] = []

    def add_change_listener(self, listener: ChangeListener) -> None:
        self._on_change.append(listener)

    def add_resolve_listener(self, listener: ResolveListener) -> None:
        self._on_resolve.append(listener)

    def _changed(self, model_ids: Iterable[str]) -> None:
        for listener in self._on_change:
            for model_id in model_ids:
                try:
                    listener(model_id, self._models.get(model_id))
                except Exception:  # a listener's bug must not break the routing table
                    log.exception("model change listener failed")

    def replace_all(self, models: Iterable[ServedModel], ambiguous: dict[str, tuple[str, ...]] | None = None) -> None:
        before = set(self._models)
        self._models = {m.id: m for m in (self._admit(m) for m in models)}
        self._ambiguous = dict(ambiguous or {})
        self._index_aliases()
        if self._on_change:
            self._changed(sorted(before | set(self._models)))

    def publish(self, name: str, entries: list[ServedModel]) -> None:
        """The entries of every Model called `name`: one (id = name), several (ids namespace/name,
        the bare name ambiguous), or none."""
        touched = [name, *self._ambiguous.pop(name, ())]
        for model_id in touched:
            self._models.pop(model_id, None)
        for entry in entries:
            self._models[entry.id] = self._admit(entry)
        if len(entries) > 1:
            self._ambiguous[name] = tuple(sorted(e.id for e in entries))
        self._index_aliases()
        if self._on_change:
            self._changed(dict.fromkeys([*touched, *(e.id for e in entries)]))

    def _admit(self, model: ServedModel) -> ServedModel:
        """What the gateway's own settings add to an entry: the URL allowlist, the template limits."""
        model = refuse_disallowed_url(model, self._allowlist)
        if self._template_limits is not None and model.prompt.limits != self._template_limits:
            model = replace(model, prompt=replace(model.prompt, limits=self._template_limits))
        return model

    def upsert(self, model: ServedModel) -> None:
        model = self._admit(model)
        before = self._models.get(model.id)
        self._models[model.id] = model
        if model.aliases or (before and before.aliases):
            self._index_aliases()
        if self._on_change:
            self._changed([model.id])

    def remove(self, model_id: str) -> None:
        gone = self._models.pop(model_id, None)
        if gone and gone.aliases:
            self._index_aliases()
        if gone and self._on_change:
            self._changed([model_id])

    def get(self, model_id: str) -> ServedModel | None:
        found = self._models.get(model_id) or self._models.get(self._aliases.get(model_id, ""))
        if found is None and "/" in model_id:  # namespace/name of a Model whose name is unique
            namespace, _, name = model_id.rpartition("/")
            candidate = self._models.get(name)
            if candidate is not None and candidate.namespace == namespace:
                return candidate
        return found

    def _index_aliases(self) -> None:
        # Sorted so that two Models claiming one alias resolve the same way on every replica.
        aliases: dict[str, str] = {}
        for model in sorted(self._models.values(), key=lambda m: m.id):
            for alias in model.aliases:
                if alias not in self._models:
                    aliases.setdefault(alias, model.id)
        self._aliases = aliases

    def all(self) -> list[ServedModel]:
        return sorted(self._models.values(), key=lambda m: m.id)

    def resolve(self, model_id: str, param: str = "model_id", *, embeddings: bool = False,
                missing_status: int = 400) -> ServedModel:
        """The model to send a request to, or the error the client should get. `embeddings` says
        whether the route wants an embedding model or a text-generation one; `missing_status` is
        the status of an unknown model (seed 000 says 400; the OpenAI API answers 404)."""
        model = self.get(model_id)
        if model is None and model_id in PLACEHOLDER_IDS:
            model = self.get(self._default_id(None, param))
        if model is None and model_id in self._ambiguous:
            raise model_ambiguous(model_id, list(self._ambiguous[model_id]))
        if model is None:
            raise model_not_found(model_id, param=param, status=missing_status)
        for listener in self._on_resolve:  # the request is this model's, whatever its answer
            listener(model)
        if model.interface.generates_text == embeddings:
            raise unsupported_task(model_id, "embeddings" if embeddings else "text generation",
                                   ", ".join(model.supports), param=param)
        if not model.routable or model.endpoint is None or model.triton_model is None:
            raise model_not_ready(model_id, model.reason or model.health)
        return model

    def resolve_default(self, model_id: str | None, configured: str | None, param: str = "model", *,
                        embeddings: bool = False) -> ServedModel:
        """For APIs without a model field (TGI, TEI, /api/v1): the model asked for, else the
        configured default, else the only model of the kind the route wants."""
        if model_id is None and embeddings:
            model_id = self._only(embeddings=True, param=param)
        return self.resolve(model_id or self._default_id(configured, param), param=param, embeddings=embeddings)

    def _default_id(self, configured: str | None, param: str) -> str:
        chosen = configured or self._default
        return chosen if chosen is not None else self._only(embeddings=False, param=param)

    def _only(self, *, embeddings: bool, param: str) -> str:
        candidates = [m.id for m in self._models.values() if m.interface.generates_text != embeddings]
        if len(candidates) != 1:
            raise no_default_model(candidates, param=param)
        return candidates[0]


class ModelSource(Protocol):
    """Keeps a registry current until stopped."""

    async def start(self, registry: ModelRegistry) -> None: ...
    async def stop(self) -> None: ...
