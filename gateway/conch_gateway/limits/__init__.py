"""How much, and what happens under overload: per-caller quotas (requests and tokens per minute,
requests in flight) shared by every replica through Redis or kept in-process, the `X-RateLimit-*`
headers and 429s they produce, per-model admission control (in flight per ready replica plus a
bounded wait), the request-body limit, and the uvicorn protocol with a header timeout.

May import auth (the `Caller` whose quota applies), registry, errors, protocol and settings; never
services or routes — the generation core calls in here (`admission`, `usage`), not the other way.
"""
