"""Triton Python-backend model: sentence embeddings (all-MiniLM-L6-v2) behind Conch's embedding
tensor contract (see `contract.py`): `text_input` (one or more texts) → `embedding` (n, dims)
and `num_input_tokens` (n).

Not decoupled: one response per request, returned from `execute`. Each request's texts are
encoded together, so a client batches by sending many texts in one request.
"""

from __future__ import annotations

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from .encoder import InvalidRequest, SentenceEncoder, parse_texts


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self._encoder = SentenceEncoder(params["model_dir"])

    def execute(self, requests):
        return [self._answer(request) for request in requests]

    def _answer(self, request):
        try:
            tensor = pb_utils.get_input_tensor_by_name(request, "text_input")
            texts = parse_texts(tensor.as_numpy().reshape(-1))
            result = self._encoder.encode(texts)
        except InvalidRequest as exc:
            return _error(str(exc), pb_utils.TritonError.INVALID_ARG)
        except Exception as exc:  # the model must answer every request, whatever happens
            pb_utils.Logger.log_error(f"sentence embedding failed: {exc!r}")
            return _error(f"embedding failed: {exc}", pb_utils.TritonError.INTERNAL)
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor("embedding", result.vectors),
            pb_utils.Tensor("num_input_tokens", result.token_counts.astype(np.int32)),
        ])


def _error(message: str, code):
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message, code))
