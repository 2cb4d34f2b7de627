"""TensorRT-LLM engine builds: `plan` decides the next step from a snapshot of the cluster (pure),
`sync` observes, asks `plan`, and carries the decision out (the only I/O)."""
