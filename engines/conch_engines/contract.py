"""The tensor contracts of Conch's CPU runtimes.

Text generation speaks TensorRT-LLM's `ensemble` contract: names and types follow TensorRT-LLM's
`inflight_batcher_llm/ensemble/config.pbtxt` (current names: `seed`, `min_tokens`). Only what
this runtime can honour is declared; Triton rejects any other input tensor by name, which is the
clear error a client should get.

Sentence embedding has a contract of its own (TensorRT-LLM has none): texts in, one vector and
one token count per text out.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TensorSpec:
    name: str
    data_type: str  # Triton's DataType enum name, e.g. "TYPE_INT32"
    dims: tuple[int, ...] = (1,)
    optional: bool = True


ENSEMBLE_INPUTS: tuple[TensorSpec, ...] = (
    TensorSpec("text_input", "TYPE_STRING", optional=False),
    TensorSpec("max_tokens", "TYPE_INT32", optional=False),
    TensorSpec("bad_words", "TYPE_STRING", (-1,)),
    TensorSpec("stop_words", "TYPE_STRING", (-1,)),
    TensorSpec("end_id", "TYPE_INT32"),
    TensorSpec("pad_id", "TYPE_INT32"),
    TensorSpec("top_k", "TYPE_INT32"),
    TensorSpec("top_p", "TYPE_FP32"),
    TensorSpec("temperature", "TYPE_FP32"),
    TensorSpec("repetition_penalty", "TYPE_FP32"),
    TensorSpec("min_tokens", "TYPE_INT32"),
    TensorSpec("presence_penalty", "TYPE_FP32"),
    TensorSpec("frequency_penalty", "TYPE_FP32"),
    TensorSpec("seed", "TYPE_UINT64"),
    TensorSpec("beam_width", "TYPE_INT32"),
    TensorSpec("num_return_sequences", "TYPE_INT32"),
    TensorSpec("exclude_input_in_output", "TYPE_BOOL"),
    TensorSpec("return_num_input_tokens", "TYPE_BOOL"),
    TensorSpec("return_num_output_tokens", "TYPE_BOOL"),
    TensorSpec("stream", "TYPE_BOOL"),
)

ENSEMBLE_OUTPUTS: tuple[TensorSpec, ...] = (
    TensorSpec("text_output", "TYPE_STRING", (-1,)),
    TensorSpec("num_input_tokens", "TYPE_INT32"),
    TensorSpec("num_output_tokens", "TYPE_INT32"),
)

# max_batch_size 0: dims are the whole tensor shape, so one request carries any number of texts.
EMBEDDING_INPUTS: tuple[TensorSpec, ...] = (
    TensorSpec("text_input", "TYPE_STRING", (-1,), optional=False),  # the texts, one per element
)

EMBEDDING_OUTPUTS: tuple[TensorSpec, ...] = (
    TensorSpec("embedding", "TYPE_FP32", (-1, -1)),  # (texts, dimensions), unit L2 norm
    TensorSpec("num_input_tokens", "TYPE_INT32", (-1,)),  # tokens each text was embedded from
)
