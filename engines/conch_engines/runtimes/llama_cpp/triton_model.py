"""Triton Python-backend model: a GGUF file served by llama.cpp behind either of TensorRT-LLM's
tensor interfaces (see `contract.py`), chosen by the config parameter `interface`.

Decoupled: `execute` only queues the request; one worker thread owns the llama.cpp context
(which is not thread-safe) and answers through each request's response sender — one response
per token chunk when streaming, exactly one otherwise. A cancelled request (client gone,
gateway timeout) stops generating at the next token.

The interfaces differ only in names and in what a response carries, so one generation path
serves both, driven by an `Interface` table:
- ensemble: each streamed response holds the new text, plus token counts when asked;
- llmapi: each response holds all text so far (TensorRT-LLM's `CompletionOutput.text`), plus
  `finish_reason` / `stop_reason` when asked ("None" until the last one, as `str(None)` there).
"""

from __future__ import annotations

import json
import os
import queue
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

import llama_cpp
import numpy as np
import triton_python_backend_utils as pb_utils

from .generation import Chunk, GenerationParams, InvalidRequest, Unsupported, Usage, generate

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
        threads = int(params.get("n_threads", "0")) or max(1, os.cpu_count() or 1)
        self._llm = llama_cpp.Llama(
            model_path=params["gguf_path"],
            n_ctx=int(params.get("n_ctx", "4096")),
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
        )
        vocab = self._llm._model.vocab
        self._is_eog = lambda token: bool(llama_cpp.llama_vocab_is_eog(vocab, token))
        self._requests: queue.Queue = queue.Queue()
        # Request ids queued or generating, and those a `stop` request cancelled: Triton's thread
        # (execute) and the worker (_finished) both change them, so a lock guards them.
        self._ids_lock = threading.Lock()
        self._live: Counter = Counter()
        self._stopped: set[str] = set()
        self._worker = threading.Thread(target=self._serve, name="llama-cpp-generate", daemon=True)
        self._worker.start()

    def execute(self, requests):
        for request in requests:
            if self._interface.cancel_input and _scalar(request, self._interface.cancel_input, False):
                self._stop(request)  # answered at once: it must not wait behind the request it stops
            else:
                with self._ids_lock:
                    self._live[request.request_id()] += 1
                self._requests.put(request)
        return None

    def finalize(self):
        self._requests.put(None)
        self._worker.join(timeout=30)

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

    def _serve(self):
        while (request := self._requests.get()) is not None:
            sender = request.get_response_sender()
            try:
                self._answer(request, sender)
            except InvalidRequest as exc:
                _send_error(sender, str(exc), pb_utils.TritonError.INVALID_ARG)
            except Unsupported as exc:
                _send_error(sender, str(exc), pb_utils.TritonError.UNSUPPORTED)
            except Exception as exc:  # the model must answer every request, whatever happens
                pb_utils.Logger.log_error(f"llama-cpp generation failed: {exc!r}")
                _send_error(sender, f"generation failed: {exc}", pb_utils.TritonError.INTERNAL)
            finally:
                self._finished(request.request_id())

    def _finished(self, request_id: str) -> None:
        with self._ids_lock:
            self._live[request_id] -= 1
            if self._live[request_id] <= 0:
                del self._live[request_id]
                self._stopped.discard(request_id)

    def _answer(self, request, sender):
        interface = self._interface
        params, options = parse_request(request, interface)
        request_id = request.request_id()
        stopped = lambda: request_id in self._stopped  # noqa: E731 — a `stop` request named this one
        usage = Usage()
        chunks = generate(self._llm, params, self._is_eog, usage, cancelled=lambda: sender.is_cancelled() or stopped())
        if params.stream:
            text = ""
            for chunk in chunks:
                if chunk.finish_reason == "cancelled" and not stopped():
                    sender.send(flags=_FINAL)  # the client is gone: end the stream, nobody reads an answer
                    return
                text += chunk.text
                flags = _FINAL if chunk.finish_reason else 0
                shown = text if interface.cumulative else chunk.text
                sender.send(_response(interface, options, shown, chunk, usage.input_tokens, chunk.tokens), flags=flags)
            return
        chunks = list(chunks)
        if chunks[-1].finish_reason == "cancelled" and not stopped():
            sender.send(flags=_FINAL)
            return
        text = "".join(chunk.text for chunk in chunks)
        if not options[interface.exclude_input]:
            text = params.prompt + text  # both interfaces' default: the output echoes the input
        sender.send(_response(interface, options, text, chunks[-1], usage.input_tokens, usage.output_tokens),
                    flags=_FINAL)


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
