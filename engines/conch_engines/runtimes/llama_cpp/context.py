"""The llama.cpp side of the runtime: one model, one context holding several sequences in its KV
cache, one batch buffer, and the vocabulary. Every llama-cpp-python call of the runtime is here or
in `sampling.py`; the context is not thread-safe, so one thread (the engine's) uses it.

The KV cache keeps one stream of `n_ctx` cells per sequence (llama.cpp's non-unified cache):
a sequence's cells are never interleaved with another's, so its attention sees the same cells
in the same order whoever else runs (see the README on determinism), and llama.cpp still decodes
a contiguous run of sequence ids in one pass over the weights. The vocabulary calls (`tokenize`,
`piece`) only read the model and may run on any thread.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Sequence

import llama_cpp
import numpy as np
from llama_cpp._internals import LlamaModel
from llama_cpp._utils import suppress_stdout_stderr


KV_CACHE_TYPES = {"f16": llama_cpp.GGML_TYPE_F16, "q8_0": llama_cpp.GGML_TYPE_Q8_0}


class DecodeError(RuntimeError):
    """llama_decode failed: the context can no longer be trusted."""


@dataclass(frozen=True)
class ContextSettings:
    n_ctx: int  # the context window of one sequence
    sequences: int  # sequence ids the KV cache holds
    batch_tokens: int  # the most tokens one llama_decode takes (one ubatch: one pass over the weights)
    n_threads: int
    flash_attn: bool = True
    kv_unified: bool = False  # one pool for all sequences instead of a stream each
    kv_cache_type: str = "f16"  # f16, or q8_0 (llama.cpp's attention kernels then never split work by batch shape)


class LlamaContext:
    def __init__(self, gguf_path: str, settings: ContextSettings):
        self.settings = settings
        with suppress_stdout_stderr(disable=False):  # llama.cpp logs to stderr even when quiet
            llama_cpp.llama_backend_init()
            self._model = LlamaModel(path_model=gguf_path, params=llama_cpp.llama_model_default_params(), verbose=False)
            params = llama_cpp.llama_context_default_params()
            params.n_ctx = settings.n_ctx * settings.sequences
            params.n_batch = params.n_ubatch = settings.batch_tokens
            params.n_seq_max = settings.sequences
            params.n_threads = params.n_threads_batch = settings.n_threads
            params.kv_unified = settings.kv_unified
            params.type_k = params.type_v = KV_CACHE_TYPES[settings.kv_cache_type]
            params.flash_attn_type = (llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if settings.flash_attn
                                      else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
            params.no_perf = True
            self._ctx = llama_cpp.llama_init_from_model(self._model.model, params)
        if not self._ctx:
            self._model.close()
            raise RuntimeError(f"llama.cpp could not create a context of {params.n_ctx} tokens for {gguf_path}")
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._vocab = self._model.vocab
        self.n_vocab = self._model.n_vocab()
        metadata = self._model.metadata()
        self._add_bos = metadata.get("tokenizer.ggml.add_bos_token", "true") == "true"
        self.end_tokens = tuple(t for t in range(self.n_vocab) if llama_cpp.llama_vocab_is_eog(self._vocab, t))
        self._ends = frozenset(self.end_tokens)
        self._pieces: dict[int, bytes] = {}
        self._batch = _Batch(settings.batch_tokens)

    @property
    def ctx(self):
        return self._ctx

    # -- vocabulary (any thread) ---------------------------------------------------------------
    def tokenize(self, text: str, *, prompt: bool = True) -> list[int]:
        """Special tokens in the text are parsed (the gateway renders chat templates into the
        prompt); a prompt gets a BOS token when the model asks for one."""
        return self._model.tokenize(text.encode("utf-8"), add_bos=prompt and self._add_bos, special=True)

    def piece(self, token: int) -> bytes:
        """The bytes of one token (special tokens render as nothing, as in llama-cpp-python)."""
        piece = self._pieces.get(token)
        if piece is None:
            buffer = ctypes.create_string_buffer(64)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, False)
            if n < 0:
                buffer = ctypes.create_string_buffer(-n)
                n = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, False)
            piece = self._pieces[token] = buffer.raw[:n]
        return piece

    def is_end(self, token: int) -> bool:
        return token in self._ends

    # -- the context (engine thread only) --------------------------------------------------------
    def decode(self, tokens: Sequence[int], positions: Sequence[int], seq_ids: Sequence[int],
               logits: Sequence[bool]) -> None:
        n = self._batch.fill(tokens, positions, seq_ids, logits)
        status = llama_cpp.llama_decode(self._ctx, self._batch.view(n))
        if status != 0:
            raise DecodeError(f"llama_decode returned {status} for a batch of {n} tokens")

    def logits(self, index: int) -> np.ndarray:
        """The logits of the `index`-th token of the last batch, as a writable view (samplers
        read them from there, so masks written here apply)."""
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self._ctx, index), shape=(self.n_vocab,))

    def forget(self, seq_id: int, start: int = 0) -> None:
        """Drops the KV cache entries of a sequence from position `start` on."""
        llama_cpp.llama_memory_seq_rm(self._memory, seq_id, start, -1)

    def clear(self) -> None:
        """Empties the KV cache, so the next sequence's cells are placed as on a fresh start."""
        llama_cpp.llama_memory_clear(self._memory, False)

    def close(self) -> None:
        if self._ctx:
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
        self._model.close()


class _Batch:
    """A `llama_batch` over numpy arrays, so a step's tokens are written with a few vector
    copies instead of one ctypes assignment per field per token."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.token = np.zeros(capacity, dtype=np.int32)
        self.pos = np.zeros(capacity, dtype=np.int32)
        self.n_seq_id = np.ones(capacity, dtype=np.int32)
        self.seq_id = np.zeros(capacity, dtype=np.int32)
        self.logits = np.zeros(capacity, dtype=np.int8)
        int32_p = ctypes.POINTER(ctypes.c_int32)
        base = self.seq_id.ctypes.data
        self._seq_id_ptrs = (int32_p * capacity)(*(ctypes.cast(base + 4 * i, int32_p) for i in range(capacity)))

    def fill(self, tokens, positions, seq_ids, logits) -> int:
        n = len(tokens)
        if n > self.capacity:
            raise ValueError(f"a batch of {n} tokens exceeds the batch capacity {self.capacity}")
        self.token[:n] = tokens
        self.pos[:n] = positions
        self.seq_id[:n] = seq_ids
        self.logits[:n] = logits
        return n

    def view(self, n: int) -> llama_cpp.llama_batch:
        batch = llama_cpp.llama_batch()
        batch.n_tokens = n
        batch.token = self.token.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token))
        batch.embd = None
        batch.pos = self.pos.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_pos))
        batch.n_seq_id = self.n_seq_id.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        batch.seq_id = ctypes.cast(self._seq_id_ptrs, ctypes.POINTER(ctypes.POINTER(llama_cpp.llama_seq_id)))
        batch.logits = self.logits.ctypes.data_as(ctypes.POINTER(ctypes.c_int8))
        return batch
