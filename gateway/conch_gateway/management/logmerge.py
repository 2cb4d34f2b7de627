"""Pure: the logs of a model's pods as one stream, in time order, each line prefixed by its pod.

The Kubernetes API puts an RFC 3339 timestamp in front of every line when asked (timestamps=true),
with the nanoseconds' trailing zeros trimmed, so timestamps are parsed, never compared as text
("…05.1Z" sorts after "…05.12Z" as text). Each pod's own lines are already in order; merging them
is a k-way merge. The timestamp is stripped again and the pod's name put in front: `<pod> <line>`,
the shape /api/models/{id}/logs has always had. A line that carries no timestamp keeps the time of
the line before it, so it stays where its pod put it."""

from __future__ import annotations

import heapq
import itertools
import re
from datetime import datetime
from typing import Iterable

Key = tuple[int, int]  # (whole seconds since the epoch, nanoseconds)
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d) ?")
_EARLIEST: Key = (-(2**63), 0)


def split(line: str) -> tuple[Key | None, str]:
    """The line's timestamp and the line without it; (None, line) when it has none."""
    match = _STAMP.match(line)
    if match is None:
        return None, line
    whole, fraction, zone = match.groups()
    seconds = int(datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone)).timestamp())
    return (seconds, int((fraction or "").ljust(9, "0"))), line[match.end():]


class PodLines:
    """One pod's stream: stamps each line, giving an unstamped one its predecessor's time."""

    def __init__(self, pod: str) -> None:
        self.pod = pod
        self.last: Key = _EARLIEST

    def take(self, line: str) -> tuple[Key, str]:
        key, text = split(line)
        if key is not None:
            self.last = key
        return self.last, f"{self.pod} {text.rstrip(chr(10))}\n"


def merge(per_pod: dict[str, Iterable[str]]) -> list[str]:
    """Every pod's lines (timestamped, in the pod's own order) merged by time; a tie keeps pod order."""
    streams = []
    for rank, (pod, lines) in enumerate(sorted(per_pod.items())):
        reader = PodLines(pod)
        streams.append([(*reader.take(line), rank, index) for index, line in enumerate(lines)])
    return [text for _key, text, _rank, _index in heapq.merge(*streams, key=lambda e: (e[0], e[2], e[3]))]


class Reorder:
    """Following several pods at once: a line waits `window_s` after it arrived before it goes out,
    so that lines of other pods stamped earlier but arriving a little later (above all the backlogs
    every pod sends first) go out before it. Beyond the window, arrival order wins."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._heap: list[tuple[Key, int, float, str]] = []
        self._count = itertools.count()

    def push(self, key: Key, text: str, now: float) -> None:
        heapq.heappush(self._heap, (key, next(self._count), now, text))

    def due(self, now: float) -> list[str]:
        """Lines that may go out now, earliest stamp first: the earliest waits its window, and
        nothing stamped later overtakes it."""
        out = []
        while self._heap and self._heap[0][2] <= now - self.window_s:
            out.append(heapq.heappop(self._heap)[3])
        return out

    def __len__(self) -> int:
        return len(self._heap)
