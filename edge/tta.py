"""Test-time flip averaging, shared by the runtime and evaluation so both score a model the same way."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def flip_average(predict: Callable[[np.ndarray], np.ndarray], batch: np.ndarray) -> np.ndarray:
    """Mean of the scores of each (N, S, S, C) input and its mirror, in one batched call."""
    n = len(batch)
    scores = np.asarray(predict(np.concatenate([batch, batch[:, :, ::-1]])))
    return (scores[:n] + scores[n:]) / 2.0
