"""What the operator remembers about each Model between reconciles, in one object kept in kopf's
memo (never in module globals): the status it wrote last, the generation it applied last, and the
write the API server refused last (so that it is not sent again before its back-off has passed).

The operator is the only writer of Model status, so the status it wrote last is the true previous
status even when the triggering event carried an older copy. Per Model, reconciles never overlap
(the work queue sees to it), so the maps need no lock beyond the GIL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

Key = tuple[str, str]  # (namespace, Model name)


@dataclass(frozen=True)
class Rejection:
    """The API server refused a write of this generation's objects `attempts` times in a row; the
    next attempt waits until `retry_at` — unless the spec changes (a new generation) first."""

    generation: int | None
    message: str
    attempts: int
    retry_at: datetime

    def due(self, now: datetime) -> bool:
        return now >= self.retry_at


class ModelMemory:
    def __init__(self) -> None:
        self._written: dict[Key, dict[str, Any]] = {}
        self._applied_generation: dict[Key, int | None] = {}
        self._rejections: dict[Key, Rejection] = {}

    def written_status(self, key: Key) -> dict[str, Any] | None:
        return self._written.get(key)

    def remember_status(self, key: Key, status: dict[str, Any]) -> None:
        self._written[key] = status

    def remember_applied(self, key: Key, generation: int | None) -> None:
        self._applied_generation[key] = generation

    def changed_since_applied(self, key: Key, generation: int | None) -> bool:
        """Did this process apply an earlier generation of the Model (a spec change it saw)?"""
        return self._applied_generation.get(key, generation) != generation

    def needs_apply(self, body: dict[str, Any]) -> bool:
        """Has the spec changed since it was last applied (or was it never applied by this process)?"""
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        return key not in self._applied_generation or self._applied_generation[key] != body["metadata"].get("generation")

    def rejection(self, key: Key, generation: int | None) -> Rejection | None:
        """The refusal of this generation's objects, if the last attempt was refused. The refusal
        of an earlier spec is over: it is dropped, and never asks for a retry again."""
        rejection = self._rejections.get(key)
        if rejection is not None and rejection.generation != generation:
            self._rejections.pop(key, None)
            return None
        return rejection

    def remember_rejection(self, key: Key, generation: int | None, message: str, now: datetime, *,
                           base_s: float, cap_s: float) -> Rejection:
        """One more refused attempt: the wait before the next doubles each time, up to `cap_s`."""
        before = self.rejection(key, generation)
        attempts = before.attempts + 1 if before else 1
        delay = min(base_s * 2 ** (attempts - 1), cap_s)
        rejection = Rejection(generation, message, attempts, now + timedelta(seconds=delay))
        self._rejections[key] = rejection
        return rejection

    def forget_rejection(self, key: Key) -> None:
        self._rejections.pop(key, None)

    def rejections_due(self, now: datetime) -> list[Key]:
        """Models whose refused write may be tried again now."""
        return [key for key, rejection in list(self._rejections.items()) if rejection.due(now)]

    def forget(self, key: Key) -> None:
        """The Model is gone: drop what was remembered about it."""
        self._written.pop(key, None)
        self._applied_generation.pop(key, None)
        self._rejections.pop(key, None)
