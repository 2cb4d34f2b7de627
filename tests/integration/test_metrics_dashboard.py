"""Every gateway query of the chart's Grafana dashboard names a series (and labels) the real
gateway exports once it has served real requests, streaming and not."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.triton

DASHBOARD = Path(__file__).resolve().parents[2] / "charts" / "conch" / "files" / "dashboards" / "conch.json"
METRIC = re.compile(r"\b(conch_[a-z_]+)\b(?=\s*[{\[)])")
GROUPING = re.compile(r"by\s*\(([^)]*)\)")
SCRAPE_LABELS = {"namespace", "job", "instance", "pod", "le"}


def gateway_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p.get("targets", []) if "$gateway" in t["expr"]]


def test_every_gateway_panel_query_names_an_exported_series(client):
    assert client.post("/v1/completions", json={"model": "smollm2", "prompt": "Hi", "max_tokens": 3}).status_code == 200
    with client.stream("POST", "/v1/chat/completions", json={
            "model": "smollm2", "messages": [{"role": "user", "content": "Count to five."}], "max_tokens": 6,
            "stream": True}) as response:
        assert response.status_code == 200
        response.read()
    # a prompt beyond the context: the backend refuses it, which the backend-errors panel counts
    assert client.post("/v1/generate", json={"model_id": "smollm2", "inputs": "word " * 5000}).status_code == 400
    exported: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            exported.setdefault(sample.name, set()).update(sample.labels)
    exprs = gateway_exprs()
    assert len(exprs) >= 12
    names = {m for e in exprs for m in METRIC.findall(e)}
    assert {"conch_time_to_first_token_seconds_bucket", "conch_inter_token_latency_seconds_bucket",
            "conch_completion_tokens_total", "conch_prompt_tokens_total", "conch_model_waiting",
            "conch_model_in_flight"} <= names
    for expr in exprs:
        metrics = METRIC.findall(expr)
        assert metrics, expr
        labels = set(SCRAPE_LABELS)
        for metric in metrics:
            assert metric in exported, f"{metric} is not exported by the gateway: {expr}"
            labels |= exported[metric]
        for group in GROUPING.findall(expr):
            used = {n.strip() for n in group.split(",") if n.strip()}
            assert used <= labels, f"unknown labels {used - labels} in {expr}"
