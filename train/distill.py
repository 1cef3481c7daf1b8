"""Knowledge distillation: a student learns from hard labels and from its teachers' soft targets.

By default the teachers score the *same augmented batch* the student sees, inside the input
pipeline, rather than a cache of scores on clean images: a cached target describes an image the
student never gets, and "consistent teaching" (Beyer et al., 2022, "Knowledge distillation: a good
teacher is patient and consistent") showed that mismatch costs accuracy. That needs teachers that
read the student's pixels. ``--teacher-targets cached`` lifts that limit: each teacher (run folder,
Keras, ``.tflite`` or ``.onnx``) scores the clean training faces once, loaded under its *own* input
contract, so a raw-pixel model can teach a CLAHE student: on FER2013 validation the two contracts
disagree more than two seeds of one, and averaging a raw-pixel model with a CLAHE one scored higher
than averaging two CLAHE runs (model card).
Either way the teachers are flip-averaged, as the runtime scores them, so the student learns the
averaged answer and may serve without flip averaging.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from feredge.edge.dataset import Split, score_batches
from feredge.edge.errors import FeredgeError
from feredge.edge.metadata import ModelMetadata
from feredge.train.evaluate import load_predictor

if TYPE_CHECKING:
    import tensorflow as tf

_EPS = 1e-7


class DistillError(FeredgeError):
    """A teacher that cannot teach this student: unreadable, or another label set or input contract."""


@dataclass(frozen=True)
class DistillConfig:
    alpha: float = 0.7  # weight of the KL term; 1 - alpha goes to the hard labels
    temperature: float = 3.0
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise DistillError(f"--distill-alpha must be within [0, 1], got {self.alpha}")
        if self.temperature <= 0:
            raise DistillError(f"--distill-temperature must be > 0, got {self.temperature}")


def load_teachers(paths: Sequence[str | Path], student: ModelMetadata) -> list:
    """The teachers' Keras models, checked against the student's labels and input contract."""
    from feredge.train.keras_io import load_source

    models = []
    for path in paths:
        try:
            source = load_source(path)
        except FeredgeError as exc:
            served = Path(path).suffix.lower() in (".tflite", ".onnx")
            hint = "; --teacher-targets cached takes .tflite and .onnx teachers too" if served else ""
            raise DistillError(f"teacher {path}: {exc}{hint}") from exc
        meta = source.metadata
        mine = (student.labels, student.input_size, student.channels, student.normalization, student.photometric)
        theirs = (meta.labels, meta.input_size, meta.channels, meta.normalization, meta.photometric)
        if mine != theirs:
            raise DistillError(
                f"teacher {path}: labels/input contract {theirs} differ from the student's {mine}; a teacher "
                "must see the pixels the student sees and name the same classes (--teacher-targets cached lets a "
                "teacher of the same classes score the faces under its own contract)"
            )
        source.model.trainable = False
        models.append(source.model)
    if not models:
        raise DistillError("distillation needs at least one --teacher")
    return models


def teacher_scores(teachers: Sequence, inputs: tf.Tensor) -> tf.Tensor:
    """Mean probabilities of all teachers over the batch and its mirror (the runtime's flip averaging)."""
    import tensorflow as tf

    mirrored = tf.reverse(inputs, axis=[2])
    scores = [t(view, training=False) for t in teachers for view in (inputs, mirrored)]
    return tf.add_n(scores) / float(len(scores))


def cached_teacher_scores(
    paths: Sequence[str | Path],
    student: ModelMetadata,
    train_split: Split,
    load_faces: Callable[[int, str], Split],
) -> np.ndarray:
    """(N, K) mean flip-averaged probabilities of the teachers on the student's N clean training faces.

    A teacher of the student's input size and photometric normalization scores ``train_split`` itself;
    each other contract gets the training faces once from ``load_faces(input_size, photometric)``
    (the run's own loading, so the same faces in the same order; the class of every row is checked).
    Columns are put in the student's label order.
    """
    total = np.zeros((len(train_split), len(student.labels)), np.float64)
    splits = {(student.input_size, student.photometric): train_split}
    for path in paths:
        try:
            predict, meta = load_predictor(path)
        except FeredgeError as exc:
            raise DistillError(f"teacher {path}: {exc}") from exc
        if sorted(meta.labels) != sorted(student.labels):
            raise DistillError(
                f"teacher {path}: labels {', '.join(meta.labels)} differ from the student's {', '.join(student.labels)}"
            )
        contract = (meta.input_size, meta.photometric)
        if contract not in splits:
            faces = load_faces(meta.input_size, meta.photometric)
            if not np.array_equal(faces.targets, train_split.targets):
                raise DistillError(f"teacher {path}: the training faces changed while loading; cannot cache targets")
            splits[contract] = faces
        scores = score_batches(predict, splits[contract], meta.preprocess_spec(), flip=not meta.test_time_flip)
        total += scores[:, [meta.labels.index(name) for name in student.labels]]
    return (total / len(paths)).astype(np.float32)


def distillation_loss(config: DistillConfig, num_classes: int):
    """Loss on ``y_true = [one-hot | teacher probabilities]`` and the student's probabilities.

    ``(1 - alpha) * CE(labels, p) + alpha * T^2 * KL(teacher_T || student_T)``, where ``x_T`` is
    ``softmax(log x / T)``; the T^2 keeps the soft term's gradient scale independent of T (Hinton et al.).
    """
    import tensorflow as tf

    t = config.temperature

    def soften(probs: tf.Tensor) -> tf.Tensor:
        return tf.nn.softmax(tf.math.log(tf.clip_by_value(probs, _EPS, 1.0)) / t, axis=-1)

    def loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        hard, soft = y_true[:, :num_classes], y_true[:, num_classes:]
        if config.label_smoothing:
            hard = hard * (1.0 - config.label_smoothing) + config.label_smoothing / num_classes
        p = tf.clip_by_value(y_pred, _EPS, 1.0)
        ce = -tf.reduce_sum(hard * tf.math.log(p), axis=-1)
        teacher, student = soften(soft), soften(y_pred)
        kl = tf.reduce_sum(teacher * (tf.math.log(teacher + _EPS) - tf.math.log(student + _EPS)), axis=-1)
        return (1.0 - config.alpha) * ce + config.alpha * t * t * kl

    return loss


def hard_label_accuracy(num_classes: int):
    """Top-1 accuracy against the one-hot half of a distillation target."""
    import tensorflow as tf

    def accuracy(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        truth = tf.argmax(y_true[:, :num_classes], axis=-1)
        return tf.cast(tf.equal(truth, tf.argmax(y_pred, axis=-1)), tf.float32)

    accuracy.__name__ = "accuracy"
    return accuracy
