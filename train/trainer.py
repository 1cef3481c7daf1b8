"""Two-stage training with resumable checkpoints; the best epoch is chosen on validation macro-F1
(a final fit, on train + val, keeps its last epoch).

Stage ``head`` trains the new head on a frozen base (only with pretrained weights); stage
``finetune`` unfreezes the top N base layers at a lower learning rate (all layers, at the full rate,
when training from scratch). After every epoch the run folder holds a restorable checkpoint
(model + optimizer), ``state.json`` and ``history.csv``, so ``--resume`` continues where a killed
run stopped.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from feredge.edge.atomic import atomic_path, atomic_write_bytes, atomic_write_text
from feredge.edge.dataset import Dataset, Split, join_splits, load_dataset, score_batches
from feredge.edge.errors import FeredgeError
from feredge.edge.ferplus import training_distribution
from feredge.edge.metadata import ModelMetadata, is_integer, is_real
from feredge.edge.metrics import classification_metrics, format_report
from feredge.edge.photometric import is_stacked
from feredge.edge.preprocess import PreprocessSpec
from feredge.plots import plot_confusion_matrix
from feredge.train.augment import AugmentConfig
from feredge.train.backbones import (
    FEATURES_NAME,
    HEAD_NAME,
    base_layers,
    build_model,
    get_backbone,
    resolve_weights,
)
from feredge.train.config import TEACHER_TARGETS, TrainConfig
from feredge.train.distill import (
    DistillConfig,
    DistillError,
    cached_teacher_scores,
    distillation_loss,
    hard_label_accuracy,
    load_teachers,
    teacher_scores,
)
from feredge.train.distribute import (
    lost_workers,
    make_strategy,
    refuse_multiworker_resume,
    run_folder,
    set_precision,
)
from feredge.train.keras_io import MODEL_FILE
from feredge.train.optimizers import OPTIMIZERS
from feredge.train.pipeline import class_weights, make_dataset
from feredge.train.tflite_weights import carry_contract

log = logging.getLogger(__name__)

BEST_WEIGHTS = "checkpoints/best_weights.h5"  # legacy HDF5: a ".weights.h5" name switches format
TEACHER_TARGETS_FILE = "teacher_targets.npz"  # --teacher-targets cached: (N, K) scores in face order, fingerprint
# state.json, as RunState writes it: field -> whether a saved value is one it could have written
STATE_FIELDS: dict[str, Callable[[Any], bool]] = {
    "stage": lambda v: v in (None, "head", "finetune"),
    "epoch": lambda v: is_integer(v) and v >= 0,
    "best_f1": is_real,
    "best_epoch": lambda v: v is None or isinstance(v, str),
    "history": lambda v: isinstance(v, list) and all(isinstance(row, dict) for row in v),
    "done": lambda v: isinstance(v, bool),
}


class RunFolderExists(FeredgeError):
    pass


def resolve_spec(config: TrainConfig) -> PreprocessSpec:
    """The model input a config implies; checks the backbone, size and weights before any data loads."""
    backbone = get_backbone(config.backbone)
    resolve_weights(config.weights, backbone)
    if is_stacked(config.photometric):
        raise FeredgeError(
            f"photometric {config.photometric!r} stacks several views, which only `feredge ensemble` builds; "
            "train each member on one (none or clahe)"
        )
    try:
        return PreprocessSpec(
            config.input_size or backbone.default_size, backbone.channels, backbone.normalization, config.photometric
        )
    except ValueError as exc:
        raise FeredgeError(f"model input: {exc}") from exc


def train(config: TrainConfig, resume: bool = False, on_epoch: Callable[[int, float], None] | None = None) -> Path:
    """Run (or resume) a training run; returns the run folder.

    ``on_epoch(epoch, val_macro_f1)`` is called once each epoch is saved, epochs counted across stages from 1;
    an exception it raises (``feredge tune``'s pruning) stops the run, which stays resumable.
    """
    import tensorflow as tf
    import tf_keras as keras

    from feredge.train.callbacks import MacroF1, RunState

    run_dir = Path(config.out)
    state_path = run_dir / "state.json"
    if resume:
        refuse_multiworker_resume(config.strategy, run_dir)
        if not state_path.exists():
            raise FeredgeError(f"{run_dir}: nothing to resume (no state.json); start a new run without --resume")
        config = TrainConfig.load(run_dir / "config.json")
        refuse_multiworker_resume(config.strategy, run_dir)
        state = _load_state(state_path)
        log.info("resuming %s at stage %s, epoch %d", run_dir, state["stage"], state["epoch"])
    else:
        if state_path.exists():
            raise RunFolderExists(f"{run_dir} already holds a run; pass --resume to continue it or choose --out")
        config = carry_contract(config)
        state = {"stage": None, "epoch": 0, "best_f1": -1.0, "best_epoch": None, "history": [], "done": False}
    if state.get("done"):
        log.info("%s is already complete", run_dir)
        return run_dir

    if config.optimizer not in OPTIMIZERS:
        raise FeredgeError(f"unknown optimizer {config.optimizer!r}; choose {', '.join(OPTIMIZERS)}")
    if config.teacher_targets not in TEACHER_TARGETS:
        raise DistillError(
            f"unknown --teacher-targets {config.teacher_targets!r}; choose {' or '.join(TEACHER_TARGETS)}"
        )
    if config.teacher_targets == "cached" and not config.teachers:
        raise DistillError("--teacher-targets cached needs at least one --teacher")
    if config.final_fit and config.schedule == "plateau":  # before the data loads
        raise FeredgeError("--final-fit leaves no validation score for --schedule plateau; use --schedule cosine")
    if config.final_fit and on_epoch is not None:
        raise FeredgeError("a final fit reports no validation score for on_epoch (feredge tune) to follow")
    strategy = make_strategy(config.strategy)  # before any other TensorFlow op (logical CPUs, multi-worker)
    run_dir = run_folder(run_dir, strategy)  # a multi-worker run is written by the chief only
    keras.utils.set_random_seed(config.seed)
    set_precision(config.mixed_precision)
    spec = resolve_spec(config)
    dataset = load_training_data(config, config.labels, spec.input_size, spec.photometric)
    log.info("data: %s", dataset.describe())
    labels = dataset.labels
    weights = class_weights(
        dataset.splits["train"].counts(len(labels)), "none" if config.balance == "oversample" else config.balance
    )
    label_targets = vote_targets(dataset.splits["train"], config.label_mode)
    metadata = ModelMetadata(
        labels=labels,
        input_size=spec.input_size,
        channels=spec.channels,
        normalization=spec.normalization,
        photometric=spec.photometric,
        crop_margin=config.crop_margin,
        backbone=f"{config.backbone}(alpha={config.alpha})",
        training_data=dataset.describe() + (f"; final fit, {config.epochs} epochs" if config.final_fit else ""),
        format="keras",
        test_time_flip=config.test_time_flip,
        class_prior=training_prior(dataset.splits["train"], weights, label_targets),
        extra=_distillation_record(config),
    )
    cached = config.teacher_targets == "cached"
    teachers = load_teachers(config.teachers, metadata) if config.teachers and not cached else None
    run_dir.mkdir(parents=True, exist_ok=True)
    config.save(run_dir / "config.json")
    metadata.save(run_dir / "metadata.json")
    soft_targets = _cached_targets(config, metadata, dataset.splits["train"], run_dir) if cached else None

    pretrained = config.weights != "none"
    head_epochs = config.head_epochs if config.head_epochs is not None else (5 if pretrained else 0)
    augment = AugmentConfig.preset(config.augment)
    train_ds = make_dataset(
        dataset.splits["train"],
        spec,
        len(labels),
        config.batch_size,
        True,
        augment,
        weights,
        config.balance == "oversample",
        config.seed,
        teacher=(lambda x: teacher_scores(teachers, x)) if teachers else None,
        soft_targets=soft_targets,
        label_targets=label_targets,
        sample_labels=config.label_mode == "probability",
    )
    val_split = dataset.splits.get("val")

    with strategy.scope():
        model = build_model(
            config.backbone, len(labels), spec.input_size, config.weights, config.alpha, config.dropout, labels
        )
    log.info(
        "model %s: %d parameters, devices: %s",
        model.name,
        model.count_params(),
        [d.name for d in tf.config.list_logical_devices()],
    )

    stages = []
    if head_epochs > 0:
        stages.append(("head", head_epochs, config.lr))
    stages.append(("finetune", config.epochs, config.lr * config.finetune_lr_factor if stages else config.lr))
    start = [name for name, _, _ in stages].index(state["stage"]) if state["stage"] else 0
    for name, epochs, lr in stages[start:]:
        initial_epoch = state["epoch"] if state["stage"] == name else 0
        if state["stage"] != name:
            state.update(stage=name, epoch=0)
            if name == "finetune" and (run_dir / BEST_WEIGHTS).exists():
                model.load_weights(str(run_dir / BEST_WEIGHTS))
        _set_trainable(model, name, config.unfreeze, pretrained)
        with strategy.scope():
            optimizer = OPTIMIZERS[config.optimizer](keras, lr, config.weight_decay or None)
            model.compile(optimizer=optimizer, **_loss_and_metrics(config, len(labels)))
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
        manager = tf.train.CheckpointManager(checkpoint, str(run_dir / "checkpoints" / name), max_to_keep=1)
        if initial_epoch > 0 and manager.latest_checkpoint:
            checkpoint.restore(manager.latest_checkpoint).expect_partial()
            log.info("restored %s", manager.latest_checkpoint)
        if initial_epoch >= epochs:
            continue
        callbacks = [RunState(run_dir, state, manager, epochs, BEST_WEIGHTS, keep_last=config.final_fit)]
        if not config.final_fit:
            callbacks.insert(0, MacroF1(val_split, spec, labels, config.test_time_flip))  # the others read its logs
            callbacks.append(
                keras.callbacks.EarlyStopping("val_macro_f1", mode="max", patience=config.patience, verbose=1)
            )
        if on_epoch is not None:  # after RunState: the epoch is on disk before the observer may stop the run
            callbacks.insert(
                2,
                keras.callbacks.LambdaCallback(
                    on_epoch_end=lambda _epoch, logs: on_epoch(len(state["history"]), logs["val_macro_f1"])
                ),
            )
        if config.schedule == "cosine":
            callbacks.append(keras.callbacks.LearningRateScheduler(cosine_schedule(lr, epochs, config.warmup_epochs)))
        else:
            callbacks.append(
                keras.callbacks.ReduceLROnPlateau(
                    "val_macro_f1",
                    mode="max",
                    factor=0.5,
                    patience=max(1, config.patience // 3),
                    min_lr=1e-6,
                    verbose=1,
                )
            )
        log.info("stage %s: epochs %d..%d, lr %.2g", name, initial_epoch + 1, epochs, lr)
        with lost_workers(strategy):  # a dead peer of a multi-worker run is one line, not a traceback
            model.fit(
                train_ds,
                epochs=epochs,
                initial_epoch=initial_epoch,
                callbacks=callbacks,
                verbose=1 if sys.stderr.isatty() else 2,
            )
    model.load_weights(str(run_dir / BEST_WEIGHTS))
    if config.head == "svm":
        fit_svm_head(model, dataset.splits["train"], spec, config.svm_c, config.balance != "none", config.seed)
    finish_run(model, run_dir, dataset, spec, metadata, state)
    return Path(config.out)


def _load_state(path: Path) -> dict[str, Any]:
    """The progress ``RunState`` saved in ``state.json``; a damaged file is refused rather than guessed at,
    since a wrong stage or epoch would silently retrain or skip part of the run."""
    try:
        state = json.loads(path.read_text())
    except ValueError as exc:  # bad JSON or not UTF-8; an unreadable file is the OSError it is
        raise _damaged_state(path, str(exc)) from exc
    if not isinstance(state, dict):
        raise _damaged_state(path, f"a JSON {type(state).__name__}, not an object")
    bad = [name for name, valid in STATE_FIELDS.items() if name not in state or not valid(state[name])]
    if bad:
        raise _damaged_state(path, f"missing or invalid {', '.join(bad)}")
    return state


def _damaged_state(path: Path, detail: str) -> FeredgeError:
    return FeredgeError(f"{path} is damaged ({detail}); the run cannot be resumed: start a new run with another --out")


def load_training_data(config: TrainConfig, labels, input_size: int, photometric: str) -> Dataset:
    """The run's data at one input contract; for a final fit, with the validation faces merged into training.

    Cached teaching reloads it at each teacher's contract through here, so every teacher scores the
    same faces in the same order as the student trains on.
    """
    dataset = load_dataset(
        config.data,
        labels,
        input_size,
        config.val_fraction,
        config.seed,
        config.workers,
        photometric=photometric,
        ferplus_votes=config.ferplus_votes,
        label_mode=config.label_mode,
    )
    return merge_validation(dataset) if config.final_fit else dataset


def merge_validation(dataset: Dataset) -> Dataset:
    """The data of a final fit: the validation faces join the training faces, and no validation split is left.

    Nothing is held out to choose an epoch on, so the count is fixed beforehand and the schedule
    cannot follow a validation score. The loader always gives a val split for training data (carved
    with ``val_fraction`` when the layout has none), so the faces all come back here.
    """
    merged = join_splits([dataset.splits["train"], dataset.splits["val"]])
    rest = {name: split for name, split in dataset.splits.items() if name not in ("train", "val")}
    return replace(dataset, splits={"train": merged, **rest})


def vote_targets(split: Split, mode: str) -> np.ndarray | None:
    """The FER+ vote distribution to learn (``probability``/``crossentropy``), or None for class indices."""
    if split.votes is None or mode == "majority":
        return None
    return training_distribution(split.votes, mode)


def training_prior(split: Split, weights: np.ndarray, label_targets: np.ndarray | None) -> tuple[float, ...]:
    """The class prior the network learns: its targets' mean under the per-class sample weights.

    The runtime removes it from the scores (logit adjustment), so it must be the prior the loss saw,
    class weighting included, not the raw label counts.
    """
    sample_weights = np.asarray(weights, np.float64)[split.targets]
    targets = label_targets if label_targets is not None else np.eye(len(weights))[split.targets]
    prior = (sample_weights[:, None] * targets).sum(axis=0)
    return tuple(float(p) for p in prior / prior.sum())


def _distillation_record(config: TrainConfig) -> dict[str, Any]:
    if not config.teachers:
        return {}
    return {
        "distillation": {
            "teachers": list(config.teachers),
            "alpha": config.distill_alpha,
            "temperature": config.distill_temperature,
            "teacher_flip_average": True,
            "teacher_targets": config.teacher_targets,
        }
    }


def _cached_targets(config: TrainConfig, metadata: ModelMetadata, faces: Split, run_dir: Path) -> np.ndarray:
    """The teachers' scores on the clean training faces, kept in the run folder so ``--resume`` reuses them.

    The file carries a fingerprint of what made it (teachers, data, split, labels, the faces' classes);
    a file of another run, or a damaged one, is recomputed rather than trusted.
    """
    path = run_dir / TEACHER_TARGETS_FILE
    fingerprint = json.dumps(
        {
            "teachers": [str(Path(t).resolve()) for t in config.teachers],
            "data": str(config.data),
            "val_fraction": config.val_fraction,
            "seed": config.seed,
            "labels": list(metadata.labels),
            "targets": hashlib.sha256(np.ascontiguousarray(faces.targets, np.int64).tobytes()).hexdigest(),
        },
        sort_keys=True,
    )
    try:
        with np.load(path) as saved:
            if str(saved["fingerprint"]) == fingerprint:
                return saved["scores"]
    except (OSError, ValueError, KeyError, EOFError):
        pass  # no file yet, or not one this run can trust: compute it
    scores = cached_teacher_scores(
        config.teachers,
        metadata,
        faces,
        lambda size, photometric: load_training_data(config, metadata.labels, size, photometric).splits["train"],
    )
    buffer = io.BytesIO()
    np.savez(buffer, scores=scores, fingerprint=np.array(fingerprint))
    atomic_write_bytes(path, buffer.getvalue())
    log.info("cached the teachers' scores on %d training faces in %s", len(faces), path)
    return scores


def _loss_and_metrics(config: TrainConfig, num_classes: int) -> dict[str, Any]:
    """Label-smoothed cross-entropy, or with teachers the distillation loss on [one-hot | soft targets]."""
    import tf_keras as keras

    if not config.teachers:
        return {
            "loss": keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
            "weighted_metrics": ["accuracy"],
        }
    distill = DistillConfig(config.distill_alpha, config.distill_temperature, config.label_smoothing)
    return {
        "loss": distillation_loss(distill, num_classes),
        "weighted_metrics": [hard_label_accuracy(num_classes)],
    }


def cosine_schedule(lr: float, epochs: int, warmup: int):
    """Linear warm-up then cosine decay to 1% of ``lr``; a pure function of the epoch, so resumable."""

    def schedule(epoch: int, _current: float) -> float:
        if epoch < warmup:
            return lr * (epoch + 1) / (warmup + 1)
        progress = (epoch - warmup) / max(1, epochs - warmup)
        return lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))

    return schedule


def _set_trainable(model, stage: str, unfreeze: int, pretrained: bool) -> None:
    from tf_keras import layers as kl

    base = base_layers(model)
    for layer in model.layers:
        layer.trainable = True
    if stage == "head":
        for layer in base:
            layer.trainable = False
        return
    if unfreeze >= 0:
        for layer in base[: max(0, len(base) - unfreeze)]:
            layer.trainable = False
    if pretrained:  # pretrained BN statistics are worth more than a small batch's
        for layer in base:
            if isinstance(layer, kl.BatchNormalization):
                layer.trainable = False


def fit_svm_head(model, split: Split, spec: PreprocessSpec, c: float, balanced: bool, seed: int) -> None:
    """Fit a linear SVM on the pooled embeddings and fold it into the Dense head (one Keras model)."""
    import tf_keras as keras
    from sklearn.svm import LinearSVC

    features = keras.Model(model.input, model.get_layer(FEATURES_NAME).output)
    embeddings = score_batches(features.predict_on_batch, split, spec)  # pooled features, batched like any score
    svm = LinearSVC(C=c, class_weight="balanced" if balanced else None, random_state=seed, max_iter=5000)
    svm.fit(embeddings, split.targets)
    coef, intercept = svm.coef_, svm.intercept_
    if coef.shape[0] == 1:  # binary: one decision function, split symmetrically over two logits
        coef, intercept = np.vstack([-coef, coef]) / 2, np.array([-intercept[0], intercept[0]]) / 2
    model.get_layer(HEAD_NAME).set_weights([coef.T.astype(np.float32), intercept.astype(np.float32)])
    log.info("svm head: C=%g, train accuracy %.4f", c, svm.score(embeddings, split.targets))


def evaluate_splits(model, dataset: Dataset, spec: PreprocessSpec, flip: bool) -> dict[str, Any]:
    results = {}
    for name in ("val", "test"):
        if name in dataset.splits:
            split = dataset.splits[name]
            scores = score_batches(model.predict_on_batch, split, spec, flip)
            results[name] = classification_metrics(split.targets, scores.argmax(1), dataset.labels)
    return results


def finish_run(
    model, run_dir: Path, dataset: Dataset, spec: PreprocessSpec, metadata: ModelMetadata, state: dict
) -> None:
    """Save the final model atomically, then metrics.json and the plots."""
    from feredge.train.plots import plot_training_curves

    with atomic_path(run_dir / MODEL_FILE) as tmp:  # the temporary name keeps the .keras suffix
        model.save(str(tmp))
    results = evaluate_splits(model, dataset, spec, metadata.test_time_flip)
    results["best_epoch"] = state["best_epoch"]
    results["model"] = MODEL_FILE
    atomic_write_text(run_dir / "metrics.json", json.dumps(results, indent=2) + "\n")
    for name in ("val", "test"):
        if name in results:
            log.info("%s:\n%s", name, format_report(results[name]))
    held_out = next((name for name in ("val", "test") if name in results), None)
    if held_out:  # a final fit on data without a test split has no held-out face left to plot
        plot_confusion_matrix(results[held_out], run_dir / "confusion_matrix.png", title=f"{run_dir.name} ({held_out})")
    plot_training_curves(state["history"], run_dir / "training_curves.png")
    state["done"] = True
    atomic_write_text(run_dir / "state.json", json.dumps(state, indent=1))
    log.info("run complete: %s", run_dir)
