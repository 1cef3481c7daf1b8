"""``feredge train``: arguments -> TrainConfig -> a run folder. TensorFlow is imported in ``run`` only."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from feredge.cli.options import add_labels_option, checked_type
from feredge.edge.errors import FeredgeError
from feredge.edge.ferplus import LABEL_MODES
from feredge.edge.photometric import PHOTOMETRICS
from feredge.train.augment import AUGMENT_PRESETS
from feredge.train.backbones import REGISTRY
from feredge.train.config import LIMITS, TEACHER_TARGETS, ConfigError, TrainConfig, check_field
from feredge.train.optimizers import OPTIMIZERS


def configure(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig(data="")
    parser.add_argument(
        "data",
        nargs="?",
        help="FER2013 CSV, root/{train,val,test}/<class>/, root/<class>/, "
        "or kaggle:OWNER/DATASET (not needed with --resume)",
    )
    parser.add_argument("--out", default=d.out, help="run folder (default: %(default)s)")
    parser.add_argument(
        "--resume", action="store_true", help="continue the interrupted run in --out with its saved config.json"
    )
    parser.add_argument(
        "--config",
        action=ConfigFileAction,
        metavar="FILE",
        help="take the training options (not --out) from a run's config.json or folder, or `feredge tune`'s "
        "best.json; options on the command line win",
    )
    add_train_options(parser)
    parser.add_argument(
        "--final-fit",
        action="store_true",
        help="train on the training and validation faces together for exactly --epochs (fix the count "
        "beforehand, from a validated run of the same recipe) and keep the last epoch; no validation score "
        "is left, so none is reported (a test split, when the data has one, still is)",
    )


def add_train_options(parser: argparse.ArgumentParser | Any) -> None:
    """Every option that becomes a TrainConfig field except DATA and --out: ``feredge tune`` takes the same."""
    d = TrainConfig(data="")
    add_labels_option(parser, "label set: fer2013, fer5, or a comma list (default: the data's classes)")
    parser.add_argument("--backbone", default=d.backbone, choices=sorted(REGISTRY))
    parser.add_argument(
        "--weights",
        default=d.weights,
        help="imagenet | none | default (fine-tune the shipped default; its input contract is carried over) | "
        "a shipped model's name | PATH to a .h5/.keras/.tflite file",
    )
    parser.add_argument("--alpha", type=limited("alpha"), default=d.alpha, help="width multiplier")
    parser.add_argument("--input-size", type=limited("input_size"), help="square input side (default: the backbone's)")
    parser.add_argument("--head", default=d.head, choices=["softmax", "svm"])
    parser.add_argument("--svm-c", type=limited("svm_c"), default=d.svm_c)
    parser.add_argument("--epochs", type=limited("epochs"), default=d.epochs, help="stage-two (or from-scratch) epochs")
    parser.add_argument(
        "--head-epochs",
        type=limited("head_epochs"),
        help="stage-one epochs on a frozen base (default: 5 with pretrained weights, else 0)",
    )
    parser.add_argument(
        "--unfreeze", type=limited("unfreeze"), default=d.unfreeze, help="top base layers to fine-tune; -1 = all"
    )
    parser.add_argument("--batch-size", type=limited("batch_size"), default=d.batch_size)
    parser.add_argument("--lr", type=limited("lr"), default=d.lr)
    parser.add_argument(
        "--optimizer",
        default=d.optimizer,
        choices=sorted(OPTIMIZERS),
        help="adam: AdamW (Adam without --weight-decay); sgd: Nesterov momentum 0.9, as in the published "
        "FER2013 VGG recipe (pair it with --schedule plateau and a larger --lr, e.g. 0.01; weight decay here "
        "is decoupled, so that recipe's L2 of 1e-4 is about --weight-decay 1e-3)",
    )
    parser.add_argument("--finetune-lr-factor", type=limited("finetune_lr_factor"), default=d.finetune_lr_factor)
    parser.add_argument("--weight-decay", type=limited("weight_decay"), default=d.weight_decay)
    parser.add_argument("--schedule", default=d.schedule, choices=["plateau", "cosine"])
    parser.add_argument("--warmup-epochs", type=limited("warmup_epochs"), default=d.warmup_epochs)
    parser.add_argument("--label-smoothing", type=limited("label_smoothing"), default=d.label_smoothing)
    parser.add_argument("--dropout", type=limited("dropout"), default=d.dropout)
    parser.add_argument(
        "--patience", type=limited("patience"), default=d.patience, help="early-stopping patience (epochs)"
    )
    parser.add_argument(
        "--augment",
        default=d.augment,
        choices=list(AUGMENT_PRESETS),
        help="augmentation preset; 'domain' adds blur, downscaling, noise and gamma for real photos",
    )
    parser.add_argument(
        "--teacher",
        dest="teachers",
        action="append",
        default=[],
        metavar="RUN_OR_MODEL",
        help="distil from this trained model (run folder or .keras; with --teacher-targets cached also .tflite "
        "or .onnx); repeat for several, whose flip-averaged scores are averaged",
    )
    parser.add_argument(
        "--teacher-targets",
        default=d.teacher_targets,
        choices=TEACHER_TARGETS,
        help="batch: the teachers score every augmented batch the student sees (they must share its input "
        "contract); cached: they score the clean training faces once, each under its own contract "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--distill-alpha",
        type=limited("distill_alpha"),
        default=d.distill_alpha,
        help="weight of the KL term to the teachers; 1 - alpha goes to the hard labels (default: %(default)s)",
    )
    parser.add_argument(
        "--distill-temperature",
        type=limited("distill_temperature"),
        default=d.distill_temperature,
        help="softmax temperature of the KL term (default: %(default)s)",
    )
    parser.add_argument(
        "--photometric",
        default=d.photometric,
        choices=PHOTOMETRICS,
        help="normalization of the gray face crop, recorded in the metadata and applied in serving too",
    )
    parser.add_argument(
        "--balance",
        default=d.balance,
        choices=["none", "sqrt", "balanced", "oversample"],
        help="class imbalance: loss weights (sqrt/balanced) or oversampling",
    )
    parser.add_argument(
        "--ferplus",
        dest="ferplus_votes",
        metavar="FER2013NEW_CSV",
        help="FER+ votes (fer2013new.csv) for a fer2013.csv DATA, row by row; FER+ folders need none",
    )
    parser.add_argument(
        "--label-mode",
        default=d.label_mode,
        choices=LABEL_MODES,
        help="FER+ votes as targets: majority, probability or crossentropy, the paper's modes (default: %(default)s)",
    )
    parser.add_argument(
        "--val-fraction",
        type=limited("val_fraction"),
        default=d.val_fraction,
        help="stratified validation share when the data has no val split",
    )
    parser.add_argument(
        "--crop-margin",
        type=limited("crop_margin"),
        default=d.crop_margin,
        help="face-crop margin the runtime should use (written to metadata)",
    )
    parser.add_argument(
        "--test-time-flip", action="store_true", help="score crop + mirror (select and serve with flip averaging)"
    )
    parser.add_argument("--seed", type=limited("seed"), default=d.seed)
    parser.add_argument("--mixed-precision", action="store_true", help="float16 compute (GPU)")
    parser.add_argument("--strategy", default=d.strategy, choices=["default", "mirrored", "multiworker"])
    parser.add_argument("--workers", type=limited("workers"), default=d.workers, help="image decoding threads")


def train_options() -> dict[str, argparse.Action]:
    """``feredge train``'s options by destination (TrainConfig field), as ``feredge tune``'s space is checked."""
    parser = argparse.ArgumentParser(add_help=False)
    add_train_options(parser)
    return {action.dest: action for action in parser._actions}


def limited(name: str) -> Callable[[str], Any]:
    """The argparse type of TrainConfig field ``name``: its ``LIMITS``, as a usage error on the command line."""
    return checked_type(*LIMITS[name])


def read_config_file(path: str | Path) -> dict[str, Any]:
    """TrainConfig fields from a run's config.json (or its folder) or from ``feredge tune``'s best.json."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:  # ValueError: bad JSON or not UTF-8
        raise FeredgeError(f"cannot read training options from {path}: {exc}") from exc
    data = data.get("config", data) if isinstance(data, dict) else None  # best.json keeps them under "config"
    if not isinstance(data, dict):
        raise FeredgeError(f"{path}: not a config.json or best.json")
    options = TrainConfig.known(data)
    for name in LIMITS.keys() & options.keys():
        try:
            check_field(name, options[name])
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    return options


