"""Matrix products whose rows do not depend on how many rows are computed together.

Batching never changes results (DESIGN.md), and jobs on short files compute the frames of many
files in one product (MFCC, k-means assignment). On one CPU thread a row of a matrix product is
the same whatever rows surround it, except that the BLAS takes another path for products of fewer
than a few rows (measured: 1-3 rows differ from the same rows inside a larger product by an ulp).
So products of few rows are computed with zero rows added, through the same path as large ones.
"""

from __future__ import annotations

import torch

MIN_ROWS = 8  # products of at least this many rows take the large-product path


def matmul(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x @ w, each row as it would be inside a larger product."""
    if 0 < len(x) < MIN_ROWS:
        return (_padded(x) @ w)[: len(x)]
    return x @ w


def addmm(bias: torch.Tensor, x: torch.Tensor, w: torch.Tensor, alpha: float) -> torch.Tensor:
    """bias + alpha * (x @ w), each row as it would be inside a larger product."""
    if 0 < len(x) < MIN_ROWS:
        return torch.addmm(bias, _padded(x), w, alpha=alpha)[: len(x)]
    return torch.addmm(bias, x, w, alpha=alpha)


def _padded(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, x.new_zeros(MIN_ROWS - len(x), *x.shape[1:])])
