"""Conch's Python SDK: `Client`, `AsyncClient` (and seed 003's name `LLMInferenceClient`)."""

from .client import AsyncClient, Client
from .errors import ConchError, ModelNotFoundError, NotFoundError, OverloadedError, RateLimitedError, UnauthorizedError, ValidationError
from .types import GenerateResult, Model, StreamEvent

LLMInferenceClient = Client  # seed 003's name

__all__ = ["AsyncClient", "Client", "LLMInferenceClient", "ConchError", "ModelNotFoundError", "NotFoundError", "OverloadedError",
           "RateLimitedError", "UnauthorizedError", "ValidationError", "GenerateResult", "Model", "StreamEvent"]
