"""Triton Python-backend model: a GGUF file served by llama.cpp behind either of TensorRT-LLM's
tensor interfaces (see `contract.py`), chosen by the config parameter `interface`.

Decoupled: `execute` parses, tokenizes and queues each request, and answers at once when the
request is invalid or the waiting queue is full. One worker thread runs the continuous-batching
engine (`engine.py`), which owns the llama.cpp context (not thread-safe) and answers through each
request's response sender — one response per token chunk when streaming, exactly one otherwise.
A cancelled request (client gone, gateway timeout, llmapi `stop`) leaves its slot at the next step.

If the worker dies, every request still pending gets an error, later requests are refused at
once (UNAVAILABLE), `is_model_ready` answers False (Triton versions with active model health
checks then report the model not ready) and the `conch_llama_cpp_worker_up` gauge drops to 0.

Settings (config parameters; the repository generator writes them): `slots`, `max_queue`,
`prefill_chunk`, `prefill_budget`, `prefix_cache`, `batch_invariant`, `n_ctx`, `n_threads`.
Queue depth and slot use are Triton metrics (`conch_llama_cpp_*` on Triton's metrics port).

The interfaces differ only in names and in what a response carries, so one generation path
serves both, driven by an `Interface` table:
- ensemble: each streamed response holds the new text, plus token counts when asked;
- llmapi: each response holds all text so far (TensorRT-LLM's `CompletionOutput.text`), plus
  `finish_reason` / `stop_reason` when asked ("None" until the last one, as `str(None)` there).
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from .context import ContextSettings, LlamaContext
from .engine import Engine, EngineStopped, Job
from .generation import Chunk, GenerationParams, InvalidRequest, Unsupported, output_budget
from .scheduler import Limits, QueueFull

_FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


@dataclass(frozen=True)
class Interface:
    params: dict[str, str]  # GenerationParams field -> the input tensor carrying it
    defaults: dict[str, Any]  # fields a request may leave out, where the runtime default differs from ours
    exclude_input: str  # the flag that drops the prompt echo (both default to echoing it)
    returns: dict[str, str]  # optional output -> the flag asking for it
    unsupported: dict[str, tuple[Any, str]]  # input -> (the most it may ask for, why no more)
    batched: bool  # max_batch_size > 0: tensors carry a leading batch dimension
    cumulative: bool = False  # does every response carry all text so far, not only the new text?
    cancel_input: str | None = None  # a BOOL input that cancels the requests sharing this request's id


ENSEMBLE = Interface(
    params={"max_tokens": "max_tokens", "temperature": "temperature", "top_p": "top_p", "top_k": "top_k",
            "seed": "seed", "stop_words": "stop_words", "bad_words": "bad_words", "end_id": "end_id",
            "min_tokens": "min_tokens", "repetition_penalty": "repetition_penalty",
            "presence_penalty": "presence_penalty", "frequency_penalty": "frequency_penalty", "stream": "stream"},
    defaults={},
    exclude_input="exclude_input_in_output",
    returns={"num_input_tokens": "return_num_input_tokens", "num_output_tokens": "return_num_output_tokens"},
    unsupported={"beam_width": (1, "beam search is not supported by the llama-cpp runtime (beam_width must be 1)"),
                 "num_return_sequences": (1, "the llama-cpp runtime returns one sequence per request "
                                             "(num_return_sequences must be 1)")},
    batched=True,
)

LLMAPI = Interface(
    params={"max_tokens": "sampling_param_max_tokens", "temperature": "sampling_param_temperature",
            "top_p": "sampling_param_top_p", "top_k": "sampling_param_top_k", "seed": "sampling_param_seed",
            "stop_words": "sampling_param_stop", "presence_penalty": "sampling_param_presence_penalty",
            "frequency_penalty": "sampling_param_frequency_penalty", "stream": "streaming"},
    defaults={"max_tokens": 32},  # TensorRT-LLM's SamplingParams.max_tokens default
    exclude_input="sampling_param_exclude_input_from_output",
    returns={"finish_reason": "return_finish_reason", "stop_reason": "return_stop_reason"},
    unsupported={"sampling_param_best_of": (1, "the llama-cpp runtime returns one sequence per request "
                                               "(sampling_param_best_of must be 1)"),
                 "return_cumulative_logprob": (False, "the llama-cpp runtime computes no log-probabilities")},
    batched=False,
    cumulative=True,
    cancel_input="stop",
)

INTERFACES = {"ensemble": ENSEMBLE, "llmapi": LLMAPI}


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self._interface = INTERFACES[params.get("interface", "ensemble")]
        self._limits = limits_from(params)
        threads = int(params.get("n_threads", "0")) or max(1, os.cpu_count() or 1)
        self._n_ctx = int(params.get("n_ctx", "4096"))
        invariant = _flag(params, "batch_invariant")
        if invariant:  # read once by llama.cpp; this stub process serves this model only
            os.environ["GGML_CPU_TILED_MM"] = "0"  # K-quant tiled matmul: its rounding follows the batch size
        self._llama = self._load(params["gguf_path"], ContextSettings(
            n_ctx=self._n_ctx, sequences=self._limits.sequences, batch_tokens=self._limits.step_tokens,
            n_threads=threads, kv_cache_type="q8_0" if invariant else "f16"))
        self._engine = Engine(self._llama, self._limits)
        self._metrics = _Metrics(args["model_name"], args.get("model_version", ""), self._limits.slots)
        # Request ids queued or generating, and those a `stop` request cancelled: Triton's thread
        # (execute) and the worker (when a request ends) both change them, so a lock guards them.
        self._ids_lock = threading.Lock()
        self._live: Counter = Counter()
        self._stopped: set[str] = set()
        self._failure: str | None = None
        self._worker = threading.Thread(target=self._serve, name="llama-cpp-batch", daemon=True)
        self._worker.start()

    def _load(self, gguf_path: str, settings: ContextSettings) -> LlamaContext:
        return LlamaContext(gguf_path, settings)

    def is_model_ready(self) -> bool:
        """Asked by Triton versions with active model health checks (not 2.51's)."""
        return self._failure is None and self._worker.is_alive()

    def execute(self, requests):
        for request in requests:
            if self._interface.cancel_input and _scalar(request, self._interface.cancel_input, False):
                self._stop(request)  # answered at once: it must not wait behind the request it stops
            else:
                self._accept(request)
        return None

    def finalize(self):
        self._engine.stop()
        self._worker.join(timeout=30)
        if not self._worker.is_alive():
            self._fail_pending("worker stopped: the model is being unloaded")
            self._engine.close()
            self._llama.close()

    def _accept(self, request) -> None:
        sender = request.get_response_sender()
        if self._failure is not None:
            _send_error(sender, self._failure, pb_utils.TritonError.UNAVAILABLE)
            return
        try:
            params, options = parse_request(request, self._interface)
            params.validate()
            prompt = self._llama.tokenize(params.prompt)
            job = self._job(request, sender, params, options, prompt)
            with self._ids_lock:
                self._live[request.request_id()] += 1
            try:
                self._engine.submit(job)
            except BaseException:
                self._ended(request.request_id())
                raise
        except InvalidRequest as exc:
            _send_error(sender, str(exc), pb_utils.TritonError.INVALID_ARG)
        except Unsupported as exc:
            _send_error(sender, str(exc), pb_utils.TritonError.UNSUPPORTED)
        except QueueFull as exc:
            self._metrics.rejected()
            _send_error(sender, f"queue full: {exc}", pb_utils.TritonError.UNAVAILABLE)
        except EngineStopped:
            _send_error(sender, self._failure or "worker stopped", pb_utils.TritonError.UNAVAILABLE)
        except Exception as exc:  # noqa: BLE001 — the model must answer every request, whatever happens
            pb_utils.Logger.log_error(f"llama-cpp could not accept a request: {exc!r}")
            _send_error(sender, f"generation failed: {exc}", pb_utils.TritonError.INTERNAL)

    def _job(self, request, sender, params: GenerationParams, options: dict, prompt: list[int]) -> Job:
        request_id = request.request_id()
        stopped = lambda: request_id in self._stopped  # noqa: E731 — a `stop` request named this one
        reply = _Reply(self._interface, sender, params, options, len(prompt), stopped,
                       ended=lambda: self._ended(request_id))
        return Job(params=params, prompt=prompt, max_tokens=output_budget(params, len(prompt), self._n_ctx),
                   emit=reply.emit, fail=reply.fail, error=reply.error,
                   cancelled=lambda: sender.is_cancelled() or stopped())

    def _stop(self, request):
        """TensorRT-LLM's llmapi `stop`: cancel every request carrying this one's id, and answer
        this one with a CANCELLED error, as the real model does."""
        sender, request_id = request.get_response_sender(), request.request_id()
        if not request_id:
            _send_error(sender, "A request id must be provided for request cancellation", pb_utils.TritonError.INTERNAL)
            return
        with self._ids_lock:
            if self._live[request_id]:
                self._stopped.add(request_id)
        _send_error(sender, "Request cancelled by client", pb_utils.TritonError.CANCELLED)

    def _ended(self, request_id: str) -> None:
        with self._ids_lock:
            self._live[request_id] -= 1
            if self._live[request_id] <= 0:
                del self._live[request_id]
                self._stopped.discard(request_id)

    def _serve(self):
        try:
            self._engine.run(after_step=lambda: self._metrics.update(self._engine.stats))
        except BaseException as exc:  # noqa: BLE001 — whatever kills the worker, nothing may hang on it
            self._failure = (f"worker stopped: the llama-cpp worker of this model died ({exc!r}); "
                             "the model must be reloaded (restart Triton or the pod)")
            pb_utils.Logger.log_error(f"llama-cpp worker died: {exc!r}")
            self._metrics.worker_down()
            self._fail_pending(self._failure)

    def _fail_pending(self, message: str) -> None:
        for job in self._engine.close_intake():
            try:
                job.fail(message)
            except Exception:  # noqa: BLE001 — one failed answer must not keep the others waiting
                pass


class _Reply:
    """Turns a job's chunks into responses on its sender, shaped for the interface: every chunk
    when streaming (the new text, or all text so far for llmapi), one response at the end otherwise."""

    def __init__(self, interface: Interface, sender, params: GenerationParams, options: dict, input_tokens: int,
                 stopped, ended):
        self._interface, self._sender, self._params, self._options = interface, sender, params, options
        self._input_tokens = input_tokens
        self._stopped = stopped  # did an llmapi `stop` cancel it (then it is answered, not just ended)?
        self._ended = ended
        self._text: list[str] = []
        self._output_tokens = 0

    def emit(self, chunk: Chunk) -> None:
        interface = self._interface
        if chunk.finish_reason:
            answered = chunk.finish_reason != "cancelled" or self._stopped()
            self._ended()
            if not answered:
                self._sender.send(flags=_FINAL)  # the client is gone: end the stream, nobody reads an answer
                return
        self._text.append(chunk.text)
        self._output_tokens += chunk.tokens
        if self._params.stream:
            shown = "".join(self._text) if interface.cumulative else chunk.text
            self._sender.send(_response(interface, self._options, shown, chunk, self._input_tokens, chunk.tokens),
                              flags=_FINAL if chunk.finish_reason else 0)
        elif chunk.finish_reason:
            text = "".join(self._text)
            if not self._options[interface.exclude_input]:
                text = self._params.prompt + text  # both interfaces' default: the output echoes the input
            self._sender.send(_response(interface, self._options, text, chunk, self._input_tokens, self._output_tokens),
                              flags=_FINAL)

    def fail(self, message: str) -> None:
        """The worker died: the model cannot serve any request (retry elsewhere)."""
        self._ended()
        _send_error(self._sender, message, pb_utils.TritonError.UNAVAILABLE)

    def error(self, message: str) -> None:
        """This request failed; the model serves the others."""
        self._ended()
        _send_error(self._sender, message, pb_utils.TritonError.INTERNAL)


class _Metrics:
    """The runtime's gauges on Triton's metrics endpoint, labelled with the model's name: what the
    gateway's admission control can read (queue depth, busy slots) and whether the worker lives.
    Each update is a message to Triton, so values are sent only when they change."""

    def __init__(self, model: str, version: str, slots: int):
        labels = {"model": model, "version": version}
        self._families = []  # a family must outlive its metrics

        def metric(name: str, description: str, kind=pb_utils.MetricFamily.GAUGE):
            self._families.append(pb_utils.MetricFamily(name=name, description=description, kind=kind))
            return self._families[-1].Metric(labels=labels)

        gauge = metric

        self._waiting = gauge("conch_llama_cpp_waiting_requests", "Requests waiting for a sequence slot")
        self._running = gauge("conch_llama_cpp_running_sequences", "Sequences holding a slot (prefilling or decoding)")
        gauge("conch_llama_cpp_sequence_slots", "Sequence slots decoded together (not counting the short lane)").set(slots)
        self._up = gauge("conch_llama_cpp_worker_up", "1 while the batching worker runs, 0 once it has died")
        self._up.set(1)
        self._rejected = metric("conch_llama_cpp_rejected_requests_total", "Requests refused because the queue was full",
                                pb_utils.MetricFamily.COUNTER)
        self._last = (-1, -1)

    def update(self, stats) -> None:
        current = (stats.waiting, stats.running)
        if current != self._last:
            self._waiting.set(stats.waiting)
            self._running.set(stats.running)
            self._last = current

    def rejected(self) -> None:
        self._rejected.increment(1)

    def worker_down(self) -> None:
        self._up.set(0)


def limits_from(params: dict[str, str]) -> Limits:
    """The scheduler's limits from the model config's parameters (defaults where absent)."""
    defaults = Limits()
    value = lambda name, default: int(params.get(name, default))  # noqa: E731
    return Limits(
        slots=value("slots", defaults.slots),
        max_waiting=value("max_queue", defaults.max_waiting),
        prefill_chunk=value("prefill_chunk", defaults.prefill_chunk),
        prefill_budget=value("prefill_budget", defaults.prefill_budget),
        prefix_cache=_flag(params, "prefix_cache", defaults.prefix_cache),
        # with the 8-bit cache every entry is what a fresh prefill computes: reuse has no limit
        prefix_cache_limit=None if _flag(params, "batch_invariant") else defaults.prefix_cache_limit,
    )


def _flag(params: dict[str, str], name: str, default: bool = False) -> bool:
    return params.get(name, "true" if default else "false").lower() == "true"


def parse_request(request, interface: Interface = ENSEMBLE) -> tuple[GenerationParams, dict]:
    text = _tensor(request, "text_input")
    if text.shape[0] != 1:
        raise InvalidRequest(f"this runtime serves one sequence per request, got a batch of {text.shape[0]}")
    for name, (most, reason) in interface.unsupported.items():
        if _scalar(request, name, most) > most:
            raise Unsupported(reason)
    values = dict(interface.defaults)
    for param, tensor in interface.params.items():
        value = _strings(request, tensor) if param in ("stop_words", "bad_words") else _scalar(request, tensor, None)
        if value is not None:
            values[param] = value
    params = GenerationParams(prompt=_decode(text.reshape(-1)[0]), **values)
    flags = (interface.exclude_input, *interface.returns.values())
    return params, {flag: bool(_scalar(request, flag, False)) for flag in flags}


def _tensor(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


def _scalar(request, name, default):
    array = _tensor(request, name)
    return default if array is None or array.size == 0 else array.reshape(-1)[0].item()


def _strings(request, name) -> tuple[str, ...]:
    array = _tensor(request, name)
    return () if array is None else tuple(_decode(v) for v in array.reshape(-1) if _decode(v))


def _decode(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _response(interface: Interface, options: dict, text: str, chunk: Chunk, input_tokens: int, output_tokens: int):
    """The response tensors: `text_output`, and each optional output the request asked for.
    Shapes follow each model's batching: [1, 1] with the ensemble's batch dimension, [1] without."""
    shape = (1, 1) if interface.batched else (1,)
    available = {
        "num_input_tokens": np.full(shape, input_tokens, dtype=np.int32),
        "num_output_tokens": np.full(shape, output_tokens, dtype=np.int32),
        "finish_reason": _strings_array(str(chunk.finish_reason), shape),  # str(None) == "None", as in TensorRT-LLM
        "stop_reason": _strings_array(str(chunk.stop_reason), shape),
    }
    outputs = [pb_utils.Tensor("text_output", _strings_array(text, shape))]
    outputs += [pb_utils.Tensor(name, available[name]) for name, flag in interface.returns.items() if options[flag]]
    return pb_utils.InferenceResponse(output_tensors=outputs)


def _strings_array(text: str, shape: tuple[int, ...]) -> np.ndarray:
    return np.array([text.encode("utf-8")], dtype=np.object_).reshape(shape)


def _send_error(sender, message: str, code) -> None:
    error = pb_utils.TritonError(message, code)
    sender.send(pb_utils.InferenceResponse(output_tensors=[], error=error), flags=_FINAL)
