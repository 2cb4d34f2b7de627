"""Conch's API gateway: one HTTP API in front of Triton-served models."""
