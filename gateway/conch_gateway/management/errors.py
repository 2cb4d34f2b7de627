"""Seed 003's error codes, raised as the gateway's one envelope (ConchError)."""

from __future__ import annotations

from ..errors import ConchError


def not_found(model_id: str) -> ConchError:
    return ConchError(404, "MODEL_NOT_FOUND", f"model '{model_id}' does not exist", param="model_id")


def already_exists(model_id: str) -> ConchError:
    return ConchError(409, "MODEL_ALREADY_EXISTS", f"model '{model_id}' already exists", param="name")


def not_running(model_id: str) -> ConchError:
    return ConchError(409, "MODEL_NOT_RUNNING", f"model '{model_id}' is not running; POST /api/models/{model_id}/start",
                      param="model_id")


def stale_write(model_id: str) -> ConchError:
    return ConchError(409, "CONFLICT", f"model '{model_id}' changed since resource_version was read; GET it and retry",
                      param="resource_version")


def insufficient_resources(message: str, param: str | None = None) -> ConchError:
    return ConchError(503, "INSUFFICIENT_RESOURCES", message, param=param)


def operation_timeout(operation: str, seconds: float) -> ConchError:
    return ConchError(504, "OPERATION_TIMEOUT", f"{operation} did not finish within {seconds:g}s")


def unmappable(field: str, message: str) -> ConchError:
    return ConchError(400, "INVALID_MODEL_CONFIG", message, param=field)


def refused(operation: str, reason: str) -> ConchError:
    return ConchError(409, "OPERATION_REFUSED", f"{operation} was refused: {reason}")


def logs_unavailable(pod: str, reason: str) -> ConchError:
    # The API server could not reach the pod's node (kubelet down, a node without logs): a gateway error.
    return ConchError(502, "LOGS_UNAVAILABLE", f"the log of pod '{pod}' could not be read: {reason}")
