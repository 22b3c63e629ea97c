"""Models that make suggestions: the built-in text classifier and any Label Studio ML backend."""

from .base import Example, ItemText, Model, Prediction, Suggested, make_model

__all__ = ["Example", "ItemText", "Model", "Prediction", "Suggested", "make_model"]
