"""/api/config and /api/config/alerts on a real gateway with a state dir: validated, kept in
files that survive a new gateway, and the rule file is in Prometheus' format."""

from __future__ import annotations

import httpx
import pytest
import yaml

from support.stack import make_gateway

from .conftest import all_models

pytestmark = pytest.mark.triton


def test_config_and_alerts_round_trip_and_persist(triton, tmp_path):
    with make_gateway(all_models(triton), monitoring_state_dir=tmp_path) as server, \
            httpx.Client(base_url=server.url) as client:
        assert client.get("/api/config").json()["metrics_retention_s"] == 3600
        assert client.put("/api/config", json={"metrics_retention_s": 600}).status_code == 200
        bad = client.put("/api/config", json={"metrics_retention_s": 1})
        assert bad.status_code == 422 and bad.json()["error"]["code"]
        unknown = client.put("/api/config", json={"nope": 1})
        assert unknown.status_code == 422
        rule = {"name": "HighErrorRate", "expr": "rate(conch_requests_total[1m]) > 1", "for": "1m",
                "severity": "critical", "summary": "too many errors"}
        assert client.post("/api/config/alerts", json=rule).status_code == 201
        assert client.post("/api/config/alerts", json={**rule, "for": "soon"}).status_code == 422
    with make_gateway(all_models(triton), monitoring_state_dir=tmp_path) as server, \
            httpx.Client(base_url=server.url) as client:
        assert client.get("/api/config").json()["metrics_retention_s"] == 600
        assert client.get("/api/config/alerts").json() == [rule]
    written = yaml.safe_load((tmp_path / "alert-rules.yml").read_text())
    assert written["groups"][0]["rules"][0] == {"alert": "HighErrorRate", "expr": rule["expr"], "for": "1m",
                                                "labels": {"severity": "critical"},
                                                "annotations": {"summary": "too many errors"}}


def test_without_a_state_dir_config_lives_in_memory(client):
    assert client.get("/api/config").status_code == 200
    assert client.get("/api/config/alerts").json() == []
