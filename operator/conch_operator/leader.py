"""Leader election on a coordination.k8s.io Lease, as client-go does it: of several operator
replicas one reconciles, the others wait and take over within about one lease duration when it
stops renewing (crash, node loss, partition).

kopf's peering is not leader election — operators of equal priority all pause — so the operator
runs kopf only while it holds the Lease. Expiry is judged by how long the Lease has looked
unchanged *to this replica* (its own monotonic clock), so clock skew between nodes cannot make a
live leader's Lease look expired. A leader that cannot renew before its renew deadline exits at
once rather than risk two replicas reconciling.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Protocol

from .kube import KubeError

log = logging.getLogger("conch.operator.leader")


class LeaseStore(Protocol):
    """The calls election needs, as `kube.Kube` offers them."""

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...
    def create(self, obj: dict[str, Any]) -> dict[str, Any] | None: ...  # None: it exists already
    def replace(self, obj: dict[str, Any]) -> dict[str, Any]: ...  # KubeError 409 on a stale resourceVersion


def _default_identity() -> str:
    return os.environ.get("POD_NAME") or f"{os.uname().nodename}-{os.getpid()}"


@dataclass(frozen=True)
class ElectionConfig:
    """client-go's defaults: a 15 s Lease, renewed every 2 s, given up after 10 s without renewal."""

    namespace: str
    name: str = "conch-operator"
    identity: str = field(default_factory=_default_identity)
    lease_duration_s: float = 15.0

    @property
    def renew_deadline_s(self) -> float:
        return self.lease_duration_s * 2 / 3

    @property
    def retry_period_s(self) -> float:
        return self.lease_duration_s / 7.5


class LeaderElector:
    def __init__(self, store: LeaseStore, config: ElectionConfig, clock: Callable[[], float] = time.monotonic):
        self.store = store
        self.config = config
        self._clock = clock
        self._observed: tuple[str, str] | None = None  # (holder, renewTime) last seen
        self._observed_at = 0.0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._last_renewal = 0.0

    def try_acquire_or_renew(self) -> bool:
        """One round: True when this replica holds the Lease afterwards."""
        cfg, now = self.config, _rfc3339_micro()
        lease = self.store.get("Lease", cfg.namespace, cfg.name)
        if lease is None:
            return self.store.create(self._lease(None, now, transitions=0)) is not None
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, spec.get("renewTime") or "")
        if record != self._observed:
            self._observed, self._observed_at = record, self._clock()
        if holder and holder != cfg.identity:
            duration = spec.get("leaseDurationSeconds") or cfg.lease_duration_s
            if self._clock() - self._observed_at < duration:
                return False  # a live leader
        transitions = (spec.get("leaseTransitions") or 0) + (0 if holder == cfg.identity else 1)
        acquired = spec.get("acquireTime") if holder == cfg.identity else None
        try:
            self.store.replace(self._lease(lease, now, transitions, acquired))
        except KubeError as exc:
            if exc.status == 409:  # another replica renewed or took it first
                return False
            raise
        return True

    def wait_for_leadership(self) -> None:
        """Blocks until this replica leads. API errors only delay it: a standby that crashed on a
        passing 5xx would sit in CrashLoopBackOff exactly when it is needed."""
        announced = False
        while True:
            try:
                if self.try_acquire_or_renew():
                    break
            except Exception as exc:
                log.warning("reading the Lease failed (will retry): %s", exc)
            if not announced:
                log.info("standing by: Lease %s/%s is held by %s", self.config.namespace, self.config.name,
                         self._observed[0] if self._observed else "?")
                announced = True
            time.sleep(self.config.retry_period_s)
        log.info("leading as %s (Lease %s/%s)", self.config.identity, self.config.namespace, self.config.name)

    def keep_renewing(self, on_lost: Callable[[], None]) -> None:
        """Renews in the background. A watchdog, not the renewing thread, enforces the renew
        deadline: an API call can hang far longer than the deadline (standbys take over after one
        lease duration), so `on_lost` must not wait for it to return."""
        self._last_renewal = self._clock()

        def renew() -> None:
            while not self._stop.wait(self.config.retry_period_s):
                try:
                    if self.try_acquire_or_renew():
                        self._last_renewal = self._clock()
                except Exception as exc:  # the API server unreachable counts as not renewed
                    log.warning("renewing the Lease failed: %s", exc)

        def watch() -> None:
            while not self._stop.wait(self.config.retry_period_s / 4):
                if self._clock() - self._last_renewal > self.config.renew_deadline_s:
                    log.error("lost the Lease %s/%s: stopping", self.config.namespace, self.config.name)
                    on_lost()
                    return

        self._threads = [threading.Thread(target=renew, name="lease-renewal", daemon=True),
                         threading.Thread(target=watch, name="lease-watchdog", daemon=True)]
        for thread in self._threads:
            thread.start()

    def release(self) -> None:
        """On a clean shutdown: give the Lease up so a standby takes over at once. The renewing
        thread is stopped first, or a renewal in flight could take the released Lease back."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2 * self.config.retry_period_s)
        cfg = self.config
        try:
            lease = self.store.get("Lease", cfg.namespace, cfg.name)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == cfg.identity:
                lease["spec"] = {**lease["spec"], "holderIdentity": "", "leaseDurationSeconds": 1}
                self.store.replace(lease)
        except Exception as exc:  # best effort: the Lease expires anyway
            log.warning("releasing the Lease failed: %s", exc)

    def _lease(self, current: dict[str, Any] | None, now: str, transitions: int,
               acquired: str | None = None) -> dict[str, Any]:
        cfg = self.config
        metadata = {"name": cfg.name, "namespace": cfg.namespace}
        if current is not None:
            metadata["resourceVersion"] = current["metadata"]["resourceVersion"]
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": {"holderIdentity": cfg.identity, "leaseDurationSeconds": max(1, round(cfg.lease_duration_s)),
                     "acquireTime": acquired or now, "renewTime": now, "leaseTransitions": transitions},
        }


def _rfc3339_micro() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
