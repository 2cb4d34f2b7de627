"""Talking to inference servers: backend-neutral types, tensor-interface codecs, the Triton client."""
