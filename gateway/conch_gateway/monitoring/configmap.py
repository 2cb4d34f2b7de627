"""I/O adapter: the monitoring configuration and alert rules as one ConfigMap that every replica
watches, so a PUT on one replica is what a GET on any other answers a moment later.

The chart creates the ConfigMap (empty); replicas only read and write its keys, so RBAC can name
it (resourceNames): the inference gateway may get/list/watch it, the management API also update
and patch it. Lists and watches carry the field selector metadata.name=<name>, which is what lets
the API server authorize them against resourceNames. Reads are served from the watched copy;
writes replace the object with the resourceVersion read, so two replicas adding rules at once
cannot lose one (409 → read again, apply again).

Where the settings name a PrometheusRule (the management API's), the rules are also copied into it
(prometheusrule.py): after each write of the rules, and on each change the watch sees."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..errors import ConchError, service_not_configured
from ..kubernetes_client import api_client
from .config import (CONFIG_KEY, RULES_KEY, AlertRule, MonitoringConfig, RulesChange, RulesWritten, RuleStorage,
                     config_text, parse_config, parse_rules, rules_texts)
from .prometheusrule import Owner, PrometheusRuleCopy

log = logging.getLogger("conch.gateway.monitoring")
_CONFLICT_RETRIES = 5


class ConfigMapStore:
    def __init__(self, namespace: str, name: str, api_client=None, *, watch_timeout_s: int = 300,
                 max_backoff_s: float = 5.0, prometheus_rule: PrometheusRuleCopy | None = None) -> None:
        self.namespace = namespace
        self.name = name
        self._api = api_client
        self._data: dict[str, str] = {}
        self._version = 0  # resourceVersion of the copy, as an int: never go back to an older copy
        self._uid: str | None = None  # the ConfigMap's, which owns the PrometheusRule
        self.prometheus_rule = prometheus_rule
        self._copy_task: asyncio.Task | None = None
        self._copy_wanted = False
        self._copy_note: str | None = None
        self._task: asyncio.Task | None = None
        self._watch_timeout_s = watch_timeout_s
        self._max_backoff_s = max_backoff_s

    # -- reads: the watched copy --------------------------------------------------------------
    def config(self) -> MonitoringConfig:
        return _valid(parse_config, self._data.get(CONFIG_KEY), MonitoringConfig())

    def rules(self) -> list[AlertRule]:
        return _valid(parse_rules, self._data.get(RULES_KEY), [])

    # -- writes --------------------------------------------------------------------------------
    async def put_config(self, config: MonitoringConfig) -> None:
        await self._update(lambda data: {**data, CONFIG_KEY: config_text(config)})

    async def update_rules(self, change: RulesChange) -> RulesWritten:
        result: list[list[AlertRule]] = []

        def apply(data: dict[str, str]) -> dict[str, str]:
            rules = change(_valid(parse_rules, data.get(RULES_KEY), []))
            result[:] = [rules]
            return {**data, **rules_texts(rules)}

        written = await self._update(apply)
        storage = RuleStorage(config=f"configmap {self.namespace}/{self.name}",
                              note="this replica copies no rules into a PrometheusRule "
                                   "(CONCH_MONITORING_PROMETHEUS_RULE is unset)")
        if self.prometheus_rule is not None:
            # In the request, so the answer says where the rules are; the watch would copy them too.
            meta = written.metadata
            copied = await self.prometheus_rule.write(await self._client(), result[0],
                                                      Owner(self.name, meta.uid, meta.resource_version))
            storage = storage.model_copy(update={"prometheus_rule": copied.prometheus_rule, "note": copied.note})
        return RulesWritten(result[0], storage)

    async def _update(self, change):
        from kubernetes.aio import client
        from kubernetes.aio.client.exceptions import ApiException

        core = client.CoreV1Api(await self._client())
        for _ in range(_CONFLICT_RETRIES):
            try:
                # The object as read, its resourceVersion included (a stale one is 409), and its
                # metadata kept: Helm's labels and annotations mark the chart's ownership.
                current = await core.read_namespaced_config_map(self.name, self.namespace)
                current.data = change(dict(current.data or {}))
                written = await core.replace_namespaced_config_map(self.name, self.namespace, current)
            except ApiException as error:
                if error.status == 409:
                    continue  # another replica wrote in between: read its write and apply ours on top
                raise _write_error(self.namespace, self.name, error) from None
            # this replica sees its own write at once
            self._take(written.metadata.resource_version, written.data, uid=written.metadata.uid)
            return written
        raise service_not_configured("CONFIG_CONFLICT", f"ConfigMap {self.namespace}/{self.name} kept changing "
                                     "under this write; retry it")

    # -- the watch -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Serve the ConfigMap's copy from the first request on; without it (RBAC, the API server
        away) the defaults, and the watch keeps trying."""
        resource_version = None
        try:
            resource_version = await self._relist()
        except Exception as error:
            log.warning("reading ConfigMap %s/%s failed (%s): the defaults until it can be read",
                        self.namespace, self.name, error)
        self._task = asyncio.create_task(self._watch_forever(resource_version), name="monitoring-configmap-watch")

    async def stop(self) -> None:
        for task in (self._task, self._copy_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._api is not None:
            await self._api.close()

    async def _client(self):
        if self._api is None:
            self._api = await api_client()
        return self._api

    def _list_args(self) -> tuple[Any, tuple, dict]:
        from kubernetes.aio import client

        core = client.CoreV1Api(self._api)
        return core.list_namespaced_config_map, (self.namespace,), {"field_selector": f"metadata.name={self.name}"}

    async def _relist(self) -> str:
        await self._client()
        function, args, kwargs = self._list_args()
        listing = await function(*args, **kwargs)
        if listing.items:
            item = listing.items[0]
            self._take(item.metadata.resource_version, item.data, force=True, uid=item.metadata.uid)
        else:
            # Not created yet (the chart creates it): defaults until it appears; writes say what is missing.
            log.warning("ConfigMap %s/%s does not exist: monitoring configuration is the defaults",
                        self.namespace, self.name)
            self._data, self._version = {}, 0
        return listing.metadata.resource_version

    async def _watch_forever(self, resource_version: str | None) -> None:
        from kubernetes.aio import watch

        backoff = 0.1
        while True:
            try:
                if resource_version is None:
                    resource_version = await self._relist()
                function, args, kwargs = self._list_args()
                async with watch.Watch().stream(function, *args, **kwargs, resource_version=resource_version,
                                                timeout_seconds=self._watch_timeout_s) as stream:
                    async for event in stream:
                        kind, obj = event["type"], event["object"]
                        if kind == "ERROR":
                            raise RuntimeError(f"watch error: {obj}")
                        resource_version = obj.metadata.resource_version
                        if kind in ("ADDED", "MODIFIED"):
                            self._take(resource_version, obj.data, uid=obj.metadata.uid)
                        elif kind == "DELETED":
                            self._data, self._version = {}, 0
                        backoff = 0.1
                # The server ended the watch (timeout): resume where it left off.
            except asyncio.CancelledError:
                raise
            except Exception as error:
                # 410 Gone after compaction, an API server restart, a dropped connection: list again.
                log.warning("watching ConfigMap %s/%s failed (%s); listing again in %.1fs",
                            self.namespace, self.name, error, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)
                resource_version = None

    def _take(self, resource_version: str | None, data: dict[str, str] | None, force: bool = False,
              uid: str | None = None) -> None:
        # A write's answer and the watch event of the same write both arrive; keep the newer copy.
        # (etcd's resourceVersions are increasing integers; anything else is simply taken.)
        try:
            version = int(resource_version or 0)
        except ValueError:
            version, force = 0, True
        if force or version >= self._version:
            self._data, self._version, self._uid = dict(data or {}), version, uid or self._uid
            self._copy_soon()

    # -- the PrometheusRule copy, kept up with the watched ConfigMap ---------------------------
    def _copy_soon(self) -> None:
        """A `kubectl edit` of the ConfigMap, or another replica's write, reaches the copy too. One
        task at a time, which copies the newest version when it runs (stamps keep it ordered)."""
        if self.prometheus_rule is None or self._uid is None:
            return
        self._copy_wanted = True
        if self._copy_task is None or self._copy_task.done():
            self._copy_task = asyncio.get_running_loop().create_task(self._copy_latest(),
                                                                     name="monitoring-prometheusrule-copy")

    async def _copy_latest(self) -> None:
        while self._copy_wanted:
            self._copy_wanted = False
            try:
                rules = parse_rules(self._data.get(RULES_KEY))
            except ValueError:
                return  # a hand-broken key: keep the last good copy rather than empty it
            copied = await self.prometheus_rule.write(await self._client(), rules,
                                                      Owner(self.name, self._uid, str(self._version)))
            if copied.note != self._copy_note:  # said once, not on every change
                if copied.note:
                    log.warning("alert rules not copied into a PrometheusRule: %s", copied.note)
                self._copy_note = copied.note


def _valid(parse, text: str | None, default):
    """The ConfigMap is editable with kubectl: a hand-broken key reads as the default, with a warning."""
    try:
        return parse(text)
    except ValueError as error:
        log.warning("ignoring an invalid monitoring configuration in the ConfigMap: %s", error)
        return default


def _write_error(namespace: str, name: str, error) -> ConchError:
    if error.status == 403:
        # The inference gateway's ServiceAccount may only read it (least privilege): the chart's
        # ingress sends /api/config writes to the management API.
        return ConchError(409, "OPERATION_REFUSED", f"writing ConfigMap {namespace}/{name} was refused: this "
                          "gateway may only read the monitoring configuration; send the write to the management API")
    if error.status == 404:
        return service_not_configured("CONFIG_UNAVAILABLE", f"ConfigMap {namespace}/{name} does not exist; "
                                      "the chart creates it (CONCH_MONITORING_CONFIG_MAP names it)")
    return service_not_configured("CONFIG_UNAVAILABLE", f"ConfigMap {namespace}/{name} could not be written: "
                                  f"{error.status} {error.reason}")
