"""The resolved training configuration, saved as ``config.json`` beside every run's artefacts."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from feredge.edge.atomic import atomic_write_text
from feredge.edge.errors import FeredgeError

# How distillation gets the teachers' scores: batch, on every augmented batch (teachers share the
# student's input contract); cached, once on the clean training faces, each teacher under its own.
TEACHER_TARGETS = ("batch", "cached")


@dataclass
class TrainConfig:
    data: str
    out: str = "runs/exp"
    labels: str | None = None
    backbone: str = "compact"
    weights: str = "none"
    alpha: float = 1.0
    input_size: int | None = None  # None: the backbone's default size
    head: str = "softmax"  # softmax | svm
    svm_c: float = 0.1
    epochs: int = 30
    head_epochs: int | None = None  # None: 5 with pretrained weights, else 0
    unfreeze: int = -1  # top layers trainable in stage two; -1 = all
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"  # adam (AdamW when weight_decay > 0) | sgd (Nesterov momentum 0.9)
    finetune_lr_factor: float = 0.1
    weight_decay: float = 1e-4
    schedule: str = "plateau"  # plateau | cosine
    warmup_epochs: int = 0
    label_smoothing: float = 0.1
    dropout: float = 0.3
    patience: int = 8
    augment: str = "default"
    photometric: str = "none"  # the contract's normalization of the gray crop: none | clahe
    teachers: list[str] = field(default_factory=list)  # run folders / Keras models to distil from
    distill_alpha: float = 0.7  # weight of the KL term against the teachers
    distill_temperature: float = 3.0
    teacher_targets: str = "batch"  # one of TEACHER_TARGETS
    balance: str = "sqrt"  # none | sqrt | balanced | oversample
    val_fraction: float = 0.1
    crop_margin: float = 0.1
    test_time_flip: bool = False
    final_fit: bool = False  # train on train + val for exactly `epochs`, keep the last
    seed: int = 42
    mixed_precision: bool = False
    strategy: str = "default"  # default | mirrored | multiworker
    workers: int = 4

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise FeredgeError(f"cannot read run config {path}: {exc}") from exc
        return cls.from_dict(data)

    @classmethod
    def known(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        """The items of ``data`` that are fields. Other keys are ignored, not refused: config.json and
        best.json of other versions, and the CLI's own options, hold keys that are not fields here."""
        names = {f.name for f in fields(cls)}
        return {k: v for k, v in data.items() if k in names}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """A config from the field items of ``data`` (``known``); the others are ignored."""
        return cls(**cls.known(data))
