"""Pure parts of streaming: stop strings across token boundaries, gRPC tensor encoding, merging
the streams of several choices."""

from __future__ import annotations

import asyncio
import struct

import pytest
from tritonclient.grpc import service_pb2 as pb

from conch_gateway.backends import grpc_tensors
from conch_gateway.backends.codecs import CODECS, DATATYPES
from conch_gateway.backends.base import GenerationRequest
from conch_gateway.services.choices import merge
from conch_gateway.backends.base import StreamDelta
from conch_gateway.services.generation import StopFilter


def feed_all(stops: tuple[str, ...], pieces: list[str]) -> tuple[str, bool]:
    matcher, out = StopFilter(stops), []
    for piece in pieces:
        text, stopped = matcher.feed(piece)
        out.append(text)
        if stopped:
            return "".join(out), True
    return "".join(out) + matcher.flush(), False


@pytest.mark.parametrize("pieces, expected", [
    (["Hello", " wor", "ld", "!"], ("Hello ", True)),  # stop "world" split over two tokens
    (["Hello", " wo", "nder"], ("Hello wonder", False)),  # a prefix that turned out not to be one
    (["abc"], ("abc", False)),
    (["x worl"], ("x worl", False)),  # held back, then flushed at the end
    (["END", "x"], ("", True)),
])
def test_stop_filter(pieces, expected):
    assert feed_all(("world", "END"), pieces) == expected


def test_stop_filter_holds_back_only_possible_prefixes():
    matcher = StopFilter(("###",))
    assert matcher.feed("a#") == ("a", False)
    assert matcher.feed("b") == ("#b", False)


def test_no_stop_strings_passes_everything_through():
    assert StopFilter(()).feed("anything") == ("anything", False)


def test_ensemble_request_encodes_typed_batched_tensors():
    body = CODECS["ensemble"].request_body(GenerationRequest(prompt="hi", max_tokens=5, temperature=0.5, seed=9,
                                                             stop=("\n",)), stream=True)
    request = grpc_tensors.infer_request("m", body, DATATYPES, batched=True)
    tensors = {t.name: t for t in request.inputs}
    assert list(tensors["text_input"].shape) == [1, 1] and tensors["text_input"].contents.bytes_contents == [b"hi"]
    assert tensors["max_tokens"].datatype == "INT32" and list(tensors["max_tokens"].contents.int_contents) == [5]
    assert tensors["seed"].datatype == "UINT64" and list(tensors["seed"].contents.uint64_contents) == [9]
    assert list(tensors["stream"].contents.bool_contents) == [True]
    assert list(tensors["stop_words"].shape) == [1, 1]
    assert request.parameters["triton_enable_empty_final_response"].bool_param


def test_llmapi_request_is_unbatched():
    body = CODECS["llmapi"].request_body(GenerationRequest(prompt="hi", max_tokens=5), stream=True)
    request = grpc_tensors.infer_request("m", body, DATATYPES, batched=False)
    tensors = {t.name: t for t in request.inputs}
    assert list(tensors["sampling_param_max_tokens"].shape) == [1]
    assert list(tensors["streaming"].contents.bool_contents) == [True]


def test_unknown_input_names_are_refused():
    with pytest.raises(KeyError):
        grpc_tensors.infer_request("m", {"mystery": 1}, DATATYPES, batched=True)


def test_raw_outputs_decode_like_generate_json():
    response = pb.ModelInferResponse(outputs=[
        pb.ModelInferResponse.InferOutputTensor(name="text_output", datatype="BYTES", shape=[1, 1]),
        pb.ModelInferResponse.InferOutputTensor(name="num_output_tokens", datatype="INT32", shape=[1, 1]),
    ], raw_output_contents=[struct.pack("<I", 6) + "héllo".encode(), struct.pack("<i", 3)])
    response.parameters["triton_final_response"].bool_param = True
    assert grpc_tensors.decode_outputs(response) == {"text_output": "héllo", "num_output_tokens": 3}
    assert grpc_tensors.is_final(response)
    assert not grpc_tensors.is_final(pb.ModelInferResponse())


async def _deltas(texts: list[str], delay: float):
    for i, text in enumerate(texts):
        await asyncio.sleep(delay)
        yield StreamDelta(text, 1, i + 1, 1, "stop" if i == len(texts) - 1 else None)


async def test_merge_interleaves_choices_and_keeps_each_in_order():
    merged = [(i, d.text) async for i, d in merge([_deltas(["a1", "a2", "a3"], 0.01), _deltas(["b1", "b2"], 0.015)])]
    assert [t for i, t in merged if i == 0] == ["a1", "a2", "a3"]
    assert [t for i, t in merged if i == 1] == ["b1", "b2"]


async def test_merge_raises_the_first_error_and_cancels_the_rest():
    cancelled = asyncio.Event()

    async def slow():
        try:
            yield StreamDelta("s", 1, 1, 1)
            await asyncio.sleep(30)
        finally:
            cancelled.set()

    async def failing():
        await asyncio.sleep(0.01)
        raise RuntimeError("backend broke")
        yield  # pragma: no cover

    with pytest.raises(RuntimeError, match="backend broke"):
        async for _ in merge([slow(), failing()]):
            pass
    assert cancelled.is_set()
