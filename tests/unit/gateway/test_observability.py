"""Pure parts of the gateway's metrics: a bounded `model` label, route templates for every route
(FastAPI's and plain Starlette's), and generation counts."""

from __future__ import annotations

from fastapi import FastAPI

from conch_gateway.observability import OTHER_MODEL, UNMATCHED_ROUTE, Metrics, ModelLabels, route_template


def test_model_labels_stop_growing_at_the_limit():
    labels = ModelLabels(limit=2)
    assert [labels(m) for m in ("a", "b", "c", "a", "d")] == ["a", "b", OTHER_MODEL, "a", OTHER_MODEL]


def scope(app: FastAPI, path: str, method: str = "GET") -> dict:
    return {"type": "http", "method": method, "path": path, "root_path": "", "app": app}


def test_route_template_for_plain_routes_templates_and_unknown_paths():
    app = FastAPI()

    @app.get("/v1/models/{model_id}")
    async def one(model_id: str) -> None: ...

    assert route_template(scope(app, "/docs")) == "/docs"
    assert route_template(scope(app, "/openapi.json")) == "/openapi.json"
    assert route_template(scope(app, "/v1/models/abc")) == "/v1/models/{model_id}"
    assert route_template(scope(app, "/v1/models/abc", "DELETE")) == "/v1/models/{model_id}"  # 405: still that route
    assert route_template(scope(app, "/wp-login.php")) == UNMATCHED_ROUTE


def test_generation_done_counts_tokens_per_model_and_mode():
    metrics = Metrics()
    metrics.generation_done("m", True, "length", 7, 5)
    metrics.first_token("m", True, 0.2)
    metrics.between_tokens("m", 0.3, 3)
    value = metrics.registry.get_sample_value
    assert value("conch_prompt_tokens_total", {"model": "m", "streaming": "true"}) == 7
    assert value("conch_completion_tokens_total", {"model": "m", "streaming": "true"}) == 5
    assert value("conch_generations_total", {"model": "m", "streaming": "true", "finish_reason": "length"}) == 1
    assert abs(value("conch_inter_token_latency_seconds_sum", {"model": "m"}) - 0.1) < 1e-9  # seconds per token
