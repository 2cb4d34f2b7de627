"""Seed 003's cURL walkthrough (get a token → create → start → generate), character for character
from the seed, and the way the tests run it: through bash and the real curl. Only the seed's
placeholders are replaced — the server's address, the credentials, YOUR_API_TOKEN, the model id the
create answered (the seed's `model-123`) and the model file (the seed's `/models/model.bin`)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass

SEED_HOST = "http://your-server:8000"
SEED_TOKEN = """curl -X POST http://your-server:8000/api/auth/token \\
  -H "Content-Type: application/json" \\
  -d '{"username": "admin", "password": "password"}'"""
SEED_CREATE = """curl -X POST http://your-server:8000/api/models \\
  -H "Authorization: Bearer YOUR_API_TOKEN" \\
  -H "Content-Type: application/json" \\
  -d '{
    "name": "my-model",
    "framework": "llama.cpp",
    "config": {
      "model_path": "/models/model.bin",
      "n_ctx": 2048
    }
  }'"""
SEED_START = """curl -X POST http://your-server:8000/api/models/model-123/start \\
  -H "Authorization: Bearer YOUR_API_TOKEN\""""
SEED_GENERATE = """curl -X POST http://your-server:8000/api/models/model-123/generate \\
  -H "Authorization: Bearer YOUR_API_TOKEN" \\
  -H "Content-Type: application/json" \\
  -d '{
    "prompt": "Hello, world!",
    "max_tokens": 100,
    "temperature": 0.7
  }'"""
SEED_MODEL_NAME = "my-model"


def curl(example: str, replacements: dict[str, str], timeout: float = 300) -> tuple[int, dict]:
    """Runs the example with its placeholders replaced; answers the HTTP status and the JSON body."""
    assert example.startswith("curl ") and all(old in example for old in replacements), example
    for old, new in replacements.items():
        example = example.replace(old, new)
    run = subprocess.run(["bash", "-c", example + " --silent --show-error --write-out '\\n%{http_code}'"],
                         capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stdout + run.stderr
    body, _, status = run.stdout.rpartition("\n")
    return int(status), json.loads(body)


@dataclass
class Walkthrough:
    """The walkthrough's answers, for the test to check."""

    token: dict
    created: dict
    started: dict
    generated: dict


def walk(url: str, username: str, password: str, model_file: str, *, before_generate=lambda model_id: None,
         timeout: float = 300) -> Walkthrough:
    """Token → create → start → (the caller waits until the model runs) → generate, each one
    answering 2xx (the seed's statuses: 200, 201, 202, 200)."""
    host = {SEED_HOST: url}
    status, token = curl(SEED_TOKEN, {**host, '"username": "admin", "password": "password"':
                                      json.dumps({"username": username, "password": password})[1:-1]})
    assert status == 200 and token["token_type"] == "bearer", token
    auth = {**host, "YOUR_API_TOKEN": token["access_token"]}
    status, created = curl(SEED_CREATE, {**auth, "/models/model.bin": model_file})
    assert status == 201, created
    model_id = created["id"]
    status, started = curl(SEED_START, {**auth, "model-123": model_id})
    assert status == 202, started
    before_generate(model_id)
    status, generated = curl(SEED_GENERATE, {**auth, "model-123": model_id}, timeout=timeout)
    assert status == 200, generated
    return Walkthrough(token, created, started, generated)
