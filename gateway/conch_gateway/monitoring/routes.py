"""Thin routes: /api/system/status, /api/system/gpu, /api/monitoring/metrics, /api/monitoring/performance."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request

from .. import __version__
from ..auth import caller as callers
from ..dependencies import services
from ..errors import ConchError, authorization_failed, invalid_request
from . import aggregate, cluster, gpu, promsource, system
from .alerts import AlertTracker
from .config import RULE_NAME, AlertRule, LocalConfigStore, MonitoringConfig, RemovedAlertRule, StoredAlertRule
from .history import History
from .hub import Hub
from .protocol import GPUStatus, MetricsReport, SystemStatus

router = APIRouter(tags=["monitoring"])


@dataclass
class Monitoring:
    history: History = field(default_factory=History)
    started: float = field(default_factory=time.time)
    store: Any = field(default_factory=lambda: LocalConfigStore(None))  # config.LocalConfigStore or configmap.ConfigMapStore
    authenticator: Any = None  # the gateway's Authenticator; None when auth is off
    hub: Hub = field(default_factory=Hub)
    gpu_interval_s: float = 5.0
    poller: Any = None  # the asyncio task of poller._poll while clients listen
    alerts: AlertTracker = field(default_factory=AlertTracker)


def _monitoring(request: Request) -> Monitoring:
    return request.app.state.monitoring


@router.get("/api/system/status", response_model=SystemStatus, summary="Version, uptime, models by state, host usage")
async def system_status(request: Request) -> SystemStatus:
    models = services(request).registry.all()
    return SystemStatus(version=__version__, uptime_s=time.time() - _monitoring(request).started,
                        models=aggregate.count_states([m.health for m in models]), models_total=len(models),
                        resources=system.resources())


@router.get("/api/system/gpu", response_model=GPUStatus,
            summary="GPUs of the cluster's Nodes (Kubernetes) or of this host (NVML), or why none")
async def system_gpu(request: Request) -> GPUStatus:
    if services(request).settings.model_source == "kubernetes":
        return await cluster.cluster_gpus()
    return gpu.local_gpus()


def _window(start_time: datetime | None, end_time: datetime | None, default_s: float) -> tuple[datetime, datetime]:
    # A time without an offset is read as UTC, so naive and aware times compare.
    start_time, end_time = (t.replace(tzinfo=timezone.utc) if t and t.tzinfo is None else t for t in (start_time, end_time))
    end = end_time or datetime.now(timezone.utc)
    start = start_time or datetime.fromtimestamp(end.timestamp() - default_s, timezone.utc)
    if start >= end:
        raise invalid_request("start_time must be before end_time", param="start_time")
    return start, end


async def _report(request: Request, start: datetime, end: datetime, model_id: str | None = None) -> MetricsReport:
    # Prometheus, when configured, sees every replica and beyond the local bound; same shape.
    prometheus_url = _monitoring(request).store.config().prometheus_url
    if prometheus_url:
        return await promsource.report(prometheus_url, start, end, model_id)
    samples = _monitoring(request).history.between(start.timestamp(), end.timestamp())
    if model_id is not None:  # that model's requests only: its total, its routes, itself
        samples = [s for s in samples if s.model == model_id]
    window_s = end.timestamp() - start.timestamp()
    total, series = aggregate.by_key(samples, window_s)
    return MetricsReport(start_time=start, end_time=end, source="local", model_id=model_id, total=total,
                         series=series, models=aggregate.by_model(samples, window_s))


# A Model's id: a name, or namespace/name where a name is held in several namespaces.
_MODEL_ID = Query(None, min_length=1, max_length=317, description="Only the requests that resolved to this model.")


@router.get("/api/monitoring/metrics", response_model=MetricsReport,
            summary="Requests, error rate, latency and requests/s per route and per model over a window")
async def monitoring_metrics(request: Request, start_time: datetime | None = None, end_time: datetime | None = None,
                             metric_type: str | None = None, interval: str | None = Query(None),
                             model_id: str | None = _MODEL_ID) -> MetricsReport:
    start, end = _window(start_time, end_time, 3600)
    return await _report(request, start, end, model_id)


@router.get("/api/monitoring/performance", response_model=MetricsReport,
            summary="The same figures over the last time_range seconds, optionally for one model's requests only")
async def monitoring_performance(request: Request, model_id: str | None = _MODEL_ID,
                                 time_range: float = Query(3600, gt=0, le=30 * 86400)) -> MetricsReport:
    start, end = _window(None, None, time_range)
    return await _report(request, start, end, model_id)


# Configuration and alert rules --------------------------------------------------------------

def _store(request: Request):
    return _monitoring(request).store


@router.get("/api/config", response_model=MonitoringConfig, summary="The monitoring configuration")
async def get_config(request: Request) -> MonitoringConfig:
    return _store(request).config()


@router.put("/api/config", response_model=MonitoringConfig, summary="Replace the monitoring configuration")
async def put_config(request: Request, config: MonitoringConfig) -> MonitoringConfig:
    await _store(request).put_config(config)
    return config


@router.get("/api/config/alerts", response_model=list[AlertRule], summary="Alert rules (Prometheus rule format)")
async def get_alerts(request: Request) -> list[AlertRule]:
    return _store(request).rules()


@router.post("/api/config/alerts", response_model=StoredAlertRule, status_code=201,
             summary="Add an alert rule; it replaces one of the same name. `storage` says where it is kept "
             "(the ConfigMap, and the PrometheusRule where that CRD exists)")
async def post_alert(request: Request, rule: AlertRule) -> StoredAlertRule:
    written = await _store(request).update_rules(lambda rules: [r for r in rules if r.name != rule.name] + [rule])
    return StoredAlertRule.model_validate({**rule.model_dump(by_alias=True), "storage": written.storage})


def _admin(request: Request) -> None:
    # The auth middleware's ADMIN_ONLY names fixed paths; this one carries the rule's name.
    caller = callers.current()
    if not caller.is_admin:
        raise authorization_failed(f"'{caller.principal}' is not an admin: {request.method} {request.url.path} "
                                   "needs the admin role")


_RULE_NAME = Path(pattern=RULE_NAME, description="The rule's name.")


@router.delete("/api/config/alerts/{name}", response_model=RemovedAlertRule, dependencies=[Depends(_admin)],
               summary="Remove an alert rule (from the ConfigMap and the PrometheusRule alike); 404 if absent")
async def delete_alert(request: Request, name: str = _RULE_NAME) -> RemovedAlertRule:
    def without(rules: list[AlertRule]) -> list[AlertRule]:
        if not any(r.name == name for r in rules):
            raise ConchError(404, "ALERT_RULE_NOT_FOUND", f"no alert rule is named '{name}'", param="name")
        return [r for r in rules if r.name != name]

    written = await _store(request).update_rules(without)
    return RemovedAlertRule(name=name, storage=written.storage)
