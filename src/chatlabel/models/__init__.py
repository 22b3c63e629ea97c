"""Models that make suggestions: the built-in text classifier and any Label Studio ML backend."""

from .base import Model, Prediction, Predictions, Suggested, Work, WorkSource, make_model

__all__ = ["Model", "Prediction", "Predictions", "Suggested", "Work", "WorkSource", "make_model"]
