"""Batched, vectorized augmentation on gray faces in [0, 255] (before the contract's normalization).

Flip, rotation, shift, zoom and shear are composed into one projective transform per image, so each
image is resampled once; brightness/contrast, gamma, the domain degradations (blur, downscale and
upscale, noise) and random erasing follow. The domain degradations exist because real photos are
smoother and cleaner than FER2013's web crops: a model that never saw a smooth face calls it neutral.
Everything runs on whole batches inside tf.data, which keeps a 2-core CPU busy with the model rather
than with Python.
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
    gamma: float = 0.0  # +- log of the gamma exponent
    blur: float = 0.0  # probability of a Gaussian blur of random strength
    downscale: float = 0.0  # probability of a downscale to 50-85% of the side and back
    noise: float = 0.0  # the largest standard deviation of Gaussian pixel noise, in gray levels

    @classmethod
    def preset(cls, name: str) -> AugmentConfig:
        if name not in AUGMENT_PRESETS:
            raise ValueError(f"unknown augmentation preset {name!r}; choose from {', '.join(AUGMENT_PRESETS)}")
        return AUGMENT_PRESETS[name]

    @property
    def enabled(self) -> bool:
        return self != AUGMENT_PRESETS["none"]


AUGMENT_PRESETS: dict[str, AugmentConfig] = {
    "none": AugmentConfig(False, 0, 0, 0, 0, 0, 0, 0),
    "light": AugmentConfig(True, 5, 0.05, 0.05, 0, 0.1, 0.1, 0.0),
    "default": AugmentConfig(),
    "strong": AugmentConfig(True, 15, 0.12, 0.15, 8, 0.3, 0.3, 0.5),
    "domain": AugmentConfig(True, 12, 0.1, 0.15, 6, 0.25, 0.3, 0.4, gamma=0.4, blur=0.3, downscale=0.3, noise=8.0),
}


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
    flip = tf.where(tf.random.uniform([n]) < 0.5, -1.0, 1.0) if config.flip else tf.ones([n])
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
        images=images[..., None],
        transforms=transforms,
        output_shape=shape[1:3],
        interpolation="BILINEAR",
        fill_mode="REFLECT",
        fill_value=0.0,
    )[..., 0]
    if config.contrast:
        mean = tf.reduce_mean(out, axis=[1, 2], keepdims=True)
        out = (out - mean) * (1.0 + uniform(config.contrast))[:, None, None] + mean
    if config.brightness:
        out = out + (uniform(config.brightness) * 255.0)[:, None, None]
    if config.gamma:
        gamma = tf.exp(uniform(config.gamma))[:, None, None]
        out = 255.0 * tf.pow(tf.clip_by_value(out, 0.0, 255.0) / 255.0, gamma)
    if config.blur:
        out = _sometimes(out, _blur(out), config.blur, strength=True)
    if config.downscale:
        out = _sometimes(out, _down_up(out), config.downscale)
    if config.noise:
        sigma = tf.random.uniform([n], 0.0, config.noise)[:, None, None]
        out = out + tf.random.normal(shape) * sigma
    if config.erasing:
        out = _random_erase(out, config.erasing)
    return tf.clip_by_value(out, 0.0, 255.0)


def _sometimes(images: tf.Tensor, changed: tf.Tensor, probability: float, strength: bool = False) -> tf.Tensor:
    """``changed`` for a random share ``probability`` of the images, blended by a random weight if asked."""
    import tensorflow as tf

    n = tf.shape(images)[0]
    weight = tf.cast(tf.random.uniform([n]) < probability, tf.float32)
    if strength:
        weight = weight * tf.random.uniform([n], 0.3, 1.0)
    weight = weight[:, None, None]
    return images + weight * (changed - images)


def _blur(images: tf.Tensor) -> tf.Tensor:
    """A 5x5 Gaussian blur (sigma 1.2) of a (N, H, W) batch, borders reflected."""
    import tensorflow as tf

    taps = tf.exp(-tf.square(tf.range(-2.0, 3.0)) / (2 * 1.2**2))
    taps = taps / tf.reduce_sum(taps)
    kernel = (taps[:, None] * taps[None, :])[:, :, None, None]
    padded = tf.pad(images[..., None], [[0, 0], [2, 2], [2, 2], [0, 0]], mode="REFLECT")
    return tf.nn.conv2d(padded, kernel, strides=1, padding="VALID")[..., 0]


def _down_up(images: tf.Tensor) -> tf.Tensor:
    """The batch shrunk to a random 50-85% of its side (one factor per batch) and enlarged back."""
    import tensorflow as tf

    size = tf.shape(images)[1:3]
    factor = tf.random.uniform([], 0.5, 0.85)
    small = tf.maximum(tf.cast(tf.cast(size, tf.float32) * factor, tf.int32), 4)
    shrunk = tf.image.resize(images[..., None], small, method="area")
    return tf.image.resize(shrunk, size, method="bilinear")[..., 0]


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
        (ys >= y0[:, None, None])
        & (ys < (y0 + eh)[:, None, None])
        & (xs >= x0[:, None, None])
        & (xs < (x0 + ew)[:, None, None])
    )
    apply = (tf.random.uniform([n]) < probability)[:, None, None]
    noise = tf.random.uniform(shape, 0.0, 255.0)
    return tf.where(inside & apply, noise, images)
