"""Keras callbacks of a training run: validation macro-F1, and the resumable run state."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import time
from pathlib import Path
from typing import Any

import tf_keras as keras

from feredge.edge.atomic import atomic_path, atomic_write_text
from feredge.edge.dataset import Split, score_batches
from feredge.edge.metrics import classification_metrics
from feredge.edge.preprocess import PreprocessSpec

log = logging.getLogger(__name__)


class MacroF1(keras.callbacks.Callback):
    """Adds ``val_macro_f1`` and ``val_accuracy`` to the epoch logs, scored as the runtime would.

    It must come first in the callback list: checkpointing, early stopping and the LR schedule
    read the value from the shared logs.
    """

    def __init__(self, split: Split, spec: PreprocessSpec, labels, flip: bool) -> None:
        super().__init__()
        self.split, self.spec, self.labels, self.flip = split, spec, labels, flip

    def on_epoch_end(self, epoch, logs=None):
        scores = score_batches(self.model.predict_on_batch, self.split, self.spec, self.flip)
        metrics = classification_metrics(self.split.targets, scores.argmax(1), self.labels)
        logs["val_macro_f1"] = metrics["macro_f1"]
        logs["val_accuracy"] = metrics["accuracy"]


class RunState(keras.callbacks.Callback):
    """After each epoch: checkpoint, best weights (by val macro-F1), history.csv and state.json.

    ``keep_last`` (a final fit, with no validation split) makes every epoch the kept one.
    """

    def __init__(
        self, run_dir: Path, state: dict, manager, epochs: int, best_weights: str, keep_last: bool = False
    ) -> None:
        super().__init__()
        self.run_dir, self.state, self.manager, self.epochs = run_dir, state, manager, epochs
        self.keep_last = keep_last
        self.best_weights = run_dir / best_weights
        self.started = time.time()

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.time()

    def on_epoch_end(self, epoch, logs=None):
        state = self.state
        row = {
            "stage": state["stage"],
            "epoch": epoch + 1,
            "lr": float(self.model.optimizer.learning_rate.numpy()),
            "seconds": round(time.time() - self.started, 1),
            **{k: float(v) for k, v in (logs or {}).items() if k not in ("lr", "learning_rate")},
        }
        state["history"].append(row)
        f1 = row.get("val_macro_f1", -1.0)
        if self.keep_last or f1 > state["best_f1"]:
            state.update(best_f1=f1, best_epoch=f"{state['stage']}:{epoch + 1}")
            with atomic_path(self.best_weights) as tmp:  # the temporary name keeps the .h5 suffix
                self.model.save_weights(str(tmp))
        self.manager.save(checkpoint_number=epoch + 1)
        state["epoch"] = epoch + 1
        write_history(self.run_dir / "history.csv", state["history"])
        atomic_write_text(self.run_dir / "state.json", json.dumps(state, indent=1))
        if self.keep_last:  # a final fit: no validation score to show
            log.info(
                "epoch %d/%d [%s] loss %.4f lr %.2g %.0fs (final fit: the last epoch is kept)",
                epoch + 1,
                self.epochs,
                state["stage"],
                row.get("loss", float("nan")),
                row["lr"],
                row["seconds"],
            )
            return
        log.info(
            "epoch %d/%d [%s] loss %.4f val_acc %.4f val_macro_f1 %.4f (best %.4f @ %s) lr %.2g %.0fs",
            epoch + 1,
            self.epochs,
            state["stage"],
            row.get("loss", float("nan")),
            row.get("val_accuracy", float("nan")),
            f1,
            state["best_f1"],
            state["best_epoch"],
            row["lr"],
            row["seconds"],
        )

    def on_train_end(self, logs=None):
        """The weights' digest at the end of each stage: every worker of a multi-worker run logs the same one."""
        log.info("stage %s ends: weights sha256 %s", self.state["stage"], weights_digest(self.model))


def weights_digest(model) -> str:
    """SHA-256 of the model's weights in layer order: equal digests, equal weights, bit for bit."""
    digest = hashlib.sha256()
    for array in model.get_weights():
        digest.update(array.tobytes())
    return digest.hexdigest()


def write_history(path: Path, history: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for row in history:
        keys.extend(k for k in row if k not in keys)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(path, buffer.getvalue())
