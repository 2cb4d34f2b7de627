"""The gateway's app factory."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Callable

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from . import __version__
from .backends.triton import TritonClient
from .errors import install_error_handlers
from .observability import Metrics, MetricsMiddleware
from .dependencies import Services
from .registry.base import ModelRegistry, ModelSource
from .routes import api_v1, generate, health, metrics, models, openai, tgi
from .services.api_v1 import ApiV1Service
from .services.embeddings import EmbeddingService
from .services.generate import GenerateService
from .services.generation import GenerationService, TimeLimit
from .services.openai import OpenAIService
from .services.tgi import TGIService
from .settings import Settings

log = logging.getLogger("conch.gateway")

SourceFactory = Callable[[Settings, TritonClient], ModelSource]


def create_app(settings: Settings | None = None, source_factory: SourceFactory | None = None) -> FastAPI:
    """`source_factory` builds the model source from the app's Triton client; by default the
    settings choose it (local file or Kubernetes watch)."""
    settings = settings or Settings()
    triton = TritonClient(pool_size=settings.backend_pool_size)
    registry = ModelRegistry()
    app_metrics = Metrics()
    model_source = (source_factory or source_from_settings)(settings, triton)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await triton.start()
        await model_source.start(registry)
        log.info("serving %d model(s): %s", len(registry.all()), ", ".join(m.id for m in registry.all()) or "none")
        try:
            yield
        finally:
            await model_source.stop()
            await triton.close()

    app = FastAPI(
        title="Conch gateway",
        version=__version__,
        description="One API for quantized LLMs served by Triton: /v1/generate, OpenAI-compatible /v1, "
                    "Hugging Face TGI-compatible routes, /api/v1, health and metrics.",
        lifespan=lifespan,
    )
    time_limit = TimeLimit(settings.inference_timeout_s, settings.inference_timeout_per_token_s)
    generation = GenerationService(triton, time_limit, app_metrics, stream_over_grpc=settings.stream_transport == "grpc")
    app.state.services = Services(
        generate=GenerateService(registry, generation),
        openai=OpenAIService(registry, generation, EmbeddingService(triton, time_limit)),
        tgi=TGIService(registry, generation, settings.default_model),
        api_v1=ApiV1Service(registry, generation, settings.default_model),
        registry=registry,
        triton=triton,
        metrics=app_metrics,
        settings=settings,
    )
    install_error_handlers(app)
    for module in (generate, openai, models, api_v1, tgi, health, metrics):
        app.include_router(module.router)
    app.add_middleware(CORSMiddleware, allow_origins=settings.cors_allow_origins, allow_methods=["*"],
                       allow_headers=["*"], expose_headers=["*"])
    app.add_middleware(MetricsMiddleware, metrics=app_metrics)
    return app


def source_from_settings(settings: Settings, triton: TritonClient) -> ModelSource:
    if settings.model_source == "local":
        from .registry.local import LocalModelSource

        if settings.local_models_file is None:
            raise ValueError("CONCH_LOCAL_MODELS_FILE must name a YAML file of Model resources for the local source")
        return LocalModelSource.from_file(settings.local_models_file, triton.model_ready,
                                          settings.health_probe_interval_s)
    from .registry.kubernetes import KubernetesModelSource

    return KubernetesModelSource(namespace=settings.watch_namespace)
