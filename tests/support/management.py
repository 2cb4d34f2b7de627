"""The laptop's management stack, as `make up` runs it: a real Triton in explicit model-control mode
serving the bundled SmolLM2, and the real gateway with the management routes and authentication on
(an admin key, a user key, and a user with a password for /api/auth/token)."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import yaml

from conch_engines import bundled, repository
from conch_engines.embedded import bundled_model_resource
from conch_engines.triton_server import TritonPorts, TritonServer
from conch_gateway.app import create_app
from conch_gateway.settings import Settings

from . import GatewayServer, free_port_block
from .auth import key_entry, user_entry, write_keys

USERNAME, PASSWORD = "carol", "correct horse battery staple"


@dataclass(frozen=True)
class ManagementStack:
    url: str
    admin_key: str  # role admin: may create, change and delete models
    user_key: str  # may read and generate only
    gguf: str  # the bundled SmolLM2's file, for creating more models
    triton: TritonServer


@contextmanager
def management_stack(state: Path) -> Iterator[ManagementStack]:
    """`state` gets make up's layout: models.yaml, repository/, triton/tritonserver.log."""
    model = bundled.smollm2()
    repository.write_repository(state / "repository", repository.llama_cpp_files(model.id, str(model.gguf_path), n_ctx=1024))
    triton = TritonServer(state / "repository", state / "triton", TritonPorts.from_http(free_port_block()),
                          extra_args=("--model-control-mode=explicit", "--load-model=*"))
    triton.start()
    try:
        (state / "models.yaml").write_text(yaml.safe_dump_all([bundled_model_resource(model, triton.url, None, 1024)]))
        admin, admin_entry = key_entry("ops", role="admin")
        user, user_key_entry = key_entry("team", models=["*"])
        keys = write_keys(state / "keys.yaml", [admin_entry, user_key_entry],
                          users=[user_entry(USERNAME, PASSWORD, role="admin")])
        settings = Settings(model_source="local", local_models_file=state / "models.yaml", management=True, auth="on",
                            auth_keys_file=keys, health_probe_interval_s=0.2, default_model="smollm2")
        with GatewayServer(create_app(settings)) as gateway:
            yield ManagementStack(gateway.url, admin, user, str(model.gguf_path), triton)
    finally:
        triton.stop()
