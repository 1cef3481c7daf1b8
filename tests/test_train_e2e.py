"""``feredge train`` and ``feredge evaluate`` end to end on tiny generated data sets."""

from __future__ import annotations

import csv
import json

import pytest
from synthetic import write_class_folders, write_fer_csv, write_split_folders

from feredge.cli import main
from feredge.edge.errors import FeredgeError
from feredge.edge.metadata import ModelMetadata

pytestmark = pytest.mark.slow

RUN_FILES = {
    "model.keras",
    "metadata.json",
    "config.json",
    "history.csv",
    "metrics.json",
    "confusion_matrix.png",
    "training_curves.png",
}
FAST = ["--batch-size", "16", "--workers", "1", "--augment", "light"]


def assert_complete_run(run, labels):
    assert {p.name for p in run.iterdir()} >= RUN_FILES
    meta = ModelMetadata.load(run / "metadata.json")
    assert meta.labels == tuple(labels)
    metrics = json.loads((run / "metrics.json").read_text())
    val = metrics["val"]
    assert set(val["per_class"]) == set(labels)
    assert len(val["confusion_matrix"]) == len(labels)
    assert 0.0 <= val["macro_f1"] <= 1.0 and 0.0 <= val["accuracy"] <= 1.0
    return meta, metrics


