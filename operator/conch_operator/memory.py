"""What the operator remembers about each Model between reconciles, in one object kept in kopf's
memo (never in module globals): the status it wrote last and the generation it applied last.

The operator is the only writer of Model status, so the status it wrote last is the true previous
status even when the triggering event carried an older copy. Per Model, reconciles never overlap
(the work queue sees to it), so the maps need no lock beyond the GIL.
"""

from __future__ import annotations

from typing import Any

Key = tuple[str, str]  # (namespace, Model name)


class ModelMemory:
    def __init__(self) -> None:
        self._written: dict[Key, dict[str, Any]] = {}
        self._applied_generation: dict[Key, int | None] = {}

    def written_status(self, key: Key) -> dict[str, Any] | None:
        return self._written.get(key)

    def remember_status(self, key: Key, status: dict[str, Any]) -> None:
        self._written[key] = status

    def remember_applied(self, key: Key, generation: int | None) -> None:
        self._applied_generation[key] = generation

    def needs_apply(self, body: dict[str, Any]) -> bool:
        """Has the spec changed since it was last applied (or was it never applied by this process)?"""
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        return key not in self._applied_generation or self._applied_generation[key] != body["metadata"].get("generation")

    def forget(self, key: Key) -> None:
        """The Model is gone: drop what was remembered about it."""
        self._written.pop(key, None)
        self._applied_generation.pop(key, None)