class ConfigFileAction(argparse.Action):
    """``--config FILE`` fills the options still at their defaults, so options given before or after it win.

    Its values meet the same ``choices`` and ranges as the command line's (a hand-edited ``"schedule": "cosin"``
    would otherwise train with the default schedule without a word, and ``"lr": NaN`` with a NaN loss).

    DATA is filled in ``config_from_args``: argparse assigns an absent optional positional after the options.
    """

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        try:
            loaded = read_config_file(values)
        except FeredgeError as exc:
            raise argparse.ArgumentError(self, str(exc)) from exc
        choices = {action.dest: action.choices for action in parser._actions if action.choices is not None}
        for name, value in loaded.items():
            if name in choices and value not in choices[name]:
                raise argparse.ArgumentError(
                    self, f"{values}: {name} {value!r} is not one of {', '.join(map(str, choices[name]))}"
                )
            if name not in ("data", "out") and getattr(namespace, name, None) == parser.get_default(name):
                setattr(namespace, name, value)
        setattr(namespace, self.dest, values)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values = vars(args)
    if not values.get("data") and getattr(args, "config", None):
        values = {**values, "data": read_config_file(args.config).get("data")}
    return TrainConfig.from_dict(values)


def run(args: argparse.Namespace) -> int:
    from feredge.train.trainer import train

    config = config_from_args(args)
    if not config.data and not args.resume:
        raise FeredgeError("give the training data (a path or kaggle:OWNER/DATASET), or --resume a run")
    train(config, resume=args.resume)
    return 0
