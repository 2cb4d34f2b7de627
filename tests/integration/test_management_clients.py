"""The `conch` CLI's management commands and the Python SDK's management calls (sync and async)
against seed 003's management API of a real local gateway (authentication on) over a real Triton in
explicit model-control mode, as `make up` runs them: output formats, exit codes, typed errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest
import yaml

from conch_client import (Accepted, AsyncClient, ConchError, LLMInferenceClient, NotFoundError, UnauthorizedError,
                          ValidationError)
from support import default_interrupt, free_port
from support.management import PASSWORD, USERNAME, ManagementStack, management_stack

pytestmark = pytest.mark.triton

CONCH = str(Path(sys.executable).with_name("conch"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[ManagementStack]:
    with management_stack(tmp_path_factory.mktemp("state")) as running:
        yield running


def conch(stack: ManagementStack, *args: str, key: str | None = "admin", stdin: str | None = None,
          url: str | None = None) -> subprocess.CompletedProcess:
    """The installed `conch`, finding the server and key from the environment as a script would."""
    api_key = {"admin": stack.admin_key, "user": stack.user_key}.get(key, key) if key else ""
    env = {**os.environ, "CONCH_URL": url or stack.url, "CONCH_API_KEY": api_key}
    env.pop("CONCH_PASSWORD", None)
    # a new session: no controlling terminal, so a hidden prompt reads the pipe (not the tester's tty)
    return subprocess.run([CONCH, *args], capture_output=True, text=True, timeout=180, env=env, input=stdin,
                          start_new_session=True)


def as_json(done: subprocess.CompletedProcess):
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def wait_status(stack: ManagementStack, name: str, status: str, timeout: float = 90) -> dict:
    with httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {stack.admin_key}"}) as api:
        deadline = time.monotonic() + timeout
        while True:
            item = api.get(f"/api/models/{name}").json()
            if item.get("status") == status or time.monotonic() > deadline:
                assert item.get("status") == status, item
                return item
            time.sleep(0.2)


# The CLI ---------------------------------------------------------------------------------------

def test_cli_keys_token_then_use_it(stack):
    token = as_json(conch(stack, "-o", "json", "keys", "token", "--username", USERNAME, "--password", PASSWORD, key=None))
    assert token["token_type"].lower() == "bearer" and token["access_token"]
    # the token works as CONCH_API_KEY
    item = as_json(conch(stack, "-o", "json", "models", "get", "smollm2", key=token["access_token"]))
    assert item["id"] == "smollm2"
    # prompted for (the password hidden) when not given: here from a pipe, as `expect` or a script would
    prompted = conch(stack, "keys", "token", key=None, stdin=f"{USERNAME}\n{PASSWORD}\n")
    assert prompted.returncode == 0, prompted.stderr
    assert "access_token: " in prompted.stdout and PASSWORD not in prompted.stdout
    wrong = conch(stack, "keys", "token", "--username", USERNAME, "--password", "wrong", key=None)
    assert wrong.returncode == 1 and "AUTHENTICATION_FAILED" in wrong.stderr and not wrong.stdout


def test_cli_models_get_and_list_in_every_format(stack):
    item = as_json(conch(stack, "-o", "json", "models", "get", "smollm2"))
    assert (item["framework"], item["status"], item["health"]) == ("llama.cpp", "running", "healthy")
    assert yaml.safe_load(conch(stack, "-o", "yaml", "models", "get", "smollm2").stdout)["config"] == item["config"]
    table = conch(stack, "models", "get", "smollm2")
    assert "status: running" in table.stdout.splitlines() and "framework: llama.cpp" in table.stdout.splitlines()
    managed = conch(stack, "models", "list", "--managed", "--status", "running")
    header, *rows = managed.stdout.splitlines()
    assert header.split("\t")[:3] == ["ID", "STATUS", "HEALTH"]
    assert ["smollm2", "running", "healthy"] in [row.split("\t")[:3] for row in rows]
    assert as_json(conch(stack, "-o", "json", "models", "list", "--managed", "--status", "stopped")) == []


def test_cli_exit_codes(stack):
    missing = conch(stack, "models", "get", "nope")
    assert missing.returncode == 1 and "404 MODEL_NOT_FOUND" in missing.stderr
    anonymous = conch(stack, "models", "get", "smollm2", key=None)
    assert anonymous.returncode == 1 and "AUTHENTICATION_FAILED" in anonymous.stderr
    not_admin = conch(stack, "models", "stop", "smollm2", key="user")
    assert not_admin.returncode == 1 and "AUTHORIZATION_FAILED" in not_admin.stderr
    unreachable = conch(stack, "models", "get", "smollm2", url=f"http://127.0.0.1:{free_port()}")
    assert unreachable.returncode == 3 and "cannot reach" in unreachable.stderr
    for usage in (["models", "get"], ["apply"], ["-o", "xml", "models", "get", "smollm2"], ["models", "frobnicate"]):
        assert conch(stack, *usage).returncode == 2, usage


def test_cli_create_stop_start_restart_delete(stack):
    created = as_json(conch(stack, "-o", "json", "models", "create", "cli-made", "--model-path", stack.gguf,
                            "--n-ctx", "512", "--n-threads", "1", "--tag", "chat", "--tag", "cli",
                            "--description", "made by the CLI"))
    assert created["id"] == "cli-made" and created["status"] == "created"
    again = conch(stack, "models", "create", "cli-made", "--model-path", stack.gguf)
    assert again.returncode == 1 and "MODEL_ALREADY_EXISTS" in again.stderr
    item = wait_status(stack, "cli-made", "running")
    assert (item["tags"], item["description"], item["config"]["n_ctx"]) == (["chat", "cli"], "made by the CLI", 512)

    stopped = as_json(conch(stack, "-o", "json", "models", "stop", "cli-made", "--timeout", "60"))
    assert stopped["status"] == "stopping"
    assert as_json(conch(stack, "-o", "json", "models", "get", "cli-made"))["status"] == "stopped"
    not_running = conch(stack, "models", "restart", "cli-made")
    assert not_running.returncode == 1 and "MODEL_NOT_RUNNING" in not_running.stderr
    # a server-side failure is exit 4: generating with the stopped model is a 503 (Triton has unloaded it),
    # after the one retry the CLI makes Retry-After seconds later
    down = conch(stack, "generate", "Hi", "--model", "cli-made", "--max-tokens", "2")
    assert down.returncode == 4 and "error: 503 " in down.stderr, down.stderr
    started = as_json(conch(stack, "-o", "json", "models", "start", "cli-made", "--timeout", "120"))
    assert started["status"] == "starting" and wait_status(stack, "cli-made", "running")
    restarted = conch(stack, "-o", "yaml", "models", "restart", "cli-made")
    assert yaml.safe_load(restarted.stdout)["status"] == "restarting", restarted.stderr

    deleted = conch(stack, "models", "delete", "cli-made")
    assert deleted.returncode == 0 and "status: deleted" in deleted.stdout
    assert conch(stack, "models", "get", "cli-made").returncode == 1
    assert conch(stack, "models", "delete", "cli-made").returncode == 1


def test_cli_apply_creates_then_replaces(stack, tmp_path):
    spec = {"name": "applied", "framework": "llama.cpp", "description": "first",
            "config": {"model_path": stack.gguf, "n_ctx": 512, "n_threads": 1}}
    (tmp_path / "models.yaml").write_text(yaml.safe_dump(spec))
    first = as_json(conch(stack, "-o", "json", "apply", "-f", str(tmp_path / "models.yaml")))
    assert first == [{"id": "applied", "action": "created", "status": "created"}]
    wait_status(stack, "applied", "running")
    # applied again, changed, as JSON from stdin: the existing model's definition is replaced
    second = conch(stack, "apply", "-f", "-", stdin=json.dumps({**spec, "description": "second", "tags": ["x"]}))
    header, row = second.stdout.splitlines()
    assert header == "ID\tACTION\tSTATUS" and row.split("\t")[:2] == ["applied", "updated"], second.stderr
    item = as_json(conch(stack, "-o", "json", "models", "get", "applied"))
    assert (item["description"], item["tags"]) == ("second", ["x"])
    # a body the server refuses names the field; a file that is not model specs is a usage error
    bad = conch(stack, "apply", "-f", "-", stdin=yaml.safe_dump({**spec, "name": "bad", "framework": "onnx"}))
    assert bad.returncode == 1 and "INVALID_MODEL_CONFIG" in bad.stderr
    for text in ("just a string", "- [1, 2]", "{unclosed", ""):
        assert conch(stack, "apply", "-f", "-", stdin=text).returncode == 2, text
    assert conch(stack, "apply", "-f", str(tmp_path / "missing.yaml")).returncode == 2
    assert conch(stack, "models", "delete", "applied").returncode == 0


def test_cli_logs_tail_and_follow(stack):
    tail = conch(stack, "-o", "json", "logs", "smollm2", "--tail", "5")  # logs are text whatever --output says
    assert tail.returncode == 0 and 0 < len(tail.stdout.splitlines()) <= 5, tail.stdout + tail.stderr
    missing = conch(stack, "logs", "nope")
    assert missing.returncode == 1 and "MODEL_NOT_FOUND" in missing.stderr
    follow = subprocess.Popen([CONCH, "logs", "smollm2", "--tail", "1", "--follow"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, preexec_fn=default_interrupt,
                              env={**os.environ, "CONCH_URL": stack.url, "CONCH_API_KEY": stack.admin_key})
    try:
        assert follow.stdout.readline().strip()  # the last line, then it waits for more
        follow.send_signal(signal.SIGINT)  # Ctrl-C ends following, and is not an error
        assert follow.wait(30) == 0, follow.stderr.read()
    finally:
        if follow.poll() is None:
            follow.kill()


# The Python SDK ----------------------------------------------------------------------------------

def test_sdk_seed_003_walkthrough_and_every_management_call(stack):
    client = LLMInferenceClient(base_url=stack.url, api_token=stack.admin_key, max_retries=0)
    try:
        assert "smollm2" in [m.id for m in client.list_models()]
        model = client.create_model(name="sdk-made", framework="llama.cpp",
                                    config={"model_path": stack.gguf, "n_ctx": 512, "n_threads": 1}, tags=["sdk"])
        assert isinstance(model, Accepted) and (model.id, model.status) == ("sdk-made", "created")
        wait_status(stack, model.id, "running")
        response = client.generate(model_id=model.id, prompt="Hello, world!", max_tokens=8, temperature=0)
        assert response.model == model.id and response.text.strip() and response.usage.completion_tokens <= 8
        assert "sdk-made" in [m.id for m in client.managed_models(status="running", framework="llama.cpp")]

        item = client.get_model(model.id)
        assert (item.status, item.tags, item.config["n_ctx"]) == ("running", ["sdk"], 512)
        body = {"framework": "llama.cpp", "config": {"model_path": stack.gguf, "n_ctx": 512, "n_threads": 1}}
        updated = client.update_model(model.id, **body, description="v2", resource_version=item.resource_version)
        assert updated.description == "v2" and updated.tags == []  # PUT replaces the whole definition
        with pytest.raises(ConchError) as stale:  # optimistic concurrency: a stale resource_version is refused
            client.update_model(model.id, **body, resource_version=item.resource_version)
        assert (stale.value.status, stale.value.code) == (409, "CONFLICT")

        assert client.stop_model(model.id, timeout=60).status == "stopping"
        assert client.get_model(model.id).status == "stopped"
        assert client.start_model(model.id, timeout=120).status == "starting"
        assert client.get_model(model.id).status == "running"
        assert client.restart_model(model.id).status == "restarting"
        logs = client.model_logs(model.id, tail=3)
        assert isinstance(logs, str) and 0 < len(logs.splitlines()) <= 3
        lines = client.follow_logs(model.id, tail=1)
        assert next(lines).strip()
        lines.close()  # leaving the loop ends the follow

        client.delete_model(model.id)
        with pytest.raises(NotFoundError) as gone:
            client.get_model(model.id)
        assert (gone.value.status, gone.value.code) == (404, "MODEL_NOT_FOUND")
    finally:
        client.close()


def test_sdk_typed_errors_from_the_management_api(stack):
    with LLMInferenceClient(stack.url, stack.user_key) as user:
        assert user.get_model("smollm2").id == "smollm2"  # a user may read
        with pytest.raises(UnauthorizedError) as refused:
            user.create_model("not-mine", config={"model_path": stack.gguf})
        assert (refused.value.status, refused.value.code) == (403, "AUTHORIZATION_FAILED")
    with LLMInferenceClient(stack.url, stack.admin_key) as admin:
        with pytest.raises(ValidationError) as bad:
            admin.create_model("bad", framework="onnx", config={"model_path": stack.gguf})
        assert (bad.value.code, bad.value.param) == ("INVALID_MODEL_CONFIG", "framework")
        with pytest.raises(ValueError):
            admin.model_action("smollm2", "explode")  # refused before anything is sent
        with pytest.raises(NotFoundError):
            admin.model_action("a/../smollm2", "stop")  # the id is one path segment, never another route
        assert admin.get_model("smollm2").status == "running"


@pytest.mark.asyncio
async def test_async_sdk_management_calls(stack):
    async with AsyncClient(stack.url, stack.admin_key, max_retries=0) as client:
        created = await client.create_model("async-made", config={"model_path": stack.gguf, "n_ctx": 512,
                                                                  "n_threads": 1})
        assert created.status == "created"
        assert (await client.start_model("async-made", timeout=120)).id == "async-made"
        item = await client.get_model("async-made")
        assert item.status == "running" and item.framework == "llama.cpp"
        result = await client.generate("Hello", "async-made", 4, temperature=0)
        assert result.model == "async-made" and result.text
        updated = await client.update_model("async-made", config={"model_path": stack.gguf, "n_ctx": 256,
                                                                  "n_threads": 1}, description="async")
        assert updated.config["n_ctx"] == 256 and updated.description == "async"
        assert "async-made" in [m.id for m in await client.managed_models(size=100)]
        assert (await client.stop_model("async-made", timeout=60)).status == "stopping"
        assert (await client.get_model("async-made")).status == "stopped"
        assert (await client.model_action("async-made", "start", timeout=120)).status == "starting"
        assert len((await client.model_logs("async-made", tail=2)).splitlines()) <= 2
        async for line in client.follow_logs("async-made", tail=1):
            assert line.strip()
            break
        await client.delete_model("async-made")
        with pytest.raises(NotFoundError):
            await client.get_model("async-made")
        with pytest.raises(NotFoundError):
            await client.delete_model("async-made")
