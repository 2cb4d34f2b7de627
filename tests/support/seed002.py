"""Seed 002's curl examples, character for character, and the way the tests run them: through bash
and the real curl, with only the address replaced by the server under test."""

from __future__ import annotations

import json
import subprocess

SEED_HOST = "http://127.0.0.1:5000"
SEED_CHAT = """curl -X POST http://127.0.0.1:5000/chat \\
  -H "Content-Type: application/json" \\
  -d '{
    "message": "你好！",
    "max_tokens": 512,
    "temperature": 0.7
  }'"""
SEED_RESET = "curl -X POST http://127.0.0.1:5000/reset"
SEED_STATUS = "curl http://127.0.0.1:5000/status"
SEED_HEALTH = "curl http://127.0.0.1:5000/health"


def curl(example: str, url: str, timeout: float = 300) -> dict:
    """Runs the example against `url`; answers its JSON body (a failed status fails the test)."""
    assert example.startswith("curl ") and SEED_HOST in example
    run = subprocess.run(["bash", "-c", example.replace(SEED_HOST, url) + " --silent --show-error --fail-with-body"],
                         capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stdout + run.stderr
    return json.loads(run.stdout)
