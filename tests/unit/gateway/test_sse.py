"""The SSE response every streaming dialect leaves through, driven as an ASGI app with an
in-memory receive/send: framing, one write per event, keep-alive comments, and a client that goes
away closing the event source (which is what cancels the request in Triton)."""

from __future__ import annotations

import asyncio

from conch_gateway import sse


async def run(response, receive, timeout=5.0):
    sent = []

    async def send(message):
        sent.append(message)

    await asyncio.wait_for(response({"type": "http"}, receive, send), timeout)
    return sent


def never_disconnects():
    forever = asyncio.Event()

    async def receive():
        await forever.wait()

    return receive


async def test_each_event_is_its_own_data_frame_then_the_body_ends():
    async def events():
        yield '{"token": "a"}'
        yield "[DONE]"

    sent = await run(sse.event_stream(events(), {"X-Request-Id": "r1"}), never_disconnects())
    start = sent[0]
    assert start["type"] == "http.response.start" and start["status"] == 200
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"text/event-stream; charset=utf-8"
    assert headers[b"cache-control"] == b"no-cache" and headers[b"x-accel-buffering"] == b"no"
    assert headers[b"x-request-id"] == b"r1"
    assert [m["body"] for m in sent[1:]] == [b'data: {"token": "a"}\n\n', b"data: [DONE]\n\n", b""]
    assert [m["more_body"] for m in sent[1:]] == [True, True, False]


async def test_a_multi_line_event_becomes_one_event_of_several_data_lines():
    async def events():
        yield "one\ntwo"

    sent = await run(sse.event_stream(events()), never_disconnects())
    assert sent[1]["body"] == b"data: one\ndata: two\n\n"


async def test_a_client_that_leaves_closes_the_event_source_at_once():
    closed, gone = asyncio.Event(), asyncio.Event()

    async def events():
        try:
            yield "first"
            await asyncio.Event().wait()  # a model that is slow to produce the next token
        finally:
            closed.set()

    async def receive():
        await gone.wait()
        return {"type": "http.disconnect"}

    async def leave_soon():
        await asyncio.sleep(0.05)
        gone.set()

    asyncio.get_running_loop().create_task(leave_soon())
    sent = await run(sse.event_stream(events()), receive)  # returns instead of hanging or raising
    assert closed.is_set()
    assert [m.get("body") for m in sent[1:]] == [b"data: first\n\n"]  # no end-of-body after a disconnect


async def test_idle_streams_get_keep_alive_comments(monkeypatch):
    monkeypatch.setattr(sse, "KEEPALIVE_S", 0.02)

    async def events():
        await asyncio.sleep(0.15)
        yield "late"

    sent = await run(sse.event_stream(events()), never_disconnects())
    bodies = [m["body"] for m in sent[1:]]
    assert bodies.count(b": ping\n\n") >= 3
    assert bodies[-2:] == [b"data: late\n\n", b""]
