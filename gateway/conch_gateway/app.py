"""The gateway's app factory."""

from __future__ import annotations

import inspect
import logging
from contextlib import asynccontextmanager
from typing import Callable

from fastapi import FastAPI

from . import __version__, templating
from . import docs_ui  # offline docs (issue 13)
from .auth import setup as auth_setup
from .auth.middleware import AuthMiddleware
from .cors import CORSMiddlewareFast  # Starlette's, cheaper without an Origin
from .backends.triton import TritonClient
from .errors import install_error_handlers
from .protocol.errors import ERROR_RESPONSES
from .observability import Metrics, MetricsMiddleware
from .dependencies import Services
from .lifecycle import RequestLifecycle
from .limits.admission import Admission
from .limits.middleware import BodyLimitMiddleware, QuotaMiddleware
from .limits.quotas import Quotas
from .registry.base import ModelRegistry, ModelSource
from .routes import api_v1, auth, generate, health, metrics, models, openai, tei, tgi
from .services.auth import TokenService
from .services.api_v1 import ApiV1Service
from .services.embeddings import EmbeddingService
from .services.generate import GenerateService
from .services.generation import GenerationService, TimeLimit
from .services.openai import OpenAIService
from .services.tei import TEIService
from .services.tgi import TGIService
from .settings import Settings

log = logging.getLogger("conch.gateway")

SourceFactory = Callable[[Settings, TritonClient], ModelSource]


def _telemetry(enabled: bool) -> dict:
    """FastAPI with native telemetry (0.165 here) looks up OpenTelemetry's global providers on every request unless told not to."""
    if enabled or "telemetry" not in inspect.signature(FastAPI).parameters:
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}


def create_app(settings: Settings | None = None, source_factory: SourceFactory | None = None) -> FastAPI:
    """`source_factory` builds the model source from the app's Triton client; by default the
    settings choose it (local file or Kubernetes watch)."""
    settings = settings or Settings()
    triton = TritonClient(pool_size=settings.backend_pool_size)
    registry = ModelRegistry(settings.default_model, external_allowlist=settings.external_url_allowlist,
                             template_limits=templating.Limits(settings.template_timeout_s, settings.template_max_chars))
    app_metrics = Metrics()
    model_source = (source_factory or source_from_settings)(settings, triton)
    authentication = auth_setup.from_settings(settings, app_metrics.registry)
    quotas = Quotas(_shared_quota_store(settings), app_metrics.registry, on_failure=settings.redis_failure)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await triton.start()
        await authentication.start()
        await model_source.start(registry)
        await monitoring_setup.start(app)  # the watched monitoring ConfigMap (issue 16)
        log.info("serving %d model(s): %s", len(registry.all()), ", ".join(m.id for m in registry.all()) or "none")
        try:
            yield
        finally:
            await monitoring_setup.stop(app)
            await model_source.stop()
            await authentication.stop()
            await quotas.close()
            await app.state.session_store.close()  # chat sessions (issue 17)
            await management_setup.close(app)  # model management (issue 16)
            await triton.close()

    app = FastAPI(
        title="Conch gateway",
        version=__version__,
        description="One API for quantized LLMs served by Triton: /v1/generate, OpenAI-compatible /v1, "
                    "Hugging Face TGI-compatible routes, /api/v1, health and metrics.",
        lifespan=lifespan,
        responses=ERROR_RESPONSES,  # every route answers errors in Conch's envelope, not FastAPI's {"detail"}
        docs_url=None, redoc_url=None,  # offline docs: docs_ui serves them from the installed wheel, no CDN
        **_telemetry(settings.opentelemetry),
    )
    docs_ui.install(app)  # offline docs (issue 13)
    time_limit = TimeLimit(settings.inference_timeout_s, settings.inference_timeout_per_token_s,
                           settings.stream_idle_timeout_s)
    admission = Admission(settings.max_in_flight_per_replica, settings.admission_wait_s, app_metrics.registry)
    generation = GenerationService(triton, time_limit, app_metrics, stream_over_grpc=settings.stream_transport == "grpc",
                                   admission=admission)
    embeddings = EmbeddingService(triton, time_limit)
    app.state.services = Services(
        generate=GenerateService(registry, generation),
        openai=OpenAIService(registry, generation, embeddings),
        tgi=TGIService(registry, generation, settings.default_model),
        tei=TEIService(registry, embeddings),
        api_v1=ApiV1Service(registry, generation, settings.default_model),
        registry=registry,
        triton=triton,
        metrics=app_metrics,
        settings=settings,
        auth=TokenService(authentication.authenticator, quotas),
    )
    install_error_handlers(app)
    for module in (generate, openai, models, api_v1, tgi, tei, health, metrics, auth):
        app.include_router(module.router)
    # Monitoring (issue 16, docs/monitoring.md): system/GPU status, the bounded request history,
    # config and alerts, /ws/monitor.
    from .monitoring import setup as monitoring_setup

    monitoring_setup.install(app, settings, registry, authentication.authenticator, app_metrics)
    # Chat sessions (issue 17, docs/sessions.md): seed 002's /chat, /reset, /status, in Redis when set.
    import dataclasses

    from .routes import sessions as session_routes
    from .services.sessions import SessionService
    from .sessions.store import session_store

    app.state.session_store = session_store(settings)
    app.state.services = dataclasses.replace(app.state.services, sessions=SessionService(
        registry, generation, app.state.session_store, settings.default_model, time_limit))
    app.include_router(session_routes.router)
    # Model management (issue 16, docs/management.md): seed 003's /api/models, where it may write.
    from .management import setup as management_setup

    if settings.management:
        management_setup.install(app, settings, registry)
    # Innermost first: a request's lifecycle (client gone, server stopping) is watched around the
    # handler alone; quotas need the caller that auth finds; CORS answers preflights (and adds its
    # headers to 401s) before auth; metrics count every answer, refusals included.
    app.add_middleware(RequestLifecycle)
    if authentication.authenticator is not None:
        app.add_middleware(QuotaMiddleware, quotas=quotas)
        app.add_middleware(AuthMiddleware, authenticator=authentication.authenticator)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s)
    app.add_middleware(CORSMiddlewareFast, allow_origins=settings.cors_allow_origins, allow_methods=["*"],
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


def _shared_quota_store(settings: Settings):
    if settings.redis_url is None:
        return None
    from .limits.redis_store import RedisQuotaStore

    return RedisQuotaStore(settings.redis_url.get_secret_value(), timeout_s=settings.redis_timeout_s)
