"""kopf wiring only: which events trigger a reconcile. The work is in `reconcile`."""

from __future__ import annotations

import logging

import kopf
from prometheus_client import start_http_server

from conch_api import GROUP, PLURAL, VERSION

from . import render
from .kube import Kube
from .metrics import measured
from .reconcile import reconcile
from .settings import OperatorSettings

SETTINGS = OperatorSettings()
log = logging.getLogger("conch.operator")


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_) -> None:
    # Handler progress lives in annotations, so the status schema stays strict and ours alone.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP, key="last-handled-configuration")
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = SETTINGS.max_workers
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    memo.kube = Kube(pool_size=SETTINGS.max_workers)
    if SETTINGS.metrics_port:
        start_http_server(SETTINGS.metrics_port)


@kopf.on.cleanup()
def shutdown(memo: kopf.Memo, **_) -> None:
    memo.kube.close()


@kopf.on.resume(GROUP, VERSION, PLURAL, backoff=2)
@kopf.on.create(GROUP, VERSION, PLURAL, backoff=2)
@kopf.on.update(GROUP, VERSION, PLURAL, backoff=2)
def model_changed(body: kopf.Body, memo: kopf.Memo, reason: str, **_) -> None:
    with measured(str(reason)):
        # A new Model owns nothing yet: nothing to prune.
        reconcile(memo.kube, dict(body), SETTINGS, prune_stale=reason != "create")


@kopf.timer(GROUP, VERSION, PLURAL, interval=SETTINGS.resync_interval_s, initial_delay=SETTINGS.resync_interval_s)
def resync(body: kopf.Body, memo: kopf.Memo, **_) -> None:
    """Repairs drift nobody reported (an owned object edited or deleted by hand)."""
    with measured("resync"):
        reconcile(memo.kube, dict(body), SETTINGS)


@kopf.timer(GROUP, VERSION, PLURAL, interval=SETTINGS.external_probe_interval_s,
            when=lambda spec, **_: spec.get("runtime") == "external")
def probe_external(body: kopf.Body, memo: kopf.Memo, **_) -> None:
    """An external endpoint emits no events: its health is polled."""
    with measured("probe"):
        reconcile(memo.kube, dict(body), SETTINGS, apply=False)


@kopf.on.event("apps", "v1", "deployments", labels={render.MODEL_LABEL: kopf.PRESENT})
def deployment_changed(body: kopf.Body, type: str, memo: kopf.Memo, **_) -> None:
    """Replicas became ready (or not): publish it in the owner's status within the second.
    A deleted Deployment is re-created, unless its Model is going away too."""
    model = _owner(memo, body)
    if model is not None:
        with measured("deployment"):
            if type == "DELETED":
                reconcile(memo.kube, model, SETTINGS, fresh=True)
            else:
                reconcile(memo.kube, model, SETTINGS, apply=False, fresh=True)


@kopf.on.event("", "v1", "pods", labels={render.MODEL_LABEL: kopf.PRESENT}, when=lambda status, **_: _unschedulable(status))
def pod_unschedulable(body: kopf.Body, memo: kopf.Memo, **_) -> None:
    """The scheduler's reason is the message users need in the Degraded condition."""
    model = _owner(memo, body)
    if model is not None:
        with measured("pod"):
            reconcile(memo.kube, model, SETTINGS, apply=False, fresh=True)


def _owner(memo: kopf.Memo, body: kopf.Body) -> dict | None:
    name, namespace = body["metadata"]["labels"][render.MODEL_LABEL], body["metadata"]["namespace"]
    return memo.kube.get("Model", namespace, name)


def _unschedulable(status) -> bool:
    return any(c.get("type") == "PodScheduled" and c.get("reason") == "Unschedulable"
               for c in (status or {}).get("conditions", []) or [])
