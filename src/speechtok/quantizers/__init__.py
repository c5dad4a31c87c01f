"""Quantizers: features -> discrete ids."""

from .kmeans import KMeans
from .safe_pickle import UnsafePickleError

__all__ = ["KMeans", "UnsafePickleError"]
