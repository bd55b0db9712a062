"""Bundled models (package data): ``digits/`` is a CNN trained on scikit-learn's 8x8 digits,
``digits_wide/`` a larger one on the same images (11x the weights)."""

from importlib import resources

__all__ = ["path"]


def path(name):
    """Filesystem path of a bundled model file, e.g. ``path("digits/digits_int8.onnx")``."""
    return resources.files(__name__).joinpath(name)
