"""The SDK's retries against the real gateway's own 429 and 503 answers (no mock server): a
credential's quota (429 RATE_LIMIT_EXCEEDED), a model at its admission limit (429 MODEL_OVERLOADED)
and a model Triton has not loaded yet (503 DOWNSTREAM_REQUEST_FAILED: the local model source routes
to Triton and reports its refusal), each with the gateway's Retry-After.
The client waits what Retry-After says (not its own shorter back-off), then succeeds; or gives up
after max_retries with the typed error; the CLI exits 4."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from conch_api import Model
from conch_client import AsyncClient, Client, OverloadedError, RateLimitedError
from conch_engines import repository
from conch_engines.triton_server import TritonPorts, TritonServer
from support import free_port_block, model_resource
from support.auth import bearer, key_entry, write_keys
from support.stack import make_gateway, repository_models

pytestmark = pytest.mark.triton

CONCH = str(Path(sys.executable).with_name("conch"))
BACKOFF_FIRST_S = 0.5  # the SDK's own first back-off: a retry sooner than Retry-After would show it


@pytest.fixture(scope="module")
def loading_triton(tmp_path_factory) -> Iterator[TritonServer]:
    """A Triton in explicit model-control mode with a model `late` in its repository, not loaded."""
    workdir = tmp_path_factory.mktemp("explicit-triton")
    repo = repository.write_repository(workdir / "repository", repository.echo_files("late"))
    server = TritonServer(repo, workdir, TritonPorts.from_http(free_port_block()),
                          extra_args=("--model-control-mode=explicit",))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stack(triton, loading_triton, tmp_path_factory) -> Iterator[dict]:
    limited, limited_entry = key_entry("limited", models=["*"], maxParallel=1)  # one request at a time
    free, free_entry = key_entry("free", models=["*"])
    keys = write_keys(tmp_path_factory.mktemp("keys") / "keys.yaml", [limited_entry, free_entry])
    late = Model.model_validate(model_resource("late", loading_triton.url, "late"))
    # one generation in flight per model, refused at once beyond it (Retry-After: 1)
    with make_gateway(repository_models(triton.url) + [late], auth="on", auth_keys_file=keys,
                      max_in_flight_per_replica=1, admission_wait_s=0) as gateway:
        yield {"url": gateway.url, "limited": limited, "free": free, "loading_triton": loading_triton}


class Attempts:
    """Every answer the client got, retries included (httpx event hooks: what the client saw)."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, int, str | None, str | None]] = []  # (time, status, Retry-After, code)

    def record(self, response: httpx.Response) -> None:
        code = None
        if response.status_code >= 400:
            response.read()
            code = response.json()["error"]["code"]
        self.seen.append((time.monotonic(), response.status_code, response.headers.get("Retry-After"), code))

    async def arecord(self, response: httpx.Response) -> None:
        if response.status_code >= 400:
            await response.aread()
        self.record(response)

    @property
    def statuses(self) -> list[int]:
        return [status for _, status, _, _ in self.seen]

    def gaps(self) -> list[float]:
        return [later[0] - earlier[0] for earlier, later in zip(self.seen, self.seen[1:])]

    def waited_as_told(self) -> None:
        """Each retry came no sooner than the refusal's Retry-After (the SDK's back-off is shorter)."""
        for (_, status, retry_after, _), gap in zip(self.seen, self.gaps()):
            assert status in (429, 503) and retry_after is not None
            assert gap >= float(retry_after) - 0.05 > BACKOFF_FIRST_S, (self.seen, self.gaps())


def in_flight(url: str, model: str) -> float:
    metrics = httpx.get(f"{url}/metrics").text
    found = re.search(rf'^conch_model_in_flight{{model="{model}"}} (\S+)$', metrics, re.M)
    return float(found.group(1)) if found else 0.0


def hold(url: str, key: str, seconds: float) -> threading.Thread:
    """A slow request on the `fault` model (it sleeps when told), running once this returns."""
    body = {"prompt": f"SLEEP: {seconds}", "model": "fault", "max_tokens": 4}
    thread = threading.Thread(target=httpx.post, args=(f"{url}/api/v1/generate",),
                              kwargs={"json": body, "headers": bearer(key), "timeout": 60})
    thread.start()
    deadline = time.monotonic() + 10
    while in_flight(url, "fault") < 1:
        assert time.monotonic() < deadline, "the slow request never started"
        time.sleep(0.02)
    return thread


