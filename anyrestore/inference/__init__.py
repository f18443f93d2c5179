"""Inference on images of any size: :class:`Predictor` (device, precision, normalisation, padding, tiling)."""
from anyrestore.inference.predictor import InferenceError, Predictor, select_device
from anyrestore.inference.tiling import pad_to_multiple, tiled_apply

__all__ = ["InferenceError", "Predictor", "pad_to_multiple", "select_device", "tiled_apply"]
