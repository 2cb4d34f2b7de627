"""The operator's Prometheus metrics."""

from __future__ import annotations

import time
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter("conch_operator_reconciles_total", "Reconciles of Models by trigger and result.",
                     ["trigger", "result"])
DURATION = Histogram("conch_operator_reconcile_duration_seconds", "Time one reconcile takes.", ["trigger"],
                     buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
QUEUE_DEPTH = Gauge("conch_operator_queue_depth", "Models waiting to be reconciled.")
REJECTED_WRITES = Counter("conch_operator_rejected_writes_total",
                          "Writes of a Model's objects that the API server refused (each is an Event on the Model).")
ERRORS = Counter("conch_operator_reconcile_errors_total", "Reconciles that raised, by error type.", ["error"])


@contextmanager
def measured(trigger: str):
    started = time.perf_counter()
    try:
        yield
    except Exception as exc:
        RECONCILES.labels(trigger, "error").inc()
        ERRORS.labels(type(exc).__name__).inc()
        raise
    else:
        RECONCILES.labels(trigger, "ok").inc()
    finally:
        DURATION.labels(trigger).observe(time.perf_counter() - started)
