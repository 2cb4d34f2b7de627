"""The WebSocket fan-out's pure parts: bounded queues drop slow clients, subscriptions filter."""

import asyncio

import pytest

from conch_gateway.monitoring.hub import Hub, subscribed


def test_a_slow_subscriber_is_dropped_and_the_others_keep_receiving():
    async def run():
        hub = Hub(queue_size=2)
        slow, fast = hub.join(), hub.join()
        for i in range(3):
            hub.publish("model_status_update", {"i": i})
            if not fast.queue.empty():
                await fast.queue.get()
        return slow, fast

    slow, fast = asyncio.run(run())
    assert slow.dropped and slow.queue.get_nowait() is None  # the writer's cue to close with SLOW_CONSUMER
    assert not fast.dropped


def test_subscriptions_use_seed_names_and_refuse_unknown_ones():
    assert subscribed(["model_status", "system_alert"]) == {"model_status_update", "system_alert"}
    with pytest.raises(ValueError):
        subscribed(["gpu"])
