"""Model specs → GGUF files. Spec parsing is pure; the Hugging Face download path runs the real
huggingface_hub against a loopback server speaking the hub's endpoints (HEAD/GET `resolve`, the
repo tree API), including resume of a partial download and a cached second call."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conch_engines import sources
from conch_engines.sources import ModelSource, SourceError, parse, pick_gguf


@pytest.mark.parametrize("spec, expected", [
    ("smollm2", ModelSource("bundled", "smollm2")),
    ("qwen2", ModelSource("huggingface", "qwen2", repo_id="Qwen/Qwen2-0.5B-Instruct-GGUF",
                          filename="qwen2-0_5b-instruct-q4_k_m.gguf")),
    ("llama3", ModelSource("huggingface", "llama3", repo_id="bartowski/Llama-3.2-1B-Instruct-GGUF",
                           filename="Llama-3.2-1B-Instruct-Q4_K_M.gguf")),
    ("TheOrg/Some-Model-GGUF", ModelSource("huggingface", "some-model", repo_id="TheOrg/Some-Model-GGUF")),
    ("TheOrg/Some-Model-GGUF:some-model.Q8_0.gguf",
     ModelSource("huggingface", "some-model.q8_0", repo_id="TheOrg/Some-Model-GGUF", filename="some-model.Q8_0.gguf")),
    ("/models/My Model.Q4_K_M.gguf", ModelSource("file", "my-model.q4_k_m", path=Path("/models/My Model.Q4_K_M.gguf"))),
    ("./x.gguf", ModelSource("file", "x", path=Path("x.gguf"))),
    ("tiny.gguf", ModelSource("file", "tiny", path=Path("tiny.gguf"))),
])
def test_parse(spec, expected):
    assert parse(spec) == expected


@pytest.mark.parametrize("spec, message", [
    ("", "empty --model"),
    ("gpt4", "unknown model 'gpt4'"),
    ("org/repo:weights.bin", "must be a .gguf file"),
])
def test_parse_refuses(spec, message):
    with pytest.raises(SourceError, match=message):
        parse(spec)


def test_pick_gguf():
    assert pick_gguf(["README.md", "m-Q4_K_M.gguf", "m-Q8_0.gguf"]) == "m-Q4_K_M.gguf"
    assert pick_gguf(["only.gguf", "config.json"]) == "only.gguf"
    with pytest.raises(SourceError, match="several .gguf files"):
        pick_gguf(["a-Q8_0.gguf", "a-Q5_0.gguf"])
    with pytest.raises(SourceError, match="no .gguf file"):
        pick_gguf(["model.safetensors"])


def test_local_file_checks(tmp_path):
    with pytest.raises(SourceError, match="model file not found"):
        sources.resolve(parse(str(tmp_path / "missing.gguf")))
    (tmp_path / "weights.gguf").write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(SourceError, match="is not a GGUF file"):
        sources.resolve(parse(str(tmp_path / "weights.gguf")))
    (tmp_path / "ok.gguf").write_bytes(b"GGUF\x03\x00\x00\x00")
    assert sources.resolve(parse(str(tmp_path / "ok.gguf"))) == tmp_path / "ok.gguf"


# --- the download path, against a loopback hub -------------------------------------------------

REPO, FILE = "conch-test/Tiny-GGUF", "tiny-Q4_K_M.gguf"
CONTENT = b"GGUF" + os.urandom(300_000)
ETAG = hashlib.sha256(CONTENT).hexdigest()
COMMIT = "a" * 40


class Hub(BaseHTTPRequestHandler):
    requests: list[tuple[str, str, str | None]] = []
    drop_after: int | None = None  # cut the next file body after this many bytes, as a broken connection does

    def log_message(self, *args):  # quiet
        pass

    def _resolve(self, body: bool):
        if self.path.split("?")[0] != f"/{REPO}/resolve/main/{FILE}":
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound" if self.path.startswith(f"/{REPO}/") else "RepoNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start = int(self.headers.get("Range", "bytes=0-")[6:].split("-")[0]) if body else 0
        self.send_response(206 if start else 200)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", f'"{ETAG}"')
        self.send_header("Content-Length", str(len(CONTENT) - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(CONTENT) - 1}/{len(CONTENT)}")
        self.end_headers()
        if body and Hub.drop_after is not None:
            self.wfile.write(CONTENT[start:Hub.drop_after])
            Hub.drop_after = None
            self.close_connection = True
        elif body:
            self.wfile.write(CONTENT[start:])

    def do_HEAD(self):
        Hub.requests.append(("HEAD", self.path, None))
        self._resolve(body=False)

    def do_GET(self):
        Hub.requests.append(("GET", self.path, self.headers.get("Range")))
        if self.path.startswith(f"/api/models/{REPO}/tree/main"):
            payload = json.dumps([{"type": "file", "path": p, "size": 1, "oid": "0" * 40}
                                  for p in ("README.md", FILE, "tiny-Q8_0.gguf")]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        self._resolve(body=True)


@pytest.fixture
def hub():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Hub.requests, Hub.drop_after = [], None
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _resolve_in_subprocess(spec: str, endpoint: str, home: Path) -> subprocess.CompletedProcess:
    """huggingface_hub reads HF_ENDPOINT when imported: a fresh interpreter per call."""
    # 64 kB chunks (not 10 MB) so the 300 kB test file spans several, as a real GGUF does
    code = ("import sys\nimport huggingface_hub.constants as c\nc.DOWNLOAD_CHUNK_SIZE = 65536\n"
            "from conch_engines import sources\n"
            "try:\n    print(sources.resolve(sources.parse(sys.argv[1])))\n"
            "except sources.SourceError as e:\n    print(e); sys.exit(2)\n")
    env = dict(os.environ, HF_ENDPOINT=endpoint, HF_HOME=str(home), HF_HUB_DISABLE_TELEMETRY="1",
               HF_HUB_DISABLE_XET="1")
    env.pop("HF_HUB_OFFLINE", None)
    return subprocess.run([sys.executable, "-c", code, spec], env=env, capture_output=True, text=True, timeout=60)


def test_download_resume_and_cache(hub, tmp_path):
    # The connection breaks after 100 kB: huggingface_hub resumes, asking the hub only for
    # the bytes after the last whole chunk it wrote.
    Hub.drop_after = 100_000
    result = _resolve_in_subprocess(f"{REPO}:{FILE}", hub, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    path = Path(result.stdout.strip().splitlines()[-1])
    assert path.read_bytes() == CONTENT
    gets = [r for r in Hub.requests if r[0] == "GET"]
    assert gets == [("GET", f"/{REPO}/resolve/main/{FILE}", None), ("GET", f"/{REPO}/resolve/main/{FILE}", "bytes=65536-")]

    # The second call is served from the cache: no file body is fetched again.
    Hub.requests = []
    again = _resolve_in_subprocess(f"{REPO}:{FILE}", hub, tmp_path)
    assert again.returncode == 0 and Path(again.stdout.strip().splitlines()[-1]) == path
    assert not [r for r in Hub.requests if r[0] == "GET"]


def test_repo_id_alone_picks_the_q4_k_m_file(hub, tmp_path):
    result = _resolve_in_subprocess(REPO, hub, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert Path(result.stdout.strip()).name == FILE


def test_missing_file_and_offline_hub_are_one_line(hub, tmp_path):
    missing = _resolve_in_subprocess(f"{REPO}:nope.gguf", hub, tmp_path)
    assert missing.returncode == 2 and "Traceback" not in missing.stdout + missing.stderr
    assert missing.stdout.strip() == f"nope.gguf is not in the Hugging Face repository {REPO}"

    offline = _resolve_in_subprocess(f"{REPO}:{FILE}", "http://127.0.0.1:9", tmp_path / "empty")
    assert offline.returncode == 2 and "Traceback" not in offline.stdout + offline.stderr
    assert offline.stdout.strip().startswith("cannot reach the Hugging Face hub"), offline.stdout
