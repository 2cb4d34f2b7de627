"""Triton's gRPC tensor encoding, both ways: a generate-style body (tensor name → value) into a
`ModelInferRequest`, and a `ModelInferResponse` back into the same dict shape Triton's HTTP
`generate` endpoint returns, so one codec reads answers from either transport.

Pure: protobuf messages in and out, no channel, no I/O.
"""

from __future__ import annotations

import struct
from typing import Any, Mapping

from tritonclient.grpc import service_pb2 as pb

# Where each Triton datatype goes in `InferTensorContents`.
_CONTENT_FIELD = {
    "BYTES": "bytes_contents", "BOOL": "bool_contents", "INT32": "int_contents", "INT64": "int64_contents",
    "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents",
}
# How raw output bytes unpack (BYTES is length-prefixed and handled apart).
_RAW_FORMAT = {"BOOL": "?", "INT8": "b", "UINT8": "B", "INT16": "h", "UINT16": "H", "INT32": "i", "UINT32": "I",
               "INT64": "q", "UINT64": "Q", "FP32": "f", "FP64": "d"}


def infer_request(model: str, body: Mapping[str, Any], datatypes: Mapping[str, str], *, batched: bool,
                  request_id: str = "") -> pb.ModelInferRequest:
    """`batched` models (max_batch_size > 0, like TensorRT-LLM's ensemble) take a leading batch
    dimension of 1; others (the llmapi model) take the value's own shape."""
    request = pb.ModelInferRequest(model_name=model, id=request_id)
    # A decoupled model may finish with a response that carries no tensors; this asks Triton to
    # deliver it, flagged final, so the stream's end is explicit.
    request.parameters["triton_enable_empty_final_response"].bool_param = True
    for name, value in body.items():
        datatype = datatypes.get(name)
        if datatype is None:
            raise KeyError(f"no Triton datatype known for input '{name}'")
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        tensor = request.inputs.add(name=name, datatype=datatype, shape=[1, len(values)] if batched else [len(values)])
        if datatype == "BYTES":
            values = [v.encode("utf-8") if isinstance(v, str) else v for v in values]
        getattr(tensor.contents, _CONTENT_FIELD[datatype]).extend(values)
    return request


def is_final(response: pb.ModelInferResponse) -> bool:
    final = response.parameters.get("triton_final_response")
    return final is not None and final.bool_param


def decode_outputs(response: pb.ModelInferResponse) -> dict[str, Any]:
    """Output name → value; one-element tensors become scalars, as in Triton's JSON answers."""
    decoded: dict[str, Any] = {}
    for index, output in enumerate(response.outputs):
        if index < len(response.raw_output_contents):
            values = _unpack_raw(output.datatype, response.raw_output_contents[index])
        else:
            values = list(getattr(output.contents, _CONTENT_FIELD.get(output.datatype, "bytes_contents")))
            if output.datatype == "BYTES":
                values = [v.decode("utf-8", "replace") for v in values]
        decoded[output.name] = values[0] if len(values) == 1 else values
    return decoded


def _unpack_raw(datatype: str, raw: bytes) -> list[Any]:
    if datatype == "BYTES":
        values, offset = [], 0
        while offset + 4 <= len(raw):
            (length,) = struct.unpack_from("<I", raw, offset)
            offset += 4
            values.append(raw[offset:offset + length].decode("utf-8", "replace"))
            offset += length
        return values
    code = _RAW_FORMAT[datatype]
    return list(struct.unpack(f"<{len(raw) // struct.calcsize(code)}{code}", raw))
