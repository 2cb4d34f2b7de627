"""The pure aggregation behind /api/monitoring: figures a person can check by hand."""

from conch_gateway.monitoring import aggregate
from conch_gateway.monitoring.history import History, Sample


def test_stats_match_hand_computed_figures():
    samples = [Sample(100 + i, "/v1/generate", 200, s) for i, s in enumerate([0.1, 0.2, 0.3, 0.4])]
    samples.append(Sample(105, "/v1/generate", 503, 1.0))
    samples.append(Sample(106, "/v1/models", 200, 0.05))
    total, series = aggregate.by_key(samples, window_s=10)
    assert (total.requests, total.errors) == (6, 1)
    assert total.error_rate == 1 / 6
    assert total.requests_per_s == 0.6
    generate = {s.key: s for s in series}["/v1/generate"]
    assert generate.requests == 5 and generate.errors == 1
    assert generate.latency.min_s == 0.1 and generate.latency.max_s == 1.0
    assert abs(generate.latency.avg_s - 0.4) < 1e-9
    assert generate.latency.p50_s == 0.3  # nearest rank: ceil(0.5 * 5) = 3rd
    assert generate.latency.p99_s == 1.0


def test_client_errors_count_as_errors_and_empty_windows_have_no_latency():
    total, series = aggregate.by_key([Sample(1, "a", 400, 0.2)], window_s=1)
    assert total.errors == 1
    empty, none = aggregate.by_key([], window_s=60)
    assert (empty.requests, empty.error_rate, empty.latency, none) == (0, 0.0, None, [])


def test_history_is_bounded_and_windows_by_time():
    history = History(capacity=3)
    for at in range(5):
        history.add(Sample(at, "k", 200, 0.1))
    assert len(history) == 3  # the two oldest were dropped
    assert [s.at for s in history.between(3, 10)] == [3, 4]


def test_count_states():
    assert aggregate.count_states(["healthy", "deploying", "healthy"]) == {"healthy": 2, "deploying": 1}
