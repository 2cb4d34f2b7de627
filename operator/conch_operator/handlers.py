"""kopf wiring only: watch events go into the work queue; the work is in `reconcile`.

kopf watches Models and the Deployments and pods they own, and the engine build Jobs (and their
pods) that Models share; every event just marks the Models concerned for reconciling. A spec
change (a new `metadata.generation`), a deleted Deployment or a build Job's progress asks for the
desired objects to be applied again; anything else only refreshes status. The initial listing
after a start marks every Model, so a restarted operator converges on the same state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import kopf
from prometheus_client import start_http_server

from conch_api import GROUP, PLURAL, VERSION

from .builds.plan import retry_due
from .kube import Kube
from .manifests.build_job import ENGINE_KEY_LABEL
from .manifests.kit import MODEL_LABEL
from .memory import ModelMemory
from .metrics import QUEUE_DEPTH, measured
from .reconcile import reconcile
from .settings import OperatorSettings
from .view import ClusterView
from .workqueue import WorkQueue

log = logging.getLogger("conch.operator")


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_) -> None:
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    # kopf retries a failed API request (a watch's reconnection too) after 1, 1, 2, 3, 5, 8, 13
    # and 21 s: after an API server restart, its watches came back up to 21 s late. Capped at 3 s
    # (about a minute in all before a request gives up — a watch then starts over at once).
    settings.networking.error_backoffs = (0.5, 1, 1, 2, 2, *[3] * 15)
    # Everything the operator keeps lives in the memo: settings, the watched view of the
    # cluster, what it remembers per Model, the API client and the work queue.
    memo.settings = OperatorSettings()
    memo.view = ClusterView()
    memo.memory = ModelMemory()
    # Reconciles call the API with the blocking `kubernetes` client: a few threads, shared.
    executor = ThreadPoolExecutor(memo.settings.max_workers, thread_name_prefix="reconcile")
    settings.execution.executor = executor
    asyncio.get_running_loop().set_default_executor(executor)
    memo.kube = Kube(pool_size=memo.settings.max_workers)
    memo.queue = WorkQueue(lambda key, apply: _reconcile(memo, key, apply), memo.settings.max_workers)
    memo.queue.start()
    memo.periodic = asyncio.create_task(_periodic(memo), name="conch-periodic")
    memo.contact = asyncio.create_task(_retry_when_answering_again(memo), name="conch-contact")
    if memo.settings.metrics_port:
        start_http_server(memo.settings.metrics_port)


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_) -> None:
    memo.periodic.cancel()
    memo.contact.cancel()
    await memo.queue.stop()
    memo.kube.close()


@kopf.on.event(GROUP, VERSION, PLURAL)
async def model_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_) -> None:
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    memo.view.model_event(type or "ADDED", dict(body))  # type None: the initial listing
    if type == "DELETED":
        memo.memory.forget((namespace, name))
        memo.queue.forget((namespace, name))
    elif memo.memory.needs_apply(body):
        memo.queue.add((namespace, name), apply=True)
    # Otherwise only the status changed — written by this operator.


@kopf.on.event("apps", "v1", "deployments", labels={MODEL_LABEL: kopf.PRESENT})
async def deployment_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_) -> None:
    """Replicas became ready (or not): the owner's status follows within the second. A deleted
    Deployment is re-created, unless its Model is going away too."""
    key = _owner_key(body)
    memo.view.deployment_event(type or "ADDED", key, dict(body))
    memo.queue.add(key, apply=type == "DELETED")


@kopf.on.event("", "v1", "pods", labels={MODEL_LABEL: kopf.PRESENT})
async def pod_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_) -> None:
    """Only a change in why pods cannot be scheduled matters: the scheduler's words go into Degraded."""
    key = _owner_key(body)
    before = memo.view.unschedulable(key)
    memo.view.pod_event(type or "ADDED", key, dict(body))
    if memo.view.unschedulable(key) != before:
        memo.queue.add(key, apply=False)


@kopf.on.event("batch", "v1", "jobs", labels={ENGINE_KEY_LABEL: kopf.PRESENT})
async def build_job_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_) -> None:
    """An engine build progressed, finished or was deleted: every Model waiting for that engine
    reconciles (with apply: a finished build brings their Triton Deployments)."""
    for key in memo.view.engine_users(body["metadata"]["namespace"], body["metadata"]["labels"][ENGINE_KEY_LABEL]):
        memo.queue.add(key, apply=True)


@kopf.on.event("", "v1", "pods", labels={ENGINE_KEY_LABEL: kopf.PRESENT})
async def build_pod_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_) -> None:
    """A builder pod waits for a node or an image, or starts: the Job's status does not say so,
    the waiting Models' EngineReady message does."""
    for key in memo.view.engine_users(body["metadata"]["namespace"], body["metadata"]["labels"][ENGINE_KEY_LABEL]):
        memo.queue.add(key, apply=False)


async def _reconcile(memo: kopf.Memo, key: tuple[str, str], apply: bool) -> None:
    QUEUE_DEPTH.set(len(memo.queue))
    body = memo.view.model(*key) or await asyncio.to_thread(memo.kube.get, "Model", *key)
    if body is None:
        return
    await asyncio.to_thread(_measured_reconcile, memo, body, apply)


def _measured_reconcile(memo: kopf.Memo, body: dict, apply: bool) -> None:
    with measured("apply" if apply else "status"):
        reconcile(memo.kube, memo.view, memo.memory, body, memo.settings, apply=apply)


async def _periodic(memo: kopf.Memo) -> None:
    """External endpoints emit no events, so they are probed; a failed engine build is retried once
    its back-off has passed (status.engine.retryAfter), and so are objects the API server refused
    (memory); and, less often, every Model is reconciled to repair drift nobody reported (an owned
    object edited by hand)."""
    last_resync = time.monotonic()
    while True:
        await asyncio.sleep(memo.settings.external_probe_interval_s)
        # One bad iteration must not end the task: nothing would restart resyncs, probes or retries.
        try:
            resync = time.monotonic() - last_resync >= memo.settings.resync_interval_s
            if resync:
                last_resync = time.monotonic()
            now = datetime.now(timezone.utc)
            refused_before = set(memo.memory.rejections_due(now))
            for model in memo.view.models():
                key = (model["metadata"]["namespace"], model["metadata"]["name"])
                if resync or retry_due(model, now) or key in refused_before:
                    memo.queue.add(key, apply=True)
                elif model["spec"].get("runtime") == "external":
                    memo.queue.add(key, apply=False)
        except Exception:
            log.exception("periodic resync, probe and retry pass failed; trying again next time")


async def _retry_when_answering_again(memo: kopf.Memo) -> None:
    """Reconciles that failed for want of an answer (the API server restarting, being upgraded)
    run again as soon as it answers, not after their back-off (up to a minute by then)."""
    while True:
        await asyncio.sleep(1)
        try:
            if memo.kube.contact_lost:
                await asyncio.to_thread(memo.kube.reachable)
            if memo.kube.answering_again():
                retried = memo.queue.retry_failed_now()
                log.info("the API server answers again: %d failed reconciles retried now", retried)
        except Exception:
            log.exception("checking contact with the API server failed; trying again")


def _owner_key(body: kopf.Body) -> tuple[str, str]:
    return body["metadata"]["namespace"], body["metadata"]["labels"][MODEL_LABEL]
