"""The gateway's app factory."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Callable

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from .backends.triton import TritonClient
from .errors import install_error_handlers
from .observability import Metrics, MetricsMiddleware
from .registry.base import ModelRegistry, ModelSource
from .routes import generate, health, metrics, models
from .services.generation import GenerationService, TimeLimit
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
        version="0.1.0",
        description="One API for quantized LLMs served by Triton: unified /v1/generate, OpenAI-compatible /v1, health and metrics.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.triton = triton
    app.state.registry = registry
    app.state.metrics = app_metrics
    app.state.generation = GenerationService(
        triton, TimeLimit(settings.inference_timeout_s, settings.inference_timeout_per_token_s), app_metrics
    )
    install_error_handlers(app)
    for module in (generate, models, health, metrics):
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
        return LocalModelSource.from_file(settings.local_models_file, triton, settings.health_probe_interval_s)
    from .registry.kubernetes import KubernetesModelSource

    return KubernetesModelSource(namespace=settings.watch_namespace)
