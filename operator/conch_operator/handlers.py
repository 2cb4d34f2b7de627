"""kopf wiring only: watch events go into the work queue; the work is in `reconcile`.

kopf watches Models and the Deployments and pods they own; every event just marks its Model
for reconciling. A spec change (a new `metadata.generation`) or a deleted Deployment asks for the
desired objects to be applied again; anything else only refreshes status. The initial listing
after a start marks every Model, so a restarted operator converges on the same state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import kopf
from prometheus_client import start_http_server

from conch_api import GROUP, PLURAL, VERSION

from . import render
from .kube import Kube
from .metrics import QUEUE_DEPTH, measured
from .reconcile import forget, needs_apply, reconcile
from .settings import OperatorSettings
from .view import ClusterView
from .workqueue import WorkQueue

SETTINGS = OperatorSettings()
VIEW = ClusterView()
log = logging.getLogger("conch.operator")


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_) -> None:
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    # Reconciles call the API with the blocking `kubernetes` client: a few threads, shared.
    executor = ThreadPoolExecutor(SETTINGS.max_workers, thread_name_prefix="reconcile")
    settings.execution.executor = executor
    asyncio.get_running_loop().set_default_executor(executor)
    memo.kube = Kube(pool_size=SETTINGS.max_workers)
    memo.queue = WorkQueue(lambda key, apply: _reconcile(memo, key, apply), SETTINGS.max_workers)
    memo.queue.start()
    memo.periodic = asyncio.create_task(_periodic(memo), name="conch-periodic")
    if SETTINGS.metrics_port:
        start_http_server(SETTINGS.metrics_port)


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_) -> None:
    memo.periodic.cancel()
    await memo.queue.stop()
    memo.kube.close()


@kopf.on.event(GROUP, VERSION, PLURAL)
async def model_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_) -> None:
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    VIEW.model_event(type or "ADDED", dict(body))  # type None: the initial listing
    if type == "DELETED":
        forget(namespace, name)
        memo.queue.forget((namespace, name))
    elif needs_apply(body):
        memo.queue.add((namespace, name), apply=True)
    # Otherwise only the status changed — written by this operator.


@kopf.on.event("apps", "v1", "deployments", labels={render.MODEL_LABEL: kopf.PRESENT})
async def deployment_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_) -> None:
    """Replicas became ready (or not): the owner's status follows within the second. A deleted
    Deployment is re-created, unless its Model is going away too."""
    key = _owner_key(body)
    VIEW.deployment_event(type or "ADDED", key, dict(body))
    memo.queue.add(key, apply=type == "DELETED")


@kopf.on.event("", "v1", "pods", labels={render.MODEL_LABEL: kopf.PRESENT})
async def pod_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_) -> None:
    """Only a change in why pods cannot be scheduled matters: the scheduler's words go into Degraded."""
    key = _owner_key(body)
    before = VIEW.unschedulable(key)
    VIEW.pod_event(type or "ADDED", key, dict(body))
    if VIEW.unschedulable(key) != before:
        memo.queue.add(key, apply=False)


async def _reconcile(memo: kopf.Memo, key: tuple[str, str], apply: bool) -> None:
    QUEUE_DEPTH.set(len(memo.queue))
    body = VIEW.model(*key) or await asyncio.to_thread(memo.kube.get, "Model", *key)
    if body is None:
        return
    await asyncio.to_thread(_measured_reconcile, memo.kube, body, apply)


def _measured_reconcile(kube: Kube, body: dict, apply: bool) -> None:
    with measured("apply" if apply else "status"):
        reconcile(kube, VIEW, body, SETTINGS, apply=apply)


async def _periodic(memo: kopf.Memo) -> None:
    """External endpoints emit no events, so they are probed; and, less often, every Model is
    reconciled to repair drift nobody reported (an owned object edited by hand)."""
    last_resync = time.monotonic()
    while True:
        await asyncio.sleep(SETTINGS.external_probe_interval_s)
        resync = time.monotonic() - last_resync >= SETTINGS.resync_interval_s
        if resync:
            last_resync = time.monotonic()
        for model in VIEW.models():
            if resync or model["spec"].get("runtime") == "external":
                memo.queue.add((model["metadata"]["namespace"], model["metadata"]["name"]), apply=resync)


def _owner_key(body: kopf.Body) -> tuple[str, str]:
    return body["metadata"]["namespace"], body["metadata"]["labels"][render.MODEL_LABEL]
