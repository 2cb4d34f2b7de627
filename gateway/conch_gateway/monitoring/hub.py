"""Fan-out of monitoring events to WebSocket clients, each behind a bounded queue.

A client that does not drain its queue is dropped (closed with SLOW_CONSUMER) rather than
buffered without limit or allowed to slow the others. Pure asyncio: no I/O here."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

SLOW_CONSUMER = 4008  # an application close code (4000-4999): the client fell too far behind
GONE = object()  # the client left
EVENTS = {"model_status": "model_status_update", "gpu_metrics": "gpu_metrics_update", "system_alerts": "system_alert"}


@dataclass(eq=False)
class Subscriber:
    queue: asyncio.Queue
    events: set[str] = field(default_factory=lambda: set(EVENTS.values()))  # everything until it subscribes
    dropped: bool = False


class Hub:
    def __init__(self, queue_size: int = 256) -> None:
        self.queue_size = queue_size
        self.subscribers: set[Subscriber] = set()

    def join(self) -> Subscriber:
        subscriber = Subscriber(asyncio.Queue(self.queue_size))
        self.subscribers.add(subscriber)
        return subscriber

    def leave(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)

    def publish(self, event_type: str, data: dict[str, Any]) -> None:
        message = {"type": event_type, "data": {**data, "timestamp": now()}}
        for subscriber in list(self.subscribers):
            if event_type not in subscriber.events or subscriber.dropped:
                continue
            try:
                subscriber.queue.put_nowait(message)
            except asyncio.QueueFull:
                subscriber.dropped = True
                subscriber.queue = _closing()


def _closing() -> asyncio.Queue:
    # The writer wakes on this sentinel and closes the socket with SLOW_CONSUMER.
    queue: asyncio.Queue = asyncio.Queue(1)
    queue.put_nowait(None)
    return queue


def subscribed(events: list[str]) -> set[str]:
    """Seed 003's names (model_status, ...) or the event types themselves; unknown names are refused."""
    unknown = [e for e in events if e not in EVENTS and e not in EVENTS.values()]
    if unknown:
        raise ValueError(f"unknown events: {', '.join(unknown)}; known: {', '.join(EVENTS)}")
    return {EVENTS.get(e, e) for e in events}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
