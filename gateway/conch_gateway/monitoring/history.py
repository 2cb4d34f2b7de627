"""A bounded in-process history of requests: the local stand-in for Prometheus.

Bounded on purpose (a deque with maxlen): a gateway without Prometheus must not grow without
limit, so only the newest `capacity` requests are kept and older windows read as empty."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # unix seconds, when the request ended
    key: str  # the route template it is grouped by
    status: int
    seconds: float
    model: str | None = None  # the model id the request resolved to (None: no model, or none found)
    method: str = ""


class History:
    def __init__(self, capacity: int = 100_000) -> None:
        self._samples: deque[Sample] = deque(maxlen=capacity)

    def add(self, sample: Sample) -> None:
        self._samples.append(sample)

    def between(self, start: float, end: float) -> list[Sample]:
        return [s for s in self._samples if start <= s.at <= end]

    def __len__(self) -> int:
        return len(self._samples)

    def __iter__(self) -> Iterable[Sample]:
        return iter(tuple(self._samples))
