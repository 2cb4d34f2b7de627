"""The laptop backend: the same API over the local Triton (`make up`).

The Models are the local model file (a YAML stream, the one the local model source reads);
start/stop are Triton's model-control API (Triton must run with --model-control-mode=explicit);
create writes a llama.cpp model for a GGUF path into Triton's repository (a copy of an existing
llama-cpp model's entry with the path, context and threads changed: the gateway may not import the
runtimes that render one), adds it to the file and to the routing table, and loads it; logs are
Triton's log file (one log for every model).
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator

import yaml

from conch_api import API_VERSION, KIND, Model

from ..backends.http import HTTPClient
from ..registry.base import ModelRegistry, served_model
from .mapping import ANNOTATION
from .backend import AlreadyExists, Entry, NotFound, Refused, Stale, Unsupported

CREATED = "conch.dev/created-at"
UPDATED = "conch.dev/updated-at"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class TritonRefused(Refused):
    """Triton answered a model-control call with an error (e.g. explicit mode is off)."""


class LocalBackend:
    def __init__(self, models_file: Path, repository_dir: Path, triton_url: str, log_file: Path | None,
                 registry: ModelRegistry | None = None):
        self.models_file = models_file
        self.repository_dir = repository_dir
        self.triton_url = triton_url
        self.log_file = log_file
        self.registry = registry
        self._lock = asyncio.Lock()  # one writer of the models file at a time
        self._http = HTTPClient(limit_per_origin=4)

    async def _control(self, path: str, body: dict[str, Any] | None = None, timeout: float = 300.0) -> Any:
        """Triton's model-control API (POST /v2/repository/…); a refusal is raised with Triton's message."""
        import json

        status, answer = await asyncio.wait_for(
            self._http.post(f"{self.triton_url}/v2/repository{path}", json.dumps(body or {}).encode()), timeout)
        if status != 200:
            raise TritonRefused(json.loads(answer or b"{}").get("error", f"HTTP {status}"))
        return json.loads(answer) if answer else None

    async def _unload(self, name: str) -> None:
        await self._control(f"/models/{name}/unload")

    def _write_model(self, name: str, gguf: Path, n_ctx: int, n_threads: int) -> None:
        """A copy of the first llama-cpp entry of the repository, pointed at another GGUF file."""
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2

        for template in sorted(self.repository_dir.glob("*/config.pbtxt")):
            config = text_format.Parse(template.read_text(), model_config_pb2.ModelConfig())
            if "gguf_path" in config.parameters:
                break
        else:
            raise Unsupported(f"no llama-cpp model in {self.repository_dir} to copy; start with `make up`")
        config.name = name
        config.parameters["gguf_path"].string_value = str(gguf)
        config.parameters["n_ctx"].string_value = str(n_ctx)
        config.parameters["n_threads"].string_value = str(n_threads)
        target = self.repository_dir / name
        (target / "1").mkdir(parents=True, exist_ok=True)
        (target / "1" / "model.py").write_text((template.parent / "1" / "model.py").read_text())
        (target / "config.pbtxt").write_text(text_format.MessageToString(config))

    # -- the models file ---------------------------------------------------------------------
    def _read(self) -> list[dict[str, Any]]:
        return [d for d in yaml.safe_load_all(self.models_file.read_text()) if d] if self.models_file.exists() else []

    def _write(self, docs: list[dict[str, Any]]) -> None:
        tmp = self.models_file.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True))
        os.replace(tmp, self.models_file)  # readers never see half a file

    @staticmethod
    def _find(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
        for doc in docs:
            if doc["metadata"]["name"] == name:
                return doc
        raise NotFound(name)

    async def _states(self) -> dict[str, str]:
        index = await self._control("/index", timeout=10.0)
        return {m["name"]: m.get("state", "") for m in index or []}

    def _entry(self, doc: dict[str, Any], state: str | None) -> Entry:
        wanted = doc["spec"].get("replicas", 1)
        # Triton's states → the Model's phases; a model not loaded that should be is Failed.
        phase = {"READY": "Ready", "LOADING": "Deploying"}.get(state or "", "Failed" if wanted and state == "UNAVAILABLE"
                                                                else "Stopped")
        ready = "True" if phase == "Ready" else "False"
        serving = 1 if phase == "Ready" else 0  # one local Triton: a loaded model is one ready replica
        status = {**doc.get("status", {}), "phase": phase, "replicas": serving, "readyReplicas": serving,
                  "conditions": [{"type": "Ready", "status": ready, "reason": "Triton", "message": state or "not loaded"}]}
        model = Model.model_validate({**doc, "status": status})
        ann = doc["metadata"].get("annotations") or {}
        version = str(doc["metadata"].get("generation", 1))
        return Entry(model, version, ann.get(CREATED), ann.get(UPDATED) or ann.get(CREATED))

    def _triton_model(self, doc: dict[str, Any]) -> str:
        return doc.get("status", {}).get("tritonModel") or doc["metadata"]["name"]

    async def list(self) -> list[Entry]:
        states = await self._states()
        return [self._entry(d, states.get(self._triton_model(d))) for d in self._read()]

    async def get(self, name: str) -> Entry:
        doc = self._find(self._read(), name)
        return self._entry(doc, (await self._states()).get(self._triton_model(doc)))

    async def create(self, name: str, spec: dict[str, Any], annotations: dict[str, str]) -> Entry:
        source = spec.get("source", {})
        if spec["runtime"] != "llama-cpp" or "file" not in source:
            raise Unsupported("on a laptop a model is created from a local GGUF file: framework llama.cpp, "
                              "config.model_path an absolute path to a .gguf file")
        path = Path(source["file"]["path"])
        if not path.is_file():
            raise Unsupported(f"{path} is not a file on this machine")
        async with self._lock:
            docs = self._read()
            if any(d["metadata"]["name"] == name for d in docs):
                raise AlreadyExists(name)
            kept = json.loads(annotations.get(ANNOTATION, "{}"))
            self._write_model(name, path, spec.get("engine", {}).get("maxSeqLen", 4096), kept.get("n_threads", 0))
            doc = {"apiVersion": API_VERSION, "kind": KIND,
                   "metadata": {"name": name, "generation": 1, "annotations": {**annotations, CREATED: _now()}},
                   "spec": {**spec, "replicas": spec.get("replicas", 1)},
                   "status": {"endpoint": self.triton_url, "tritonModel": name, "interface": "ensemble"}}
            self._write(docs + [doc])
        if doc["spec"]["replicas"]:
            await self._load(doc)
        return await self.get(name)

    async def replace(self, name: str, spec: dict[str, Any], annotations: dict[str, str],
                      resource_version: str | None) -> Entry:
        async with self._lock:
            docs = self._read()
            doc = self._find(docs, name)
            generation = int(doc["metadata"].get("generation", 1))
            if resource_version is not None and resource_version != str(generation):
                raise Stale(name)
            doc["spec"] = {**doc["spec"], **spec}
            doc["metadata"]["generation"] = generation + 1
            doc["metadata"]["annotations"] = {**(doc["metadata"].get("annotations") or {}), **annotations,
                                              UPDATED: _now()}
            self._write(docs)
        return await self.get(name)

    async def delete(self, name: str) -> None:
        async with self._lock:
            docs = self._read()
            doc = self._find(docs, name)
            self._write([d for d in docs if d is not doc])
        await self._unload(self._triton_model(doc))
        if self.registry is not None:
            self.registry.remove(name)

    async def scale(self, name: str, replicas: int, annotations: dict[str, str]) -> Entry:
        # One Triton serves every local model: any replicas > 0 is "loaded".
        async with self._lock:
            docs = self._read()
            doc = self._find(docs, name)
            doc["spec"]["replicas"] = replicas
            doc["metadata"]["annotations"] = {**(doc["metadata"].get("annotations") or {}), **annotations}
            self._write(docs)
        if replicas:
            await self._load(doc)
        else:
            await self._unload(self._triton_model(doc))
            self._publish(doc, ready=False)
        return await self.get(name)

    async def restart(self, name: str) -> Entry:
        doc = self._find(self._read(), name)
        await self._load(doc)  # Triton reloads a loaded model in place
        return await self.get(name)

    async def _load(self, doc: dict[str, Any]) -> None:
        try:
            await self._control(f"/models/{self._triton_model(doc)}/load")
        except TritonRefused:
            self._publish(doc, ready=False)
            raise
        self._publish(doc, ready=True)

    def _publish(self, doc: dict[str, Any], ready: bool) -> None:
        """Into the routing table at once (the local model source only probes the models it started with)."""
        if self.registry is None:
            return
        model = Model.model_validate({**doc, "status": {**doc.get("status", {}), "phase": "Ready" if ready else "Stopped"}})
        self.registry.upsert(served_model(model, routable=True).with_health(ready, "" if ready else "stopped"))

    async def logs(self, name: str, *, tail: int | None, since_s: int | None, follow: bool) -> AsyncIterator[str]:
        if self.log_file is None or not self.log_file.exists():
            return
        with self.log_file.open("r", errors="replace") as f:
            lines = f.readlines()
            for line in lines[-tail:] if tail else ([] if tail == 0 else lines):
                yield line
            while follow:
                line = f.readline()
                if line:
                    yield line
                else:
                    await asyncio.sleep(0.2)

    async def largest_gpu_node(self, spec: dict[str, Any]) -> int | None:
        return None  # the laptop serves llama.cpp on CPU only; creation refuses GPU runtimes already

    async def close(self) -> None:
        await self._http.close()
