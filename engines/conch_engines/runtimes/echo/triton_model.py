"""Triton Python-backend model that answers at once: it "generates" the words of its own input.

It speaks the same ensemble contract as the llama-cpp runtime, so it stands in for an LLM where
the point is everything around the model — gateway overhead benchmarks, smoke tests of a
deployment — without spending CPU on generation.
"""

from __future__ import annotations

import numpy as np
import triton_python_backend_utils as pb_utils

_FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            text = _input(request, "text_input")[0]
            max_tokens = int(_input(request, "max_tokens")[0])
            stream = bool(_input(request, "stream", [False])[0])
            words = text.decode("utf-8").split(" ")[:max(max_tokens, 0)]
            pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
            if stream:
                for i, piece in enumerate(pieces):
                    flags = _FINAL if i == len(pieces) - 1 else 0
                    sender.send(_response(piece, 1), flags=flags)
                if not pieces:
                    sender.send(_response("", 0), flags=_FINAL)
            else:
                sender.send(_response("".join(pieces), len(pieces)), flags=_FINAL)
        return None


def _input(request, name, default=None):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return default if tensor is None else tensor.as_numpy().reshape(-1)


def _response(text: str, tokens: int):
    return pb_utils.InferenceResponse(output_tensors=[
        pb_utils.Tensor("text_output", np.array([[text.encode("utf-8")]], dtype=np.object_)),
        pb_utils.Tensor("num_input_tokens", np.array([[0]], dtype=np.int32)),
        pb_utils.Tensor("num_output_tokens", np.array([[tokens]], dtype=np.int32)),
    ])
