"""Models, built from a trial's config. Importing this package registers the built-in models."""
from harness.models.base import MODELS, ModelContext
from harness.models import convnets, mlp, transformer  # noqa: F401

__all__ = ["MODELS", "ModelContext"]
