"""Conch's API gateway: one HTTP API in front of Triton-served models."""

__version__ = "0.1.0"
