"""A test double inside the real Triton: the llama-cpp runtime, unchanged, except that its
llama.cpp context raises when a batch carries the prompt text "KILL THE WORKER" — a fault inside
the batching worker, as a llama.cpp error or a bug would raise it."""

from conch_engines.runtimes.llama_cpp.context import LlamaContext
from conch_engines.runtimes.llama_cpp.triton_model import TritonPythonModel as _Runtime

TRIGGER = "KILL THE WORKER"


class _DyingContext(LlamaContext):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._trigger = self.tokenize(TRIGGER, prompt=False)

    def decode(self, tokens, positions, seq_ids, logits):
        tokens, n = list(tokens), len(self._trigger)
        if any(tokens[i:i + n] == self._trigger for i in range(len(tokens) - n + 1)):
            raise RuntimeError("injected fault: the worker dies")
        super().decode(tokens, positions, seq_ids, logits)


class TritonPythonModel(_Runtime):
    def _load(self, gguf_path, settings):
        return _DyingContext(gguf_path, settings)