def test_quota_429_is_retried_after_retry_after_then_succeeds(stack):
    attempts = Attempts()
    busy = hold(stack["url"], stack["limited"], 1.5)
    with Client(stack["url"], stack["limited"], max_retries=4, event_hooks={"response": [attempts.record]}) as client:
        result = client.generate("hello", "fault", 4)
    busy.join()
    assert result.text.strip() == "ok"
    assert attempts.statuses[-1] == 200 and attempts.statuses[0] == 429
    assert {code for _, status, _, code in attempts.seen if status == 429} == {"RATE_LIMIT_EXCEEDED"}
    attempts.waited_as_told()


def test_streams_are_retried_before_they_start(stack):
    attempts = Attempts()
    busy = hold(stack["url"], stack["limited"], 1.5)
    with Client(stack["url"], stack["limited"], max_retries=4, event_hooks={"response": [attempts.record]}) as client:
        events = list(client.generate_stream("hello", "fault", 4))
    busy.join()
    assert events[-1].finished and "".join(e.token for e in events).strip() == "ok"
    assert attempts.statuses[0] == 429 and attempts.statuses[-1] == 200
    attempts.waited_as_told()


def test_retries_run_out_with_the_typed_error_and_the_cli_exits_4(stack):
    attempts = Attempts()
    busy = hold(stack["url"], stack["limited"], 6)
    with Client(stack["url"], stack["limited"], max_retries=1, event_hooks={"response": [attempts.record]}) as client:
        with pytest.raises(RateLimitedError) as refused:
            client.generate("hello", "fault", 4)
    assert (refused.value.status, refused.value.code) == (429, "RATE_LIMIT_EXCEEDED")
    assert attempts.statuses == [429, 429]  # one try and max_retries=1 retry, no more
    attempts.waited_as_told()
    # the CLI retries once too, then says the server is overloaded: exit 4
    cli = subprocess.run([CONCH, "generate", "hello", "--model", "fault", "--max-tokens", "4"], capture_output=True,
                         text=True, timeout=60,
                         env={**os.environ, "CONCH_URL": stack["url"], "CONCH_API_KEY": stack["limited"]})
    assert cli.returncode == 4 and "429 RATE_LIMIT_EXCEEDED" in cli.stderr, cli.stderr
    busy.join()


@pytest.mark.asyncio
async def test_async_client_waits_out_model_overloaded(stack):
    attempts = Attempts()
    busy = hold(stack["url"], stack["free"], 1.5)  # a credential without quota: the model's admission refuses
    async with AsyncClient(stack["url"], stack["free"], max_retries=4,
                           event_hooks={"response": [attempts.arecord]}) as client:
        result = await client.generate("hello", "fault", 4)
        tokens = [e.token async for e in client.generate_stream("hello", "fault", 4)]  # free again: no retry
    busy.join()
    assert result.text.strip() == "ok" and "".join(tokens).strip() == "ok"
    refusals = [(retry_after, code) for _, status, retry_after, code in attempts.seen if status == 429]
    assert refusals and set(refusals) == {("1", "MODEL_OVERLOADED")}
    assert attempts.statuses[-2:] == [200, 200]
    attempts.seen.pop()  # the stream's answer: not a retry
    attempts.waited_as_told()


def test_a_503_is_waited_out_while_triton_loads_the_model(stack):
    """The gateway answers 503 (Retry-After: 5) while Triton has not loaded `late`; once the client has
    seen that answer, the model is loaded into Triton, and the retry 5 s later succeeds."""
    triton: TritonServer = stack["loading_triton"]
    refused = threading.Event()
    attempts = Attempts()

    def saw(response: httpx.Response) -> None:
        attempts.record(response)
        if response.status_code == 503:
            refused.set()

    def load_when_refused() -> None:
        assert refused.wait(30)
        assert httpx.post(f"{triton.url}/v2/repository/models/late/load", timeout=60).status_code == 200

    loader = threading.Thread(target=load_when_refused)
    loader.start()
    try:
        with Client(stack["url"], stack["free"], max_retries=2, event_hooks={"response": [saw]}) as client:
            result = client.generate("hello", "late", 4)
    finally:
        refused.set()
        loader.join()
    assert result.model == "late" and result.text
    assert attempts.statuses[0] == 503 and attempts.statuses[-1] == 200  # [503, 200] unless the load took > 5 s
    assert attempts.seen[0][2:] == ("5", "DOWNSTREAM_REQUEST_FAILED")
    attempts.waited_as_told()
    # and a model that stays away: the retries run out with the typed error
    httpx.post(f"{triton.url}/v2/repository/models/late/unload", timeout=60)
    deadline = time.monotonic() + 10
    while httpx.get(f"{triton.url}/v2/models/late/ready").status_code == 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    with Client(stack["url"], stack["free"], max_retries=0) as client:
        with pytest.raises(OverloadedError) as unavailable:
            client.generate("hello", "late", 4)
    assert (unavailable.value.status, unavailable.value.code) == (503, "DOWNSTREAM_REQUEST_FAILED")
