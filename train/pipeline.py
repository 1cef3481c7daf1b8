"""tf.data input pipelines: in-memory uint8 faces -> augment -> the contract's ``normalize``.

Faces were decoded and resized by the contract (``prepare_face``) when the data set was loaded, so
the only step left here is the same ``normalize`` the edge runtime calls, applied after
augmentation. ``tests/test_train_data.py`` proves the two paths give the same tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from feredge.edge.dataset import Split
from feredge.edge.preprocess import PreprocessSpec, normalize
from feredge.train.augment import AugmentConfig, augment_batch

if TYPE_CHECKING:
    import tensorflow as tf


def class_weights(counts: np.ndarray, mode: str) -> np.ndarray:
    """Per-class loss weights: ``balanced`` (n / (k * count)), ``sqrt`` (its square root) or ``none``.

    Weights are scaled so the average sample weight is 1, which keeps the learning rate meaningful.
    """
    counts = np.asarray(counts, float)
    if mode == "none":
        return np.ones_like(counts)
    raw = np.divide(counts.sum(), len(counts) * counts, out=np.zeros_like(counts), where=counts > 0)
    if mode == "sqrt":
        raw = np.sqrt(raw)
    elif mode != "balanced":
        raise ValueError(f"unknown class weighting {mode!r}")
    return raw * counts.sum() / max((raw * counts).sum(), 1e-12)


def oversample_indices(targets: np.ndarray, seed: int) -> np.ndarray:
    """Indices in which every class smaller than the median class is repeated up to the median."""
    rng = np.random.default_rng(seed)
    counts = np.bincount(targets)
    target = int(np.median(counts[counts > 0]))
    parts = []
    for cls in np.flatnonzero(counts):
        idx = np.flatnonzero(targets == cls)
        if len(idx) < target:
            idx = np.concatenate([idx, rng.choice(idx, target - len(idx), replace=True)])
        parts.append(idx)
    return np.concatenate(parts)


def make_dataset(
    split: Split,
    spec: PreprocessSpec,
    num_classes: int,
    batch_size: int,
    training: bool,
    augment: AugmentConfig | None = None,
    weights: np.ndarray | None = None,
    oversample: bool = False,
    seed: int = 0,
    teacher: Callable[[tf.Tensor], tf.Tensor] | None = None,
    soft_targets: np.ndarray | None = None,
    label_targets: np.ndarray | None = None,
    sample_labels: bool = False,
) -> tf.data.Dataset:
    """Batches of (inputs, one-hot targets[, sample weights]) for ``model.fit`` / ``predict``.

    With a ``teacher`` the targets are ``[one-hot | teacher probabilities]``, the teacher scoring the
    same augmented batch the student gets; with ``soft_targets`` (one row of teacher probabilities
    per face of ``split``, cached) the rows travel with their faces (see ``feredge.train.distill``).
    ``label_targets`` (FER+ vote distributions, one row per face) replace the one-hot labels, or with
    ``sample_labels`` each face draws its label from its row at every epoch (the paper's probability mode).
    """
    import tensorflow as tf

    columns = {"faces": split.images, "labels": split.targets}
    if label_targets is not None:
        columns["dist"] = np.asarray(label_targets, np.float32)
    if soft_targets is not None:
        columns["soft"] = np.asarray(soft_targets, np.float32)
    if training and oversample:
        idx = oversample_indices(split.targets, seed)
        columns = {name: column[idx] for name, column in columns.items()}
    if weights is not None:
        columns["weights"] = np.asarray(weights, np.float32)[columns["labels"]]
    ds = tf.data.Dataset.from_tensor_slices(columns)
    if training:
        ds = ds.shuffle(len(columns["labels"]), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    do_augment = training and augment is not None and augment.enabled

    def to_inputs(batch):
        x = tf.cast(batch["faces"], tf.float32)
        if do_augment:
            x = augment_batch(x, augment)
        inputs, targets = normalize(x, spec), tf.one_hot(batch["labels"], num_classes)
        if "dist" in batch and sample_labels:
            drawn = tf.random.categorical(tf.math.log(tf.maximum(batch["dist"], 1e-12)), 1)[:, 0]
            targets = tf.one_hot(drawn, num_classes)
        elif "dist" in batch:
            targets = batch["dist"]
        if teacher is not None:
            targets = tf.concat([targets, tf.cast(teacher(inputs), tf.float32)], axis=-1)
        if "soft" in batch:
            targets = tf.concat([targets, batch["soft"]], axis=-1)
        return (inputs, targets) if "weights" not in batch else (inputs, targets, batch["weights"])

    return ds.map(to_inputs, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
