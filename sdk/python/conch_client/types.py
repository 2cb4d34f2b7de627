"""Typed responses; unknown fields are kept (extra="allow") so a newer gateway does not break old clients."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Usage(_Open):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None


class GenerateResult(_Open):
    text: str
    model: str
    finish_reason: str | None = None
    latency: float | None = None
    usage: Usage | None = None


class StreamEvent(_Open):
    token: str = ""
    finished: bool = False


class Model(_Open):
    id: str
    status: str | None = None


class Accepted(Model):
    """A management change the gateway accepted (create, start, stop, restart); progress shows in
    the model's status (`get_model`)."""

    name: str | None = None
    message: str | None = None


class ChatReply(_Open):
    message: str
    response: str
    status: str


class SessionStatus(_Open):
    model_name: str | None = None
    device: str | None = None
    conversation_length: int = 0
    memory_allocated: Any = None
