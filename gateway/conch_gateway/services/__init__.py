"""Dialect-independent logic between the routes and the backends."""
