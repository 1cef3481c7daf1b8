"""The resolved training configuration, saved as ``config.json`` beside every run's artefacts."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

from feredge.edge.atomic import atomic_write_text
from feredge.edge.errors import OptionError
from feredge.edge.ferplus import LABEL_MODES
from feredge.edge.metadata import INPUT_SIZE_RANGE, MARGIN_RANGE, is_integer, is_real
from feredge.train.backbones import REGISTRY

# How distillation gets the teachers' scores: batch, on every augmented batch (teachers share the
# student's input contract); cached, once on the clean training faces, each teacher under its own.
TEACHER_TARGETS = ("batch", "cached")


class ConfigError(OptionError):
    """A training configuration is not an object of options, or holds a value out of its field's range."""


class Limit(NamedTuple):
    """The values a numeric field takes; the arguments of ``checked_type``, so the CLI checks the same range."""

    kind: type[int] | type[float]
    what: str
    accept: Callable[[Any], bool]


MIN_INPUT_SIZE = min(backbone.min_size for backbone in REGISTRY.values())  # each backbone checks its own too
_MARGIN_LOW, _MARGIN_HIGH = MARGIN_RANGE
MAX_INPUT_SIZE = INPUT_SIZE_RANGE[1]  # the metadata's limit: a larger run could not be served

# One table for TrainConfig and the argparse types of `feredge train` and `feredge tune`: they cannot drift apart.
LIMITS: dict[str, Limit] = {
    "alpha": Limit(float, "a number > 0", lambda v: v > 0),
    "input_size": Limit(
        int,
        f"a whole number from {MIN_INPUT_SIZE} to {MAX_INPUT_SIZE}",
        lambda v: MIN_INPUT_SIZE <= v <= MAX_INPUT_SIZE,
    ),
    "svm_c": Limit(float, "a number > 0", lambda v: v > 0),
    "epochs": Limit(int, "a whole number >= 1", lambda v: v >= 1),
    "head_epochs": Limit(int, "a whole number >= 0", lambda v: v >= 0),
    "unfreeze": Limit(int, "-1 (all layers) or a whole number >= 0", lambda v: v >= -1),
    "batch_size": Limit(int, "a whole number >= 1", lambda v: v >= 1),
    "lr": Limit(float, "a number > 0", lambda v: v > 0),
    "finetune_lr_factor": Limit(float, "a number > 0", lambda v: v > 0),
    "weight_decay": Limit(float, "a number >= 0", lambda v: v >= 0),
    "warmup_epochs": Limit(int, "a whole number >= 0", lambda v: v >= 0),
    "label_smoothing": Limit(float, "a number in [0, 1)", lambda v: 0 <= v < 1),
    "dropout": Limit(float, "a number in [0, 1)", lambda v: 0 <= v < 1),
    "patience": Limit(int, "a whole number >= 1", lambda v: v >= 1),
    "distill_alpha": Limit(float, "a number in [0, 1]", lambda v: 0 <= v <= 1),
    "distill_temperature": Limit(float, "a number > 0", lambda v: v > 0),
    # the data set refuses 0 and 1 when it has to split off validation; a val/ split ignores the fraction
    "val_fraction": Limit(float, "a number in (0, 1)", lambda v: 0 < v < 1),
    "crop_margin": Limit(
        float, f"a number in [{_MARGIN_LOW}, {_MARGIN_HIGH}]", lambda v: _MARGIN_LOW <= v <= _MARGIN_HIGH
    ),
    "seed": Limit(int, "a whole number from 0 to 2**32 - 1", lambda v: 0 <= v < 2**32),  # NumPy's seed range
    "workers": Limit(int, "a whole number >= 1", lambda v: v >= 1),
}


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
    ferplus_votes: str | None = None  # fer2013new.csv beside a fer2013.csv `data` (FER+ folders need none)
    label_mode: str = "crossentropy"  # FER+ votes as targets: majority | probability | crossentropy (measured best)
    crop_margin: float = 0.1
    test_time_flip: bool = False
    final_fit: bool = False  # train on train + val for exactly `epochs`, keep the last
    seed: int = 42
    mixed_precision: bool = False
    strategy: str = "default"  # default | mirrored | multiworker
    workers: int = 4

    def __post_init__(self) -> None:
        """Refuse out-of-range numbers at once, before a run folder is written: configs also come from
        config.json, best.json and Python callers (``feredge tune``'s ``replace``), not only the CLI."""
        for name in LIMITS:
            check_field(name, getattr(self, name))
        if self.label_mode not in LABEL_MODES:
            raise ConfigError(
                f"label_mode (--label-mode) must be one of {', '.join(LABEL_MODES)}, got {self.label_mode!r}"
            )
        if self.input_size is not None and self.backbone in REGISTRY:  # an unknown name is refused by train
            least = REGISTRY[self.backbone].min_size
            if self.input_size < least:
                raise ConfigError(
                    f"input_size (--input-size) must be >= {least} for backbone {self.backbone}, got {self.input_size}"
                )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:  # ValueError: bad JSON or not UTF-8
            raise ConfigError(f"cannot read run config {path}: {exc}") from exc
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"run config {path}: {exc}") from exc

    @classmethod
    def known(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        """The items of ``data`` that are fields. Other keys are ignored, not refused: config.json and
        best.json of other versions, and the CLI's own options, hold keys that are not fields here."""
        names = {f.name for f in fields(cls)}
        return {k: v for k, v in data.items() if k in names}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """A config from the field items of ``data`` (``known``); the others are ignored."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"not a training config: expected an object of options, got {type(data).__name__}")
        known = cls.known(data)
        if "data" not in known:
            raise ConfigError("not a training config: it names no training data ('data')")
        return cls(**known)


def check_field(name: str, value: Any) -> None:
    """Raise ConfigError unless ``value`` is a finite number of field ``name``'s kind within its ``LIMITS``,
    or None where that is the field's default (the backbone's input size, the default head epochs)."""
    if value is None and next(f.default for f in fields(TrainConfig) if f.name == name) is None:
        return
    kind, what, accept = LIMITS[name]
    number = is_integer(value) if kind is int else is_real(value)
    if not (number and (is_integer(value) or math.isfinite(value)) and accept(value)):
        raise ConfigError(f"{name} (--{name.replace('_', '-')}) must be {what}, got {value!r}")
