"""Model → Kubernetes manifests. Pure: no I/O, no Kubernetes client, so every manifest is
unit-testable and every reconcile renders exactly the same desired state.

`kit` holds what every workload shares (names, labels, ownership, probes, security contexts,
GPU placement and the one Triton Deployment skeleton); `llama_cpp` and `tensorrt_llm` build
their serving objects on it; `build_job` renders the TensorRT-LLM engine build Job and cache claim.
"""
