"""Optimizers by ``--optimizer`` name; each builder takes the Keras module, so naming them imports no TensorFlow."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _adam(keras: Any, lr: float, weight_decay: float | None) -> Any:
    if weight_decay:
        return keras.optimizers.AdamW(learning_rate=lr, weight_decay=weight_decay)
    return keras.optimizers.Adam(learning_rate=lr)


def _sgd(keras: Any, lr: float, weight_decay: float | None) -> Any:
    # Nesterov momentum 0.9: the optimizer of the published FER2013 VGG recipe (Khaireddin & Chen, 2021).
    return keras.optimizers.SGD(learning_rate=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)


# name -> builder(keras, learning rate, decoupled weight decay or None)
OPTIMIZERS: dict[str, Callable[[Any, float, float | None], Any]] = {"adam": _adam, "sgd": _sgd}
