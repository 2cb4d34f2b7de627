"""Conch's Python SDK: `Client`, `AsyncClient` (and seed 003's name `LLMInferenceClient`)."""

from .async_client import AsyncClient
from .client import Client
from .errors import ConchError, ModelNotFoundError, NotFoundError, OverloadedError, RateLimitedError, UnauthorizedError, ValidationError
from .types import Accepted, ChatReply, GenerateResult, Model, SessionStatus, StreamEvent

LLMInferenceClient = Client  # seed 003's name

__all__ = ["AsyncClient", "Client", "LLMInferenceClient", "ConchError", "ModelNotFoundError", "NotFoundError", "OverloadedError",
           "RateLimitedError", "UnauthorizedError", "ValidationError", "Accepted", "ChatReply", "GenerateResult", "Model",
           "SessionStatus", "StreamEvent"]
