"""feredge convert: the format table, calibration sampling, and a clear typed error for every bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from feredge.cli import main
from feredge.convert.data import calibration_sample, resolve_data
from feredge.convert.errors import CalibrationError, CheckDataError, FormatError
from feredge.convert.formats import FORMATS, check_options, parse_formats
from feredge.edge.artifacts import ARTIFACTS, display_names
from feredge.edge.dataset import Split
from feredge.edge.errors import LabelError, MetadataError, ModelLoadError
from feredge.edge.metadata import ModelMetadata

LABELS = ("happy", "sad", "surprise")


def test_format_table_names_every_artefact():
    assert list(FORMATS) == list(ARTIFACTS) == ["int8", "fp16", "dynamic", "fp32", "onnx"]
    assert all(f.artifact is ARTIFACTS[name] for name, f in FORMATS.items())
    assert [f.name for f in FORMATS.values() if f.needs_calibration] == ["int8"]
    int8, onnx = ARTIFACTS["int8"], ARTIFACTS["onnx"]
    assert int8.artefact_name("model") == "model_int8.tflite"
    assert int8.artefact_name("model", "_qat") == "model_int8_qat.tflite"
    assert int8.rejected_name("model") == "model_int8.REJECTED.tflite"
    assert int8.report_stem("model", "_qat") == "model_int8_qat.report"
    assert onnx.artefact_name("model") == "model.onnx" and onnx.rejected_name("m") == "m.REJECTED.onnx"
    assert [a.metadata_format for a in ARTIFACTS.values()] == [
        "tflite-int8",
        "tflite-fp16",
        "tflite-dynamic",
        "tflite-fp32",
        "onnx",
    ]
    assert len({a.suffix for a in ARTIFACTS.values()}) == len(ARTIFACTS)
    assert display_names(["a/m.tflite", "b/m.tflite", "c/n.onnx"]) == ["a/m", "b/m", "n"]


def test_formats_and_options_are_checked():
    assert [f.name for f in parse_formats(" int8,fp16, int8 ,onnx")] == ["int8", "fp16", "onnx"]
    with pytest.raises(FormatError, match=r"unknown format.*int4"):
        parse_formats("int8,int4")
    with pytest.raises(FormatError, match="no format"):
        parse_formats(" , ")
    check_options(parse_formats("int8,onnx"), ["qat", "edgetpu", "opset"])
    with pytest.raises(FormatError, match="--qat applies to int8 only"):
        check_options(parse_formats("fp16,onnx"), ["qat"])
    with pytest.raises(FormatError, match="--opset applies to onnx only"):
        check_options(parse_formats("int8"), ["opset"])


def test_calibration_sample_is_stratified_by_class():
    targets = np.repeat([0, 1, 2], [200, 20, 5])
    train = Split(np.arange(len(targets), dtype=np.uint8)[:, None, None], targets)
    sample = calibration_sample(train, 30, seed=0)
    counts = np.bincount(sample.targets, minlength=3)
    assert abs(len(sample) - 30) <= 2 and counts[1] >= 2 and counts[2] >= 1 and counts[0] > 5 * counts[1]
    assert calibration_sample(train, 1000, seed=0) is train
    with pytest.raises(CalibrationError, match="at least 1"):
        calibration_sample(train, 0, seed=0)


def write_images(folder: Path, count: int = 3) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(folder.name))
    for i in range(count):
        cv2.imwrite(str(folder / f"{i}.png"), rng.integers(0, 255, (48, 48), dtype=np.uint8))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An untrained tiny model as a bare .keras, and in a run folder whose training data is gone."""
    from feredge.train.backbones import build_model
    from feredge.train.config import TrainConfig

    root = tmp_path_factory.mktemp("models")
    bare = root / "bare" / "model.keras"
    bare.parent.mkdir()
    build_model("tiny", len(LABELS), 48).save(str(bare))
    run = root / "run"
    run.mkdir()
    shutil.copy(bare, run / "model.keras")
    ModelMetadata(labels=LABELS).save(run / "metadata.json")
    TrainConfig(data=str(root / "gone")).save(run / "config.json")
    return {"bare": bare, "run": run}


