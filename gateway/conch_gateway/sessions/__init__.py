"""Chat sessions (seed 002's /chat, /reset, /status): the store and the pure history rules."""
