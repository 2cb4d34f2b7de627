"""Generation metrics against the real gateway and Triton: after real requests on several
dialects, streaming and not, the per-model series count what the API answered. The gateway is
shared by the session, so every check is a difference between two scrapes."""

from __future__ import annotations

import json

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.triton


def scrape(client: httpx.Client) -> dict[tuple[str, frozenset], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: dict, after: dict, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_non_streaming_openai_counts_the_usage_it_answered(client):
    before = scrape(client)
    answer = client.post("/v1/chat/completions", json={
        "model": "smollm2", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 6,
        "temperature": 0})
    assert answer.status_code == 200
    usage = answer.json()["usage"]
    after = scrape(client)
    labels = {"model": "smollm2", "streaming": "false"}
    assert delta(before, after, "conch_completion_tokens_total", **labels) == usage["completion_tokens"]
    assert delta(before, after, "conch_prompt_tokens_total", **labels) == usage["prompt_tokens"]
    assert delta(before, after, "conch_time_to_first_token_seconds_count", **labels) == 1
    assert delta(before, after, "conch_http_requests_total", method="POST", route="/v1/chat/completions",
                 status="200") == 1


def test_streaming_tgi_counts_tokens_ttft_and_inter_token_latency(client):
    before = scrape(client)
    with client.stream("POST", "/generate_stream", json={
            "inputs": "Name three colours.", "parameters": {"max_new_tokens": 8, "do_sample": False, "details": True}}) as response:
        assert response.status_code == 200
        events = [json.loads(line[len("data:"):]) for line in response.iter_lines() if line.startswith("data:")]
    generated = events[-1]["details"]["generated_tokens"]
    after = scrape(client)
    labels = {"model": "smollm2", "streaming": "true"}
    assert delta(before, after, "conch_completion_tokens_total", **labels) == generated
    assert delta(before, after, "conch_time_to_first_token_seconds_count", **labels) == 1
    # one observation per later response that carried tokens
    assert 1 <= delta(before, after, "conch_inter_token_latency_seconds_count", model="smollm2") <= generated - 1
    assert delta(before, after, "conch_generations_total", model="smollm2", streaming="true",
                 finish_reason="length") == 1


def test_generate_dialect_counts_at_the_same_core(client):
    before = scrape(client)
    answer = client.post("/v1/generate", json={
        "model_id": "smollm2", "inputs": "Hello", "parameters": {"max_new_tokens": 5, "do_sample": False}})
    assert answer.status_code == 200
    after = scrape(client)
    assert delta(before, after, "conch_completion_tokens_total", model="smollm2", streaming="false") >= 1
    assert delta(before, after, "conch_time_to_first_token_seconds_count", model="smollm2", streaming="false") == 1


def test_unknown_model_and_path_create_no_new_series(client):
    assert client.post("/v1/chat/completions", json={
        "model": "no-such-model-x1", "messages": [{"role": "user", "content": "hi"}]}).status_code == 404
    assert client.get("/no/such/path/x2").status_code == 404
    text = client.get("/metrics").text
    assert "no-such-model-x1" not in text and "/no/such/path/x2" not in text
    assert 'route="unmatched"' in text


def test_documentation_routes_are_labelled_by_their_route(client):
    for path in ("/docs", "/openapi.json", "/redoc"):
        assert client.get(path).status_code == 200
    text = client.get("/metrics").text
    for path in ("/docs", "/openapi.json", "/redoc"):
        assert f'route="{path}",status="200"' in text


def test_queue_depth_gauges_are_exported(client):
    client.post("/v1/generate", json={"model_id": "smollm2", "inputs": "Hi", "parameters": {"max_new_tokens": 1}})
    samples = scrape(client)
    for gauge in ("conch_model_in_flight", "conch_model_waiting"):
        assert (gauge, frozenset({("model", "smollm2")})) in samples
