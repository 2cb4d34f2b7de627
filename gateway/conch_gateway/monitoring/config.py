"""Monitoring configuration and alert rules: validated shapes and the local store.

Locally they live as files in the state dir: `monitoring-config.json`, and `alert-rules.yml` in
Prometheus' own rule-file format, so a Prometheus given `rule_files: [<state dir>/alert-rules.yml]`
evaluates the rules created through the API (reload it with SIGHUP or /-/reload). In a cluster the
same texts are the keys of one ConfigMap every replica watches (configmap.py).

A store reads synchronously (a file, or the watched copy) and writes asynchronously; rules change
through `update_rules`, a read-modify-write that a store makes safe against concurrent writers."""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
RULE_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"  # a Prometheus alert name


class MonitoringConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # An http(s) base URL only: /api/monitoring queries it, so anything else must be refused here.
    # Explicit ranges, not \s: the OpenAPI document's (ECMA) \s and pydantic's (Unicode) differ on
    # characters such as U+0085, and the document must refuse exactly what the route refuses.
    prometheus_url: str | None = Field(None, pattern=r"^https?://[^\x00-\x20\x7f-\x9f/?#]+(/[^\x00-\x20\x7f-\x9f?#]*)?$",
                                       max_length=2000,
                                       description="Prometheus HTTP API base URL (http or https); the local "
                                       "history when unset.")
    metrics_retention_s: int = Field(3600, ge=60, le=30 * 86400, description="Default window of /api/monitoring.")
    gpu_poll_interval_s: float = Field(5.0, ge=1, le=300, description="How often /ws/monitor sends gpu_metrics_update.")


class AlertRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=RULE_NAME, description="Prometheus alert name.")
    expr: str = Field(min_length=1, max_length=4000, description="PromQL expression; the alert fires while it has results.")
    # A pattern (not a validator) so the OpenAPI document states the rule too.
    for_: str = Field("0s", alias="for", pattern=_DURATION.pattern,
                      description="How long expr must hold, as a Prometheus duration (5m).")
    severity: Literal["info", "warning", "critical"] = "warning"
    summary: str = Field("", max_length=1000)

    def as_prometheus(self) -> dict:
        return {"alert": self.name, "expr": self.expr, "for": self.for_,
                "labels": {"severity": self.severity}, "annotations": {"summary": self.summary}}


class RuleStorage(BaseModel):
    """Where a change of the rules was kept, so a caller knows whether Prometheus will see it."""

    config: str = Field(description="The store: `configmap <namespace>/<name>`, `file <path>` or `memory`.")
    prometheus_rule: str | None = Field(None, description="namespace/name of the PrometheusRule "
                                        "(monitoring.coreos.com/v1) holding every rule, when one was written.")
    note: str | None = Field(None, description="Why no PrometheusRule holds the rules, when none does.")


class StoredAlertRule(AlertRule):
    storage: RuleStorage


class RemovedAlertRule(BaseModel):
    name: str
    storage: RuleStorage


@dataclass(frozen=True)
class RulesWritten:
    rules: list[AlertRule]
    storage: RuleStorage


def rule_file(rules: list[AlertRule]) -> dict:
    return {"groups": [{"name": "conch-api", "rules": [r.as_prometheus() for r in rules]}]}


CONFIG_KEY, RULES_KEY, RULE_FILE_KEY = "monitoring-config.json", "alert-rules.json", "alert-rules.yml"
RulesChange = Callable[[list[AlertRule]], list[AlertRule]]


def config_text(config: MonitoringConfig) -> str:
    return config.model_dump_json(indent=2)


def rules_texts(rules: list[AlertRule]) -> dict[str, str]:
    """The API's own view (aliases kept) and Prometheus' rule file."""
    return {RULES_KEY: json.dumps([r.model_dump(by_alias=True) for r in rules]),
            RULE_FILE_KEY: yaml.safe_dump(rule_file(rules), sort_keys=False)}


def parse_config(text: str | None) -> MonitoringConfig:
    return MonitoringConfig() if text is None else MonitoringConfig.model_validate_json(text)


def parse_rules(text: str | None) -> list[AlertRule]:
    return [] if text is None else [AlertRule.model_validate(r) for r in json.loads(text)]


class LocalConfigStore:
    """Files in the state dir, replaced atomically so Prometheus never reads half a rule file.
    Without a state dir the same texts are kept in memory only (lost on restart, no rule file)."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._memory: dict[str, str] = {}

    def config(self) -> MonitoringConfig:
        return parse_config(self._read(CONFIG_KEY))

    async def put_config(self, config: MonitoringConfig) -> None:
        self._write(CONFIG_KEY, config_text(config))

    def rules(self) -> list[AlertRule]:
        return parse_rules(self._read(RULES_KEY))

    async def update_rules(self, change: RulesChange) -> RulesWritten:
        # No await between read and write: one event loop, so no other writer in between.
        rules = change(self.rules())
        for name, text in rules_texts(rules).items():
            self._write(name, text)
        if self.directory is None:
            storage = RuleStorage(config="memory", note="no Kubernetes here and no CONCH_MONITORING_STATE_DIR: "
                                  "the rules live in this process only and no rule file is written")
        else:
            storage = RuleStorage(config=f"file {self.directory / RULE_FILE_KEY}",
                                  note="no Kubernetes here: point Prometheus' rule_files at the rule file")
        return RulesWritten(rules, storage)

    def _read(self, name: str) -> str | None:
        if self.directory is None:
            return self._memory.get(name)
        path = self.directory / name
        return path.read_text() if path.exists() else None

    def _write(self, name: str, text: str) -> None:
        if self.directory is None:
            self._memory[name] = text
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, self.directory / name)
