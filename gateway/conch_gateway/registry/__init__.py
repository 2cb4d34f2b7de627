"""Model sources and the routing table they keep current."""

from .base import ModelRegistry, ModelSource, ServedModel, served_model

__all__ = ["ModelRegistry", "ModelSource", "ServedModel", "served_model"]
