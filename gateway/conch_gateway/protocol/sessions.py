"""Seed 002's chat service shapes: POST /chat, POST /reset, GET /status."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


SESSION_ID = r"^[A-Za-z0-9._:-]+$"


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message: str = Field(min_length=1, max_length=100_000)
    max_tokens: int = Field(512, ge=1, le=32_768)
    temperature: float = Field(0.7, ge=0.0, le=2.0)
    session_id: str | None = Field(None, min_length=1, max_length=128, pattern=SESSION_ID,
                                   description="Also accepted as the X-Session-Id header; default: 'default'.")
    model: str | None = Field(None, description="The model of this session; default: the gateway's default model.")
    stream: bool = False


class ChatResponse(BaseModel):
    message: str
    response: str
    status: Literal["success"] = "success"


class ResetResponse(BaseModel):
    message: str = "conversation reset"
    status: Literal["success"] = "success"


class StatusResponse(BaseModel):
    model_name: str
    device: str
    conversation_length: int
    memory_allocated: int
