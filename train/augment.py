"""Batched, vectorized augmentation on gray faces in [0, 255] (before the contract's normalization).

Flip, rotation, shift, zoom and shear are composed into one projective transform per image, so each
image is resampled once; brightness/contrast and random erasing follow. Everything runs on whole
batches inside tf.data, which keeps a 2-core CPU busy with the model rather than with Python.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tensorflow as tf


@dataclass(frozen=True)
class AugmentConfig:
    flip: bool = True
    rotation: float = 10.0  # degrees, +-
    shift: float = 0.1  # fraction of the side, +-
    zoom: float = 0.1  # +- scale change
    shear: float = 5.0  # degrees, +-
    brightness: float = 0.2  # fraction of 255, +-
    contrast: float = 0.2  # +- factor around the image mean
    erasing: float = 0.25  # probability of one random erased rectangle

    @classmethod
    def preset(cls, name: str) -> AugmentConfig:
        presets = {
            "none": cls(False, 0, 0, 0, 0, 0, 0, 0),
            "light": cls(True, 5, 0.05, 0.05, 0, 0.1, 0.1, 0.0),
            "default": cls(),
            "strong": cls(True, 15, 0.12, 0.15, 8, 0.3, 0.3, 0.5),
        }
        if name not in presets:
            raise ValueError(f"unknown augmentation preset {name!r}; choose from {', '.join(presets)}")
        return presets[name]

    @property
    def enabled(self) -> bool:
        return self != AugmentConfig.preset("none")


def augment_batch(images: tf.Tensor, config: AugmentConfig) -> tf.Tensor:
    """Augment a float32 batch (N, H, W) of gray faces in [0, 255]; returns the same shape."""
    import tensorflow as tf

    shape = tf.shape(images)
    n, h, w = shape[0], tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)

    def uniform(limit: float):
        return tf.random.uniform([n], -limit, limit)

    angle = uniform(math.radians(config.rotation))
    shear = uniform(math.radians(config.shear))
    scale = 1.0 + uniform(config.zoom)
    flip = (
        tf.where(tf.random.uniform([n]) < 0.5, -1.0, 1.0) if config.flip else tf.ones([n])
    )
    tx, ty = uniform(config.shift) * w, uniform(config.shift) * h
    # Inverse map (output -> input pixel) about the image centre: A = R(angle) S(shear) diag(flip, 1) / scale.
    cos, sin = tf.cos(angle), tf.sin(angle)
    a0 = (cos * flip) / scale
    a1 = (-sin + cos * tf.tan(shear)) / scale
    b0 = (sin * flip) / scale
    b1 = (cos + sin * tf.tan(shear)) / scale
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    a2 = cx - a0 * cx - a1 * cy + tx
    b2 = cy - b0 * cx - b1 * cy + ty
    zeros = tf.zeros([n])
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=images[..., None], transforms=transforms, output_shape=shape[1:3],
        interpolation="BILINEAR", fill_mode="REFLECT", fill_value=0.0,
    )[..., 0]
    if config.contrast:
        mean = tf.reduce_mean(out, axis=[1, 2], keepdims=True)
        out = (out - mean) * (1.0 + uniform(config.contrast))[:, None, None] + mean
    if config.brightness:
        out = out + (uniform(config.brightness) * 255.0)[:, None, None]
    if config.erasing:
        out = _random_erase(out, config.erasing)
    return tf.clip_by_value(out, 0.0, 255.0)


def _random_erase(images: tf.Tensor, probability: float) -> tf.Tensor:
    """Replace one rectangle (2-25% of the area) with noise in a random subset of images."""
    import tensorflow as tf

    shape = tf.shape(images)
    n, h, w = shape[0], shape[1], shape[2]
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    area = tf.random.uniform([n], 0.02, 0.25) * hf * wf
    ratio = tf.exp(tf.random.uniform([n], math.log(0.3), math.log(3.3)))
    eh = tf.minimum(tf.sqrt(area * ratio), hf)
    ew = tf.minimum(tf.sqrt(area / ratio), wf)
    y0 = tf.random.uniform([n]) * (hf - eh)
    x0 = tf.random.uniform([n]) * (wf - ew)
    ys = tf.cast(tf.range(h), tf.float32)[None, :, None]
    xs = tf.cast(tf.range(w), tf.float32)[None, None, :]
    inside = (
        (ys >= y0[:, None, None]) & (ys < (y0 + eh)[:, None, None])
        & (xs >= x0[:, None, None]) & (xs < (x0 + ew)[:, None, None])
    )
    apply = (tf.random.uniform([n]) < probability)[:, None, None]
    noise = tf.random.uniform(shape, 0.0, 255.0)
    return tf.where(inside & apply, noise, images)
