"""The cluster backend: Models written through the Kubernetes API, their pods' logs read from it.

The management API's one module that talks to Kubernetes, so its write access (RBAC: models
create/update/patch/delete, pods and pods/log get/list, deployments patch for restart) is used
from one place. Pods are found by the Model's status.selector; the workload is the operator's
Deployment `<model>-triton` (conch_operator.manifests.kit.Names, which the gateway may not import).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import Any, AsyncIterator

from conch_api import API_VERSION, GROUP, KIND, PLURAL, VERSION, Model

from ..kubernetes_client import api_client
from . import errors, logmerge
from .backend import AlreadyExists, Entry, NotFound, Stale

_TRITON_CONTAINER = "triton"
_COMPONENT = "app.kubernetes.io/component"
# Following logs: how long a line waits for earlier-stamped lines of other pods, how often the
# pods are listed again (a new replica joins the stream), how many lines wait to be sent, and
# how long one stream may last (the client's total timeout; a day).
_REORDER_S, _TICK_S, _RELIST_S, _FOLLOW_BUFFER, _FOLLOW_LIMIT_S = 0.25, 0.1, 5.0, 1000, 86400.0
_GPU = "nvidia.com/gpu"
log = logging.getLogger("conch.gateway.management")


def _may_run_on(spec: dict[str, Any], node) -> bool:
    labels = node.metadata.labels or {}
    wanted = dict(spec.get("nodeSelector") or {})
    if (spec.get("gpu") or {}).get("product"):
        wanted[f"{_GPU}.product"] = spec["gpu"]["product"]
    return not (node.spec and node.spec.unschedulable) and all(labels.get(k) == v for k, v in wanted.items())


def _quantity(value: str) -> int:
    # Extended resources are whole numbers; anything else (a malformed node) counts as none.
    try:
        return int(value)
    except ValueError:
        return 0


def _entry(obj: dict[str, Any]) -> Entry:
    meta = obj.get("metadata", {})
    updated = max((f.get("time") or "" for f in meta.get("managedFields") or []), default="") or None
    model = Model.model_validate({**obj, "metadata": {k: meta.get(k) for k in
                                                      ("name", "namespace", "generation", "uid") if meta.get(k) is not None}
                                  | {"labels": meta.get("labels") or {}, "annotations": meta.get("annotations") or {}}})
    return Entry(model, meta.get("resourceVersion"), meta.get("creationTimestamp"), updated or meta.get("creationTimestamp"))


class KubernetesBackend:
    def __init__(self, namespace: str, api_client=None):
        self.namespace = namespace
        self._api = api_client

    async def _client(self):
        if self._api is None:
            self._api = await api_client()
        return self._api

    async def _objects(self):
        from kubernetes.aio import client

        return client.CustomObjectsApi(await self._client())

    async def _call(self, coro):
        from kubernetes.aio.client.exceptions import ApiException

        try:
            return await coro
        except ApiException as exc:
            if exc.status == 404:
                raise NotFound() from None
            if exc.status == 409:
                # the Status reason tells a name taken (create) from a stale resourceVersion (update)
                raise (AlreadyExists if "AlreadyExists" in str(exc.body) else Stale)() from None
            raise

    async def list(self) -> list[Entry]:
        objects = await self._objects()
        listing = await self._call(objects.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL))
        out = []
        for item in listing.get("items", []):
            try:
                out.append(_entry(item))
            except ValueError:  # a Model the API server accepted but this version cannot read: skip, not 500
                continue
        return out

    async def get(self, name: str) -> Entry:
        objects = await self._objects()
        return _entry(await self._call(objects.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)))

    async def create(self, name: str, spec: dict[str, Any], annotations: dict[str, str]) -> Entry:
        body = {"apiVersion": API_VERSION, "kind": KIND,
                "metadata": {"name": name, "annotations": annotations}, "spec": spec}
        objects = await self._objects()
        return _entry(await self._call(objects.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)))

    async def replace(self, name: str, spec: dict[str, Any], annotations: dict[str, str],
                      resource_version: str | None) -> Entry:
        objects = await self._objects()
        got = await self._call(objects.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name))
        meta = got["metadata"]
        meta["annotations"] = {**(meta.get("annotations") or {}), **annotations}
        if resource_version is not None:
            # The API server refuses a PUT whose resourceVersion is not the current one (409): no lost update.
            meta["resourceVersion"] = resource_version
        body = {"apiVersion": API_VERSION, "kind": KIND, "metadata": meta, "spec": spec}
        return _entry(await self._call(objects.replace_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, body)))

    async def delete(self, name: str) -> None:
        objects = await self._objects()
        await self._call(objects.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name))

    async def scale(self, name: str, replicas: int, annotations: dict[str, str]) -> Entry:
        objects = await self._objects()
        patch = {"spec": {"replicas": replicas}, **({"metadata": {"annotations": annotations}} if annotations else {})}
        return _entry(await self._call(objects.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, patch)))

    async def restart(self, name: str) -> Entry:
        from kubernetes.aio import client

        entry = await self.get(name)
        # What `kubectl rollout restart` does; the operator's server-side apply leaves a field it
        # does not own alone, so the annotation survives its next reconcile.
        stamp = datetime.now(timezone.utc).isoformat()
        patch = {"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": stamp}}}}}
        await self._call(client.AppsV1Api(await self._client()).patch_namespaced_deployment(
            f"{name}-triton", self.namespace, patch))
        return entry

    async def _pods(self, name: str) -> list[str]:
        """The pods of the Model's Triton Deployment (its scale selector), not its engine builds."""
        from kubernetes.aio import client

        selector = (await self.get(name)).model.status.selector or f"conch.dev/model={name},{_COMPONENT}=triton"
        pods = await client.CoreV1Api(await self._client()).list_namespaced_pod(self.namespace, label_selector=selector)
        return sorted(p.metadata.name for p in pods.items if not p.metadata.deletion_timestamp)

    def _log_options(self, tail: int | None, since_s: int | None) -> dict[str, Any]:
        # Per pod: tail=100 is each pod's last 100 lines. Timestamps to merge by, stripped again.
        return {"container": _TRITON_CONTAINER, "timestamps": True, **({"tail_lines": tail} if tail is not None else {}),
                **({"since_seconds": since_s} if since_s else {})}

    async def logs(self, name: str, *, tail: int | None, since_s: int | None, follow: bool) -> AsyncIterator[str]:
        """Every pod's lines as `<pod> <line>`, merged by time; with follow, new lines of every pod
        (and of pods that appear meanwhile) as they come."""
        from kubernetes.aio import client
        from kubernetes.aio.client.exceptions import ApiException

        core = client.CoreV1Api(await self._client())
        opts = self._log_options(tail, since_s)
        if follow:
            async for line in self._follow(name, core, opts):
                yield line
            return

        async def read(pod: str) -> list[str]:
            try:
                return (await core.read_namespaced_pod_log(pod, self.namespace, **opts) or "").splitlines()  # None: empty
            except ApiException as exc:
                if exc.status in (400, 404):  # still starting (no container yet), or gone meanwhile
                    return []
                raise errors.logs_unavailable(pod, f"{exc.status} {exc.reason}") from None

        pods = await self._pods(name)
        for line in logmerge.merge(dict(zip(pods, await asyncio.gather(*(read(p) for p in pods))))):
            yield line

    async def _follow(self, name: str, core, opts: dict[str, Any]) -> AsyncIterator[str]:
        lines: asyncio.Queue = asyncio.Queue(_FOLLOW_BUFFER)  # bounded: a slow reader slows the pods' streams
        readers: dict[str, asyncio.Task] = {}
        order = logmerge.Reorder(_REORDER_S)
        loop = asyncio.get_running_loop()
        next_listing = 0.0
        try:
            while True:
                if loop.time() >= next_listing:
                    next_listing = loop.time() + _RELIST_S
                    try:
                        pods = await self._pods(name)
                    except NotFound:
                        return  # the Model was deleted: nothing more will come
                    except Exception as exc:  # the API server away a moment: the streams open go on
                        log.warning("listing the pods of model %s failed: %s", name, exc)
                        pods = []
                    for pod in pods:
                        # A pod whose stream could not open (not started yet) is tried again; one
                        # that streamed and ended (its container stopped) is not read twice.
                        task = readers.get(pod)
                        if task is None or (task.done() and not task.result()):
                            readers[pod] = loop.create_task(self._follow_pod(core, pod, opts, lines))
                try:
                    key, text = await asyncio.wait_for(lines.get(), _TICK_S)
                    order.push(key, text, loop.time())
                    while not lines.empty():
                        order.push(*lines.get_nowait(), loop.time())
                except asyncio.TimeoutError:
                    pass
                for line in order.due(loop.time()):
                    yield line
        finally:
            for task in readers.values():
                task.cancel()
            await asyncio.gather(*readers.values(), return_exceptions=True)

    async def _follow_pod(self, core, pod: str, opts: dict[str, Any], lines: asyncio.Queue) -> bool:
        """One pod's stream into `lines`; whether it said anything (False: try again later)."""
        try:
            response = await core.read_namespaced_pod_log_without_preload_content(
                pod, self.namespace, follow=True, _request_timeout=_FOLLOW_LIMIT_S, **opts)
        except Exception as exc:  # the API server away: the next listing tries again
            log.warning("following the log of pod %s failed: %s", pod, exc)
            return False
        said = False
        try:
            if response.status != 200:
                return False  # 400: the container has not started yet
            reader = logmerge.PodLines(pod)
            async for raw in response.content:
                await lines.put(reader.take(raw.decode(errors="replace")))
                said = True
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the stream broke (the pod went away): what it said stays said
            log.info("the log stream of pod %s ended: %s", pod, exc)
        finally:
            response.close()  # a follow stream never ends by itself: drop its connection
        return said

    async def largest_gpu_node(self, spec: dict[str, Any]) -> int | None:
        """The most nvidia.com/gpu one node the replica may land on can allocate (a replica's GPUs
        are on one node): schedulable nodes carrying the spec's gpu.product and nodeSelector labels.
        None when nodes cannot be read (RBAC): then the scheduler, not this check, has the last word."""
        from kubernetes.aio import client
        from kubernetes.aio.client.exceptions import ApiException

        try:
            nodes = await client.CoreV1Api(await self._client()).list_node()
        except ApiException as exc:
            log.warning("cannot list nodes to check GPU capacity: %s %s", exc.status, exc.reason)
            return None
        return max((_quantity((n.status.allocatable or {}).get(_GPU, "0")) for n in nodes.items
                    if _may_run_on(spec, n)), default=0)

    async def close(self) -> None:
        if self._api is not None:
            await self._api.close()
            await asyncio.sleep(0)
