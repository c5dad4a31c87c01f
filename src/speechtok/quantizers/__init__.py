"""Quantizers: features -> discrete ids."""

from .kmeans import KMeans

__all__ = ["KMeans"]
