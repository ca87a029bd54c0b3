"""Seeds for the layers of a model, drawn from one integer."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["seed_stream"]


def seed_stream(seed: int) -> Callable[[], int]:
    """A function returning a new reproducible seed at each call.

    Every initialiser and dropout layer gets its own seed, so that a model built
    twice with the same ``seed`` starts from the same weights on any backend.

    >>> a, b = seed_stream(1), seed_stream(1)
    >>> [a(), a()] == [b(), b()]
    True
    """
    rng = np.random.default_rng(seed)
    return lambda: int(rng.integers(2**31 - 1))
