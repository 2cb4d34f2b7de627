"""A real Prometheus (Debian's `prometheus`, `make system-packages`) scraping a real gateway every
second and evaluating the rule file the gateway writes for POST /api/config/alerts: the rule is
loaded after /-/reload, evaluated healthy and fires, and the gateway, reading Prometheus' alerts,
sends a system_alert on /ws/monitor; /api/monitoring answered from Prometheus counts the requests
the test sent, per route and per model."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable

import httpx
import pytest
import websockets
import yaml

from support import free_port
from support.stack import make_gateway

from .conftest import all_models

pytestmark = pytest.mark.triton

ROUTE = "/v1/models"
SENT = 7
ECHO_OK, FAULT_FAILED = 3, 2  # requests to two models of the real Triton


def _until(check: Callable[[], object], seconds: float, what: str) -> object:
    deadline = time.monotonic() + seconds
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (httpx.HTTPError, KeyError, IndexError) as error:  # not up yet
            last = error
        time.sleep(0.25)
    raise AssertionError(f"{what} within {seconds}s; last: {last!r}")


def _start_prometheus(workdir: Path, gateway_url: str, rule_file: Path) -> tuple[subprocess.Popen, str]:
    binary = shutil.which("prometheus")
    if binary is None:
        raise RuntimeError("prometheus is missing: run `make system-packages` (Debian package prometheus)")
    target = gateway_url.removeprefix("http://")
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "rule_files": [str(rule_file)],
              "scrape_configs": [{"job_name": "conch-gateway", "static_configs": [{"targets": [target]}]}]}
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = subprocess.Popen(
        [binary, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle"],
        stdout=open(workdir / "prometheus.log", "ab"), stderr=subprocess.STDOUT)
    return process, f"http://127.0.0.1:{port}"


def test_alert_rules_and_metrics_through_a_real_prometheus(triton, tmp_path):
    state = tmp_path / "state"
    prom_dir = tmp_path / "prometheus"
    prom_dir.mkdir()
    with make_gateway(all_models(triton), monitoring_state_dir=state) as gateway, \
            httpx.Client(base_url=gateway.url, timeout=30) as client:
        process, prom_url = _start_prometheus(prom_dir, gateway.url, state / "alert-rules.yml")
        try:
            with httpx.Client(base_url=prom_url, timeout=10) as prom:
                _until(lambda: prom.get("/-/ready").status_code == 200, 30, "Prometheus ready")
                for _ in range(SENT):
                    assert client.get(ROUTE).status_code == 200
                for model, text, count in (("echo", "Hi", ECHO_OK), ("fault", "FAIL: on purpose", FAULT_FAILED)):
                    for _ in range(count):
                        status = client.post("/v1/generate", json={"model_id": model, "inputs": text}).status_code
                        assert (status == 200) == (model == "echo"), (model, status)

                rule = {"name": "ConchServedRequests", "expr": f'sum(conch_http_requests_total{{route="{ROUTE}"}}) > 0',
                        "for": "0s", "severity": "info", "summary": "the gateway served requests"}
                assert client.post("/api/config/alerts", json=rule).status_code == 201
                assert prom.post("/-/reload").status_code == 200

                def loaded_rule():
                    groups = prom.get("/api/v1/rules").json()["data"]["groups"]
                    found = [r for g in groups for r in g["rules"] if r["name"] == rule["name"]]
                    return found[0] if found and found[0]["health"] == "ok" and found[0]["state"] == "firing" else None

                loaded = _until(loaded_rule, 20, "the API's rule loaded, healthy and firing")
                assert loaded["query"] == rule["expr"] and loaded["labels"] == {"severity": "info"}

                def scraped_total():
                    result = prom.get("/api/v1/query", params={
                        "query": f'sum(conch_http_requests_total{{route="{ROUTE}"}})'}).json()["data"]["result"]
                    return float(result[0]["value"][1]) if result and float(result[0]["value"][1]) >= SENT else None

                assert _until(scraped_total, 20, "Prometheus scraped the requests") == SENT

                def scraped_models():
                    result = prom.get("/api/v1/query", params={
                        "query": "sum(conch_model_requests_total)"}).json()["data"]["result"]
                    total = float(result[0]["value"][1]) if result else 0
                    return total if total >= ECHO_OK + FAULT_FAILED else None

                assert _until(scraped_models, 20, "Prometheus scraped the per-model counts") == ECHO_OK + FAULT_FAILED

                # /api/monitoring answered from Prometheus once the config names it; same shape.
                assert client.put("/api/config", json={"prometheus_url": prom_url}).status_code == 200
                report = client.get("/api/monitoring/performance", params={"time_range": 300}).json()
                assert report["source"] == "prometheus"
                series = {s["key"]: s for s in report["series"]}
                # Counter at end minus counter at start (absent then: 0), after the last scrape
                # already showed all of them: exactly the requests sent, not increase()'s estimate.
                assert series[ROUTE]["requests"] == SENT
                assert series[ROUTE]["latency"]["avg_s"] > 0 and series[ROUTE]["latency"]["min_s"] is None
                assert series[ROUTE]["errors"] == 0
                assert report["total"]["requests"] >= SENT + ECHO_OK + FAULT_FAILED
                models = {m["key"]: m for m in report["models"]}
                assert set(models) == {"echo", "fault"}
                assert (models["echo"]["requests"], models["echo"]["errors"]) == (ECHO_OK, 0)
                assert (models["fault"]["requests"], models["fault"]["errors"]) == (FAULT_FAILED, FAULT_FAILED)
                assert models["echo"]["latency"]["avg_s"] > 0
                one = client.get("/api/monitoring/performance", params={"time_range": 300, "model_id": "fault"}).json()
                assert one["model_id"] == "fault" and one["source"] == "prometheus"
                assert (one["total"]["requests"], one["total"]["errors"]) == (FAULT_FAILED, FAULT_FAILED)
                assert [(s["key"], s["requests"]) for s in one["series"]] == [("/v1/generate", FAULT_FAILED)]
                assert [m["key"] for m in one["models"]] == ["fault"]

                # The firing rule reaches a WebSocket client as a system_alert, read from Prometheus.
                alert = asyncio.run(_first_alert(gateway.url.replace("http", "ws") + "/ws/monitor"))
                assert alert["type"] == "system_alert"
                assert {k: alert["data"][k] for k in ("name", "severity", "message", "state", "source")} == {
                    "name": rule["name"], "severity": "info", "message": rule["summary"], "state": "firing",
                    "source": "prometheus"}
        finally:
            process.terminate()
            process.wait(15)


async def _first_alert(url: str) -> dict:
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"action": "subscribe", "events": ["system_alerts"]}))
        assert json.loads(await ws.recv())["type"] == "subscribed"
        return json.loads(await asyncio.wait_for(ws.recv(), 10))


def test_an_unreachable_prometheus_is_a_4xx_naming_the_setting(triton, tmp_path):
    with make_gateway(all_models(triton), monitoring_state_dir=tmp_path) as gateway, \
            httpx.Client(base_url=gateway.url, timeout=30) as client:
        closed = f"http://127.0.0.1:{free_port()}"
        assert client.put("/api/config", json={"prometheus_url": closed}).status_code == 200
        answer = client.get("/api/monitoring/metrics")
        assert answer.status_code == 422
        assert answer.json()["error"]["code"] == "INVALID_REQUEST"
        assert answer.json()["error"]["param"] == "prometheus_url"
        for bad in ("ftp://127.0.0.1/", "not a url", "http://"):
            assert client.put("/api/config", json={"prometheus_url": bad}).status_code == 422, bad
        # Unset again: the local history answers.
        assert client.put("/api/config", json={"prometheus_url": None}).status_code == 200
        assert client.get("/api/monitoring/metrics").json()["source"] == "local"
