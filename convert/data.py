"""Faces for calibration, QAT and the accuracy gate, loaded by ``edge/dataset.py`` so they pass the edge contract.

The default is the run's own data, reloaded from config.json with its labels, validation fraction
and seed: the stratified split is deterministic, so the gate sees exactly the run's validation faces
and calibration draws from the faces the model was trained on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from feredge.convert.errors import CalibrationError, CheckDataError
from feredge.edge.dataset import KAGGLE_PREFIX, Dataset, Split, load_dataset, stratified_split
from feredge.edge.errors import DataError
from feredge.edge.metadata import ModelMetadata
from feredge.edge.preprocess import PreprocessSpec, normalize
from feredge.train.keras_io import SourceModel


@dataclass
class ConversionData:
    check: Split
    check_source: str  # where the gate's faces come from, for the report
    train: Split | None  # calibration and QAT faces
    train_missing: str = ""  # why ``train`` is None, for the formats that need it


def resolve_data(
    source: SourceModel,
    check_data: str | Path | None = None,
    calibration_data: str | Path | None = None,
    need_train: bool = False,
) -> ConversionData:
    """The gate's check split and, when ``need_train``, the training faces for calibration and QAT."""
    config = source.config
    meta = source.metadata
    workers = config.workers if config else 4
    run_data: Dataset | None = None
    if check_data is not None:
        check, check_source = _load_check(check_data, meta, workers)
    else:
        run_data = _load_run_data(source, "the accuracy gate", "--check-data DIR")
        check, check_source = run_data.splits["val"], f"{run_data.source} (the run's validation split)"
    if calibration_data is not None:
        return ConversionData(check, check_source, _load_calibration(calibration_data, meta, workers))
    if not need_train:
        return ConversionData(check, check_source, None, "no format asked for training data")
    try:
        run_data = run_data or _load_run_data(source, "calibration", "--calibration-data DIR")
    except CheckDataError as exc:  # only the formats that need it fail, each with this message
        return ConversionData(check, check_source, None, str(exc))
    return ConversionData(check, check_source, run_data.splits["train"])


def _load_run_data(source: SourceModel, purpose: str, flag: str) -> Dataset:
    config = source.config
    if config is None:
        raise CheckDataError(
            f"{source.path}: not in a run folder (no config.json), so there is no data for {purpose}; pass {flag}"
        )
    if not config.data.startswith(KAGGLE_PREFIX) and not Path(config.data).exists():
        raise CheckDataError(
            f"the run's data {config.data} (from config.json) is not available here; pass {flag} for {purpose}"
        )
    try:
        return load_dataset(
            config.data,
            source.metadata.labels,
            source.metadata.input_size,
            config.val_fraction,
            config.seed,
            config.workers,
            photometric=source.metadata.photometric,
        )
    except DataError as exc:
        raise CheckDataError(f"the run's data cannot be reloaded for {purpose}: {exc}; pass {flag}") from exc


def _load_check(path: str | Path, meta: ModelMetadata, workers: int) -> tuple[Split, str]:
    """The val split if the data has one, else test, else all of it."""
    try:
        dataset = _load_for(path, meta, workers)
    except DataError as exc:
        labels = ", ".join(meta.labels)
        raise CheckDataError(f"check data {path} does not fit the model (labels {labels}): {exc}") from exc
    name = next(n for n in ("val", "test", "train") if n in dataset.splits)
    return dataset.splits[name], f"{path} ({name} split)"


def _load_for(path: str | Path, meta: ModelMetadata, workers: int) -> Dataset:
    """``path`` loaded whole, as the model's contract prepares faces."""
    return load_dataset(
        path, meta.labels, meta.input_size, workers=workers, make_val=False, photometric=meta.photometric
    )


def _load_calibration(path: str | Path, meta: ModelMetadata, workers: int) -> Split:
    try:
        return _load_for(path, meta, workers).splits["train"]
    except DataError as exc:
        raise CalibrationError(
            f"calibration data {path}: {exc}. Expected training face images in class folders "
            f"named after the model's labels ({', '.join(meta.labels)})"
        ) from exc


def calibration_sample(train: Split, size: int, seed: int) -> Split:
    """About ``size`` faces, stratified by class so that rare classes set activation ranges too."""
    if size < 1:
        raise CalibrationError(f"calibration size must be at least 1, got {size}")
    if size >= len(train):
        return train
    return stratified_split(train, size / len(train), seed)[1]


def representative_dataset(faces: Split, spec: PreprocessSpec) -> Callable[[], Iterator[list[np.ndarray]]]:
    """The TFLite converter's calibration generator: one contract-normalized face per step."""

    def generate() -> Iterator[list[np.ndarray]]:
        for face in faces.images:
            yield [np.asarray(normalize(face[None].astype(np.float32), spec), np.float32)]

    return generate
