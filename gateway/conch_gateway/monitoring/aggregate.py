"""Aggregates of request samples: totals, error rate, latency stats, requests/s. Pure."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Sequence

from .history import Sample
from .protocol import LatencyStats, SeriesStats


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence (what a test can compute by hand)."""
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def stats(key: str, samples: Sequence[Sample], window_s: float) -> SeriesStats:
    errors = sum(s.status >= 400 for s in samples)  # refusals count: the caller saw an error
    latency = None
    if samples:
        ordered = sorted(s.seconds for s in samples)
        latency = LatencyStats(min_s=ordered[0], avg_s=sum(ordered) / len(ordered), max_s=ordered[-1],
                               p50_s=percentile(ordered, 50), p95_s=percentile(ordered, 95),
                               p99_s=percentile(ordered, 99))
    return SeriesStats(key=key, requests=len(samples), errors=errors,
                       error_rate=errors / len(samples) if samples else 0.0,
                       requests_per_s=len(samples) / window_s if window_s > 0 else 0.0, latency=latency)


def by_key(samples: Sequence[Sample], window_s: float) -> tuple[SeriesStats, list[SeriesStats]]:
    groups: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        groups[sample.key].append(sample)
    return stats("total", samples, window_s), [stats(k, groups[k], window_s) for k in sorted(groups)]


def by_model(samples: Sequence[Sample], window_s: float) -> list[SeriesStats]:
    """One series per model the requests resolved to; requests for no model are left out."""
    groups: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        if sample.model is not None:
            groups[sample.model].append(sample)
    return [stats(m, groups[m], window_s) for m in sorted(groups)]


def count_states(states: Sequence[str]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for state in states:
        counts[state] += 1
    return dict(counts)
