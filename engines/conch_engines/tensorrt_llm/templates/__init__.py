"""Triton config templates of TensorRT-LLM's model repositories, copied unmodified.

| file | NVIDIA/TensorRT-LLM path (triton_backend/all_models/…) | commit |
|---|---|---|
| ensemble.pbtxt | inflight_batcher_llm/ensemble/config.pbtxt | 2a9abd9536aa62ad3e4b9314be9286b1b1be523b |
| preprocessing.pbtxt | inflight_batcher_llm/preprocessing/config.pbtxt | 808059da341493bbf8deb9380aef745e4f546909 |
| tensorrt_llm.pbtxt | inflight_batcher_llm/tensorrt_llm/config.pbtxt | 2a9abd9536aa62ad3e4b9314be9286b1b1be523b |
| postprocessing.pbtxt | inflight_batcher_llm/postprocessing/config.pbtxt | 89fd9b74ab7ae753b4c6b3db25a400dca7ea54a0 |
| tensorrt_llm_bls.pbtxt | inflight_batcher_llm/tensorrt_llm_bls/config.pbtxt | bff88ea886779f832686acb3f165e2b919c95b77 |
| llmapi.pbtxt | llmapi/tensorrt_llm/config.pbtxt | c8c6df08bd0ead54cd47f7973e1e425c28a174cd |

They were read from stored copies of the repository (no network access to GitHub here); the
v1.2.1 tag's own copies were not available, so these are the closest stored versions — all from
the 1.x line, before the engine path was deleted on main. Diff them against
`/app/all_models/` in the pinned image when it can be pulled.
"""
