"""transformers draws SpecAugment masks (`_compute_mask_indices`) from numpy's global RNG, which a
checkpoint cannot hold; a run draws them from its own generator instead, whose state it
checkpoints, so a resumed run masks exactly as an uninterrupted one."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np


@contextmanager
def numpy_drawn_from(generator: np.random.Generator | None) -> Iterator[None]:
    """Within the block numpy's global RNG is seeded from `generator` (one draw); numpy's own
    state is put back afterwards. None: the global RNG as it is."""
    if generator is None:
        yield
        return
    state = np.random.get_state()
    np.random.seed(int(generator.integers(2**32 - 1)))
    try:
        yield
    finally:
        np.random.set_state(state)
