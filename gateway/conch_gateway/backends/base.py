"""Backend-neutral generation types and errors, shared by every API dialect and every backend."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """One generation, in the gateway's own terms; each backend codec maps it onto its tensors."""

    prompt: str
    max_tokens: int
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    greedy: bool = False
    seed: int | None = None
    stop: tuple[str, ...] = ()  # the user's stop strings: generation ends there, text excludes them
    stop_tokens: tuple[str, ...] = ()  # the model's end-of-turn tokens, also sent as stop words
    repetition_penalty: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None

    @classmethod
    def decoding(cls, prompt: str, max_tokens: int, *, greedy: bool, temperature: float | None,
                 top_p: float | None, top_k: int | None, **rest) -> "GenerationRequest":
        """The one place a dialect's sampling choice becomes a request: greedy drops temperature,
        top-p and top-k, because Triton's runtimes sample whenever any of them arrives."""
        return cls(prompt=prompt, max_tokens=max_tokens, greedy=greedy, temperature=None if greedy else temperature,
                   top_p=None if greedy else top_p, top_k=None if greedy else top_k, **rest)


@dataclass(slots=True)
class GenerationResult:
    text: str
    output_tokens: int | None  # None: the interface reports no counts (TensorRT-LLM's llmapi model)
    input_tokens: int | None
    finish_reason: str  # "stop" | "length"
    stop_sequence: bool = False  # the gateway cut the text at one of the request's stop strings


@dataclass(slots=True)
class StreamDelta:
    """One piece of a generation stream, whatever the backend."""

    text: str
    tokens: int  # tokens generated for this delta (0 when the interface does not count)
    output_tokens: int | None  # tokens generated so far; None when the interface does not count
    input_tokens: int | None
    finish_reason: str | None = None  # "stop" | "length", on the last delta only
    stop_sequence: bool = False  # the gateway cut the text at one of the request's stop strings


class BackendError(Exception):
    """Base of errors raised while talking to an inference server."""


class BackendUnavailable(BackendError):
    """The server could not be reached (connection refused/reset, DNS, …)."""


class BackendTimeout(BackendError):
    """No answer within `seconds`; `idle`: a started stream went silent that long."""

    def __init__(self, seconds: float, idle: bool = False):
        super().__init__(f"no {'further response' if idle else 'answer'} within {seconds:g}s")
        self.seconds = seconds
        self.idle = idle


class BackendFailed(BackendError):
    """The server answered with an error."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message
