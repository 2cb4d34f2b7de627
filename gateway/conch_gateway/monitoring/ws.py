"""WebSocket /ws/monitor: auth on connect, seed 003's subscribe message, bounded per-client queue."""

from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from .. import errors
from ..auth.middleware import credential
from .hub import GONE, SLOW_CONSUMER, Hub, subscribed
from .poller import ensure_polling

router = APIRouter()


@router.websocket("/ws/monitor")
async def monitor(websocket: WebSocket) -> None:
    state = websocket.app.state.monitoring
    if state.authenticator is not None:
        presented = websocket.query_params.get("token") or credential(websocket.scope)
        try:
            if presented is None:
                raise errors.authentication_failed("no credential: pass ?token= or an Authorization header")
            await state.authenticator.authenticate(presented)
        except errors.ConchError as exc:
            await websocket.close(code=1008, reason=exc.message[:120])  # policy violation
            return
    await websocket.accept()
    hub: Hub = state.hub
    subscriber = hub.join()
    ensure_polling(websocket.app)
    reader = asyncio.create_task(_read(websocket, subscriber))
    try:
        while True:
            message = await subscriber.queue.get()
            if message is GONE:
                return
            if message is None:
                await websocket.close(code=SLOW_CONSUMER, reason="too slow: events were dropped")
                return
            await websocket.send_text(json.dumps(message))
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client went away; nothing to tell it
    finally:
        reader.cancel()
        hub.leave(subscriber)


async def _read(websocket: WebSocket, subscriber) -> None:
    try:
        while True:
            message = await websocket.receive_json()
            try:
                if not isinstance(message, dict) or message.get("action") != "subscribe":
                    raise ValueError('send {"action": "subscribe", "events": [...]}')
                subscriber.events = subscribed(list(message.get("events") or []))
                await websocket.send_text(json.dumps({"type": "subscribed", "events": sorted(subscriber.events)}))
            except (ValueError, TypeError) as exc:
                await websocket.send_text(json.dumps({"type": "error", "error": {"code": "INVALID_REQUEST",
                                                                                  "message": str(exc)}}))
    except (WebSocketDisconnect, RuntimeError, json.JSONDecodeError):
        try:
            subscriber.queue.put_nowait(GONE)  # wakes the writer, which then ends
        except asyncio.QueueFull:
            pass  # the writer is busy and will fail on the closed socket instead
