"""Builds the management service from the settings and mounts its routes (app.py calls `install`)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from ..registry.base import ModelRegistry
from ..settings import Settings
from .service import ManagementService

_POD_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def backend_from_settings(settings: Settings, registry: ModelRegistry | None = None):
    if settings.model_source == "kubernetes":
        from .kube import KubernetesBackend

        namespace = settings.management_namespace or settings.watch_namespace or (
            _POD_NAMESPACE.read_text().strip() if _POD_NAMESPACE.exists() else "default")
        return KubernetesBackend(namespace)
    from .local import LocalBackend

    models_file = settings.local_models_file
    if models_file is None:
        raise ValueError("CONCH_MANAGEMENT on a laptop needs CONCH_LOCAL_MODELS_FILE (make up sets it)")
    # `make up`'s layout (conch_engines.embedded): state/models.yaml, state/repository, state/triton/tritonserver.log
    state = models_file.parent
    return LocalBackend(models_file, settings.management_repository_dir or state / "repository",
                        settings.management_triton_url or _first_endpoint(models_file),
                        settings.management_triton_log or state / "triton" / "tritonserver.log", registry)


def _first_endpoint(models_file: Path) -> str:
    from ..registry.local import load_models

    endpoints = [m.status.endpoint for m in load_models(models_file) if m.status.endpoint]
    return endpoints[0] if endpoints else "http://127.0.0.1:8001"


def install(app: FastAPI, settings: Settings, registry: ModelRegistry) -> None:
    from .routes import router

    app.state.management = ManagementService(backend_from_settings(settings, registry))
    app.include_router(router)


async def close(app: FastAPI) -> None:
    service = getattr(app.state, "management", None)
    if service is not None:
        await service.backend.close()
