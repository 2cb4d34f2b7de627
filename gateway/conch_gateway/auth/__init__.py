"""Who may call what: credentials in, a `Caller` out, and the checks of what that caller may use.

Owns API keys (kept only as SHA-256 hashes, compared in constant time), users with argon2id password
hashes and the JWTs of `POST /api/auth/token`, Kubernetes ServiceAccount tokens (TokenReview, then
SubjectAccessReview `invoke` on the Model), the sources that keep credentials current (a watch of
labelled Secrets, or a local file and the environment), and the pure-ASGI middleware that puts the
request's `Caller` in context. May import registry, errors, protocol and settings; never services,
routes or limits (limits read the `Caller` from here, not the other way round).
"""
