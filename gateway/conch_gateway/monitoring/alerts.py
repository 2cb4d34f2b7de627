"""system_alert events: which alerts fire, from the local history or from Prometheus.

Without a Prometheus in the configuration the gateway evaluates the API's rules itself (rules.py)
against its own history, keeping Prometheus' `for` semantics (pending until the expression has
held that long). With one, Prometheus evaluates them (and the chart's own rules), and the gateway
reads its active alerts from /api/v1/alerts. Either way a `system_alert` goes out when an alert
starts firing and again, with state "resolved", when it stops."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import httpx

from .config import AlertRule
from .history import History
from .rules import duration_s, parse


@dataclass(frozen=True)
class Active:
    alert_id: str
    name: str
    severity: str
    message: str
    labels: dict[str, str] = field(default_factory=dict)
    source: str = "local"


def alert_id(name: str, labels: dict[str, str]) -> str:
    """The alert's name and labels, as Prometheus names a series: stable across evaluations."""
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}" if inner else name


class AlertTracker:
    """Turns "what holds now" into firing and resolved events; pure apart from the clock it is given."""

    def __init__(self) -> None:
        self._pending: dict[str, float] = {}  # alert id -> since when its expression holds
        self._firing: dict[str, Active] = {}

    def step(self, now: float, holding: Iterable[tuple[Active, float]]) -> list[dict[str, Any]]:
        """`holding`: each alert whose expression holds now, with its `for` in seconds."""
        events, seen = [], set()
        for active, for_s in holding:
            seen.add(active.alert_id)
            since = self._pending.setdefault(active.alert_id, now)
            if active.alert_id not in self._firing and now - since >= for_s:
                self._firing[active.alert_id] = active
                events.append(_event(active, "firing"))
        for gone in [a for a in self._pending if a not in seen]:
            del self._pending[gone]
            ended = self._firing.pop(gone, None)
            if ended is not None:
                events.append(_event(ended, "resolved"))
        return events


def _event(active: Active, state: str) -> dict[str, Any]:
    return {"alert_id": active.alert_id, "name": active.name, "severity": active.severity,
            "message": active.message, "state": state, "labels": active.labels, "source": active.source}


def local_holding(rules: list[AlertRule], history: History, now: float) -> list[tuple[Active, float]]:
    """The API's rules evaluated against the history; rules outside the local subset are skipped."""
    samples = None
    out = []
    for rule in rules:
        local = parse(rule.expr)
        if local is None:
            continue
        if samples is None:
            samples = list(history)
        for key, value in local.evaluate(samples, now).items():
            labels = dict(key)
            message = rule.summary or f"{rule.name}: {rule.expr} (value {value:g})"
            out.append((Active(alert_id(rule.name, labels), rule.name, rule.severity, message, labels),
                        duration_s(rule.for_)))
    return out


async def prometheus_holding(client: httpx.AsyncClient, base: str) -> list[tuple[Active, float]]:
    """Prometheus' firing alerts (it applied `for` already, so they fire here at once)."""
    response = await client.get(f"{base.rstrip('/')}/api/v1/alerts")
    response.raise_for_status()
    out = []
    for alert in response.json()["data"]["alerts"]:
        if alert.get("state") != "firing":
            continue
        labels = dict(alert.get("labels") or {})
        name = labels.pop("alertname", "alert")
        annotations = alert.get("annotations") or {}
        message = annotations.get("summary") or annotations.get("description") or name
        out.append((Active(alert_id(name, labels), name, labels.get("severity", "warning"), message, labels,
                           "prometheus"), 0.0))
    return out
