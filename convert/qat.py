"""Quantization-aware fine-tuning with tfmot, for an int8 model that keeps more of its accuracy than PTQ."""

from __future__ import annotations

import logging

from feredge.convert.errors import ConversionError
from feredge.edge.dataset import Split
from feredge.edge.preprocess import PreprocessSpec
from feredge.train.augment import AugmentConfig
from feredge.train.config import TrainConfig
from feredge.train.pipeline import class_weights, make_dataset

log = logging.getLogger(__name__)


def quantization_aware(model, train: Split, spec: PreprocessSpec, epochs: int, config: TrainConfig):
    """A fake-quantized copy of ``model`` fine-tuned for ``epochs`` on ``train`` with light augmentation.

    Class weighting, batch size, label smoothing and seed come from the run's ``config``; the learning
    rate is the run's fine-tuning rate, small because the weights only have to adapt to quantization.
    """
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    if epochs < 1:
        raise ConversionError(f"QAT needs at least one epoch, got {epochs}")
    try:
        qat_model = tfmot.quantization.keras.quantize_model(model)
    except (ValueError, RuntimeError, TypeError) as exc:
        raise ConversionError(
            f"tfmot cannot make this model quantization-aware ({exc}); it needs a flat "
            "tf_keras functional model with Conv -> BN -> ReLU blocks"
        ) from exc
    num_classes = int(model.output_shape[-1])
    oversample = config.balance == "oversample"
    weights = class_weights(train.counts(num_classes), "none" if oversample else config.balance)
    dataset = make_dataset(
        train,
        spec,
        num_classes,
        config.batch_size,
        True,
        AugmentConfig.preset("light"),
        weights,
        oversample,
        config.seed,
    )
    lr = config.lr * config.finetune_lr_factor
    qat_model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=lr),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        weighted_metrics=["accuracy"],
    )
    log.info("QAT: fine-tuning %d epoch(s) on %d faces at lr %.2g", epochs, len(train), lr)
    qat_model.fit(dataset, epochs=epochs, verbose=2)
    return qat_model
