"""Builds monitoring from the settings and wires it into the app (app.py calls install, start, stop):
the history and its middleware, the config store (a watched ConfigMap in a cluster, files or
memory locally), the registry hooks behind model_status_update and per-model figures, the routes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import FastAPI

from ..registry.base import ModelRegistry
from ..settings import Settings
from .config import LocalConfigStore
from .feed import ModelStatusFeed
from .history import History
from .middleware import HistoryMiddleware, ModelRequestMetrics, note_model
from .routes import Monitoring, router
from .ws import router as ws_router

_POD_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def store_from_settings(settings: Settings):
    if settings.monitoring_config_map is None:
        return LocalConfigStore(settings.monitoring_state_dir)
    from .configmap import ConfigMapStore

    namespace, _, name = settings.monitoring_config_map.rpartition("/")
    namespace = namespace or (_POD_NAMESPACE.read_text().strip() if _POD_NAMESPACE.exists() else None) \
        or settings.watch_namespace or "default"
    copy = None
    if settings.monitoring_prometheus_rule is not None:
        from .prometheusrule import PrometheusRuleCopy

        # Beside the ConfigMap: an owner reference cannot cross namespaces.
        copy = PrometheusRuleCopy(namespace, settings.monitoring_prometheus_rule,
                                  dict(settings.monitoring_prometheus_rule_labels))
    return ConfigMapStore(namespace, name, prometheus_rule=copy)


def install(app: FastAPI, settings: Settings, registry: ModelRegistry, authenticator, metrics) -> None:
    state = Monitoring(history=History(settings.monitoring_history_size), store=store_from_settings(settings),
                       authenticator=authenticator)
    app.state.monitoring = state
    registry.add_change_listener(ModelStatusFeed(state.hub))
    registry.add_resolve_listener(note_model)
    app.include_router(router)
    app.include_router(ws_router)
    app.add_middleware(HistoryMiddleware, history=state.history,
                       model_metrics=ModelRequestMetrics(metrics.registry, metrics.model_label))


async def start(app: FastAPI) -> None:
    store = app.state.monitoring.store
    if hasattr(store, "start"):
        await store.start()


async def stop(app: FastAPI) -> None:
    state = app.state.monitoring
    if state.poller is not None:
        state.poller.cancel()
        await asyncio.gather(state.poller, return_exceptions=True)
    if hasattr(state.store, "stop"):
        await state.store.stop()