def test_a_path_that_is_not_a_model_or_run_folder(tmp_path):
    from feredge.train.keras_io import load_source

    with pytest.raises(ModelLoadError, match="not a run folder"):
        load_source(tmp_path)
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(ModelLoadError, match=r"float Keras model .* not a \.txt file"):
        load_source(notes)
    with pytest.raises(ModelLoadError, match="model not found"):
        load_source(tmp_path / "missing.keras")
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a zip")
    with pytest.raises(ModelLoadError, match="cannot load the Keras model"):
        load_source(broken)


def test_a_model_without_metadata_needs_labels(models):
    from feredge.train.keras_io import load_source

    with pytest.raises(MetadataError, match=r"no metadata.json.*--labels"):
        load_source(models["bare"])
    source = load_source(models["bare"], labels=",".join(LABELS))
    assert source.metadata.labels == LABELS
    assert (source.metadata.input_size, source.metadata.channels, source.metadata.normalization) == (48, 1, "unit")
    assert source.config is None and source.stem == "model"
    assert load_source(models["bare"], LABELS, "symmetric").metadata.normalization == "symmetric"
    with pytest.raises(LabelError, match=r"7 labels .* but the model has 3 outputs"):
        load_source(models["bare"], labels="fer2013")


def test_a_damaged_metadata_json_is_named(models, tmp_path):
    from feredge.train.keras_io import load_source

    run = tmp_path / "run"
    shutil.copytree(models["run"], run)
    (run / "metadata.json").write_text("{bad")
    with pytest.raises(MetadataError, match=r"run/metadata\.json: metadata is not valid JSON"):
        load_source(run)


def test_missing_run_data_asks_for_check_data(models):
    from feredge.train.keras_io import load_source

    run = load_source(models["run"])
    with pytest.raises(CheckDataError, match=r"run's data .*gone.* not available here; pass --check-data"):
        resolve_data(run)
    with pytest.raises(CheckDataError, match=r"not in a run folder.*pass --check-data"):
        resolve_data(load_source(models["bare"], LABELS))


def test_check_data_must_have_the_models_labels(models, tmp_path):
    from feredge.train.keras_io import load_source

    for label in ("happy", "sad", "angry"):
        write_images(tmp_path / label)
    source = load_source(models["run"])
    with pytest.raises(CheckDataError, match=r"does not fit the model.*surprise"):
        resolve_data(source, check_data=tmp_path)
    write_images(tmp_path / "surprise")
    data = resolve_data(source, check_data=tmp_path, need_train=True)
    assert len(data.check) == 9 and data.train is None and "--calibration-data" in data.train_missing


@pytest.mark.parametrize(
    "layout, message",
    [
        ({"readme.txt": None}, "no class folders"),
        ({"happy/a.txt": None, "sad/b.txt": None, "surprise/c.txt": None}, "no readable images"),
        ({"angry/": 2, "fear/": 2}, "requested label.*happy"),
    ],
)
def test_calibration_data_of_the_wrong_kind(models, tmp_path, layout, message):
    from feredge.train.keras_io import load_source

    for check_class in LABELS:
        write_images(tmp_path / "check" / check_class)
    calibration = tmp_path / "calibration"
    for name, count in layout.items():
        if count is None:
            (calibration / name).parent.mkdir(parents=True, exist_ok=True)
            (calibration / name).write_text("not an image")
        else:
            write_images(calibration / name, count)
    with pytest.raises(CalibrationError, match=f"calibration data .*{message}.*class folders named after"):
        resolve_data(load_source(models["run"]), tmp_path / "check", calibration, need_train=True)


def test_cli_turns_bad_input_into_exit_2_with_the_reason(models, tmp_path, capsys):
    assert main(["convert", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert main(["convert", str(models["run"]), "--formats", "fp16", "--qat"]) == 2
    assert "--qat applies to int8 only" in capsys.readouterr().err
    assert main(["convert", str(models["bare"])]) == 2
    assert "pass --labels" in capsys.readouterr().err
