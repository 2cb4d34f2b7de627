"""Triton Python-backend model: a GGUF file served by llama.cpp behind TensorRT-LLM's
`ensemble` tensor contract (see `contract.py`).

Decoupled: `execute` only queues the request; one worker thread owns the llama.cpp context
(which is not thread-safe) and answers through each request's response sender — one response
per token chunk when `stream` is true, exactly one otherwise. A cancelled request (client gone,
gateway timeout) stops generating at the next token.
"""

from __future__ import annotations

import json
import os
import queue
import threading

import llama_cpp
import numpy as np
import triton_python_backend_utils as pb_utils

from .generation import Chunk, GenerationParams, InvalidRequest, Unsupported, Usage, generate

_FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
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
        self._worker = threading.Thread(target=self._serve, name="llama-cpp-generate", daemon=True)
        self._worker.start()

    def execute(self, requests):
        for request in requests:
            self._requests.put(request)
        return None

    def finalize(self):
        self._requests.put(None)
        self._worker.join(timeout=30)

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

    def _answer(self, request, sender):
        params, options = parse_request(request)
        usage = Usage()
        chunks = generate(self._llm, params, self._is_eog, usage, cancelled=sender.is_cancelled)
        if params.stream:
            for chunk in chunks:
                if chunk.finish_reason == "cancelled":
                    sender.send(flags=_FINAL)
                    return
                flags = _FINAL if chunk.finish_reason else 0
                sender.send(_response(chunk.text, usage.input_tokens, chunk.tokens, options), flags=flags)
            return
        text = "".join(chunk.text for chunk in chunks)
        if sender.is_cancelled():
            sender.send(flags=_FINAL)
            return
        if not options["exclude_input_in_output"]:
            text = params.prompt + text  # TensorRT-LLM's default: the output echoes the input
        sender.send(_response(text, usage.input_tokens, usage.output_tokens, options), flags=_FINAL)


def parse_request(request) -> tuple[GenerationParams, dict]:
    text = _tensor(request, "text_input")
    if text.shape[0] != 1:
        raise InvalidRequest(f"this runtime serves one sequence per request, got a batch of {text.shape[0]}")
    if _scalar(request, "beam_width", 1) > 1:
        raise Unsupported("beam search is not supported by the llama-cpp runtime (beam_width must be 1)")
    if _scalar(request, "num_return_sequences", 1) > 1:
        raise Unsupported("the llama-cpp runtime returns one sequence per request (num_return_sequences must be 1)")
    end_id = _scalar(request, "end_id", None)
    params = GenerationParams(
        prompt=_decode(text.reshape(-1)[0]),
        max_tokens=int(_scalar(request, "max_tokens", 0)),
        temperature=float(_scalar(request, "temperature", 1.0)),
        top_p=float(_scalar(request, "top_p", 1.0)),
        top_k=int(_scalar(request, "top_k", 0)),
        seed=_optional_int(_scalar(request, "seed", None)),
        stop_words=_strings(request, "stop_words"),
        bad_words=_strings(request, "bad_words"),
        end_id=None if end_id is None else int(end_id),
        min_tokens=int(_scalar(request, "min_tokens", 0)),
        repetition_penalty=float(_scalar(request, "repetition_penalty", 1.0)),
        presence_penalty=float(_scalar(request, "presence_penalty", 0.0)),
        frequency_penalty=float(_scalar(request, "frequency_penalty", 0.0)),
        stream=bool(_scalar(request, "stream", False)),
    )
    options = {
        "exclude_input_in_output": bool(_scalar(request, "exclude_input_in_output", False)),
        "return_num_input_tokens": bool(_scalar(request, "return_num_input_tokens", False)),
        "return_num_output_tokens": bool(_scalar(request, "return_num_output_tokens", False)),
    }
    return params, options


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


def _optional_int(value):
    return None if value is None else int(value)


def _response(text: str, input_tokens: int, output_tokens: int, options: dict):
    outputs = [pb_utils.Tensor("text_output", np.array([[text.encode("utf-8")]], dtype=np.object_))]
    if options["return_num_input_tokens"]:
        outputs.append(pb_utils.Tensor("num_input_tokens", np.array([[input_tokens]], dtype=np.int32)))
    if options["return_num_output_tokens"]:
        outputs.append(pb_utils.Tensor("num_output_tokens", np.array([[output_tokens]], dtype=np.int32)))
    return pb_utils.InferenceResponse(output_tensors=outputs)


def _send_error(sender, message: str, code) -> None:
    error = pb_utils.TritonError(message, code)
    sender.send(pb_utils.InferenceResponse(output_tensors=[], error=error), flags=_FINAL)