def test_cnn_on_fer_csv_then_evaluate_reproduces_the_metrics(tmp_path, capsys):
    data = write_fer_csv(tmp_path / "fer.csv", per_class=4)
    run = tmp_path / "run"
    assert main(["train", str(data), "--backbone", "cnn", "--epochs", "1", "--out", str(run), *FAST]) == 0
    meta, metrics = assert_complete_run(run, ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"))
    assert (meta.input_size, meta.channels, meta.normalization) == (48, 1, "unit")
    assert "test" in metrics  # the CSV's PrivateTest rows
    with open(run / "history.csv") as fh:
        assert [row["stage"] for row in csv.DictReader(fh)] == ["finetune"]
    config = json.loads((run / "config.json").read_text())
    assert config["backbone"] == "cnn" and config["data"] == str(data)
    capsys.readouterr()  # Keras prints its progress on stdout

    assert main(["evaluate", str(run), str(data), "--split", "val", "--json", "--out", str(tmp_path / "ev")]) == 0
    reported = json.loads(capsys.readouterr().out)
    assert reported["accuracy"] == pytest.approx(metrics["val"]["accuracy"])
    assert reported["macro_f1"] == pytest.approx(metrics["val"]["macro_f1"])
    assert reported["confusion_matrix"] == metrics["val"]["confusion_matrix"]
    assert (tmp_path / "ev" / "confusion_matrix.png").stat().st_size > 0


def test_mobilenet_v2_without_weights_trains_in_two_stages_on_split_folders(tmp_path):
    data = write_split_folders(tmp_path / "data", ["anger", "happiness", "neutral"], per_class=4)
    run = tmp_path / "run"
    argv = [
        "train",
        str(data),
        "--backbone",
        "mobilenet_v2",
        "--weights",
        "none",
        "--alpha",
        "0.35",
        "--input-size",
        "48",
        "--head-epochs",
        "1",
        "--epochs",
        "1",
        "--unfreeze",
        "20",
        "--out",
        str(run),
    ]
    assert main(argv + FAST) == 0
    meta, _ = assert_complete_run(run, ("angry", "happy", "neutral"))
    assert (meta.channels, meta.normalization) == (3, "symmetric")
    with open(run / "history.csv") as fh:
        assert [row["stage"] for row in csv.DictReader(fh)] == ["head", "finetune"]


def test_svm_head_on_flat_class_folders_is_folded_into_one_keras_model(tmp_path):
    import numpy as np
    import tf_keras as keras

    data = write_class_folders(tmp_path / "data", ["angry", "happy", "pain"], per_class=8)
    run = tmp_path / "run"
    argv = [
        "train",
        str(data),
        "--backbone",
        "tiny",
        "--head",
        "svm",
        "--epochs",
        "1",
        "--val-fraction",
        "0.25",
        "--out",
        str(run),
    ]
    assert main(argv + FAST) == 0
    assert_complete_run(run, ("angry", "happy", "pain"))
    model = keras.models.load_model(run / "model.keras", compile=False)
    kernel, _bias = model.get_layer("head").get_weights()
    assert kernel.shape[1] == 3 and np.abs(kernel).sum() > 0


def test_resume_continues_an_interrupted_run(tmp_path, monkeypatch):
    from feredge.train import callbacks
    from feredge.train.config import TrainConfig
    from feredge.train.trainer import train

    data = write_class_folders(tmp_path / "data", ["happy", "sad"], per_class=6)
    config = TrainConfig(
        data=str(data), out=str(tmp_path / "run"), backbone="tiny", epochs=3, batch_size=8, workers=1, val_fraction=0.34
    )
    original = callbacks.RunState.on_epoch_end

    def crash_after_first_epoch(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == 0:
            raise KeyboardInterrupt

    monkeypatch.setattr(callbacks.RunState, "on_epoch_end", crash_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(config)
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["epoch"] == 1 and not state["done"]
    assert not (tmp_path / "run" / "model.keras").exists()  # never a half-finished model
    with pytest.raises(FeredgeError, match="--resume"):
        train(config)

    monkeypatch.setattr(callbacks.RunState, "on_epoch_end", original)
    train(config, resume=True)
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["done"] and [row["epoch"] for row in state["history"]] == [1, 2, 3]
    assert (tmp_path / "run" / "model.keras").exists()


def test_sgd_optimizer_is_nesterov_and_trains_a_run(tmp_path, monkeypatch):
    import tf_keras

    from feredge.train.config import TrainConfig
    from feredge.train.optimizers import OPTIMIZERS
    from feredge.train.trainer import train

    sgd = OPTIMIZERS["sgd"](tf_keras, 0.01, 1e-4)
    assert isinstance(sgd, tf_keras.optimizers.SGD) and sgd.nesterov and sgd.momentum == pytest.approx(0.9)
    real_sgd, built = OPTIMIZERS["sgd"], []

    def spy(*args):
        built.append(real_sgd(*args))
        return built[-1]

    monkeypatch.setitem(OPTIMIZERS, "sgd", spy)
    data = write_class_folders(tmp_path / "data", ["happy", "sad"], per_class=6)
    config = TrainConfig(
        data=str(data),
        out=str(tmp_path / "run"),
        backbone="tiny",
        epochs=1,
        batch_size=8,
        workers=1,
        val_fraction=0.34,
        optimizer="sgd",
        lr=0.01,
    )
    run = train(config)
    assert [type(o).__name__ for o in built] == ["SGD"]  # the trainer built the optimizer the config names
    assert json.loads((run / "config.json").read_text())["optimizer"] == "sgd"
    assert (run / "model.keras").exists()
    with pytest.raises(FeredgeError, match="unknown optimizer 'rmsprop'"):
        train(TrainConfig(data=str(data), out=str(tmp_path / "other"), optimizer="rmsprop"))
    assert not (tmp_path / "other").exists()


def test_train_cli_reports_bad_data_without_traceback(tmp_path, capsys):
    write_class_folders(tmp_path, ["happy"], per_class=2)
    assert main(["train", str(tmp_path), "--labels", "happy,pain", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "pain" in err and "Traceback" not in err


def test_imagenet_weights_on_a_scratch_backbone_is_refused():
    from feredge.train.backbones import build_model

    with pytest.raises(FeredgeError, match="no ImageNet weights"):
        build_model("cnn", 7, 48, weights="imagenet")
    with pytest.raises(FeredgeError, match="not found"):
        build_model("mobilenet_v2", 7, 96, weights="/nonexistent/weights.h5")


def test_local_weights_file_is_loaded_by_layer_name(tmp_path):
    import numpy as np

    from feredge.train.backbones import build_model

    source = build_model("mobilenet_v2", 5, 48, weights="none", alpha=0.35)
    path = tmp_path / "backbone_notop.h5"
    source.save_weights(str(path))
    target = build_model("mobilenet_v2", 3, 48, weights=str(path), alpha=0.35)  # other head size
    loaded, saved = (m.get_layer("Conv1").get_weights()[0] for m in (target, source))
    np.testing.assert_array_equal(loaded, saved)


def test_failed_imagenet_download_says_what_to_do(monkeypatch):
    """The real ``weights="imagenet"`` path, with Keras' downloader failing as it does offline."""
    from tf_keras.src.utils import data_utils

    from feredge.train.backbones import build_model

    def offline(*_args, **_kwargs):
        raise Exception("URL fetch failure: no network")

    monkeypatch.setattr(data_utils, "get_file", offline)
    with pytest.raises(FeredgeError, match=r"--weights PATH.*--weights none"):
        build_model("mobilenet_v2", 7, 96, weights="imagenet", alpha=0.35)


def test_final_fit_trains_on_train_and_val_for_the_fixed_epochs_and_reports_only_test(tmp_path, capsys):
    data = write_fer_csv(tmp_path / "fer.csv", per_class=4)  # 28 Training, 14 PublicTest, 14 PrivateTest faces
    run = tmp_path / "run"
    argv = ["train", str(data), "--backbone", "tiny", "--epochs", "2", "--out", str(run), *FAST]
    assert main([*argv, "--final-fit"]) == 2  # the default plateau schedule needs a validation score
    assert "--schedule cosine" in capsys.readouterr().err and not (run / "model.keras").exists()

    assert main([*argv, "--final-fit", "--schedule", "cosine", "--patience", "1"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert "val" not in metrics and "test" in metrics  # PublicTest was trained on; PrivateTest is still held out
    state = json.loads((run / "state.json").read_text())
    assert state["best_epoch"] == "finetune:2"  # the last epoch, whatever its loss: nothing chose it
    assert all("val_macro_f1" not in row for row in state["history"])
    meta = ModelMetadata.load(run / "metadata.json")
    assert "train=42" in meta.training_data and "final fit, 2 epochs" in meta.training_data
    assert (run / "confusion_matrix.png").stat().st_size > 0  # of the test split
    capsys.readouterr()

    convert = ["convert", str(run), "--format", "fp32", "--out", str(tmp_path / "export")]
    assert main(convert) == 2  # its default check set is the validation split it learned
    assert "--temperature" in capsys.readouterr().err and not (tmp_path / "export" / "model_fp32.tflite").exists()
    assert main([*convert, "--temperature", "1.2"]) == 0
    from feredge.edge.model import load_model

    assert load_model(tmp_path / "export" / "model_fp32.tflite").metadata.temperature == 1.2
    assert ModelMetadata.load(run / "metadata.json").temperature == 1.0  # the run itself is untouched
