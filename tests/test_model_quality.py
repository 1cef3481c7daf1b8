"""Model quality tools on tiny models: distillation, one-graph ensembles, temperature calibration."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from test_convert import write_stripes

from feredge.cli import main
from feredge.edge.calibration import (
    apply_temperature,
    cross_fitted_calibration,
    expected_calibration_error,
    fit_temperature,
    nll,
)
from feredge.edge.dataset import load_dataset, score_batches
from feredge.edge.errors import FeredgeError
from feredge.edge.metadata import ModelMetadata
from feredge.edge.model import load_model

TINY = dict(backbone="tiny", batch_size=16, augment="none", weight_decay=0.0, val_fraction=0.25, workers=1)


def _overconfident(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores whose logits are 3x too sharp for how often they are right."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, 7)) * 2.0
    truth = np.array([rng.choice(7, p=np.exp(z) / np.exp(z).sum()) for z in logits])
    sharp = np.exp(3 * logits)
    return (sharp / sharp.sum(1, keepdims=True)).astype(np.float32), truth


@pytest.mark.edge
def test_temperature_fitted_on_one_half_lowers_nll_and_ece_on_the_other():
    probs, truth = _overconfident(3000, seed=0)
    fit, held = slice(0, 1500), slice(1500, None)
    temperature = fit_temperature(probs[fit], truth[fit])
    assert temperature == pytest.approx(3.0, rel=0.15)
    calibrated = apply_temperature(probs[held], temperature)
    assert nll(calibrated, truth[held]) < nll(probs[held], truth[held]) - 0.1
    assert expected_calibration_error(calibrated, truth[held]) < 0.5 * expected_calibration_error(
        probs[held], truth[held]
    )
    assert np.array_equal(calibrated.argmax(1), probs[held].argmax(1))  # a temperature never changes the label
    report = cross_fitted_calibration(probs, truth)
    assert report["ece_after"] < report["ece_before"] and report["nll_after"] < report["nll_before"]


@pytest.mark.edge
def test_ece_is_zero_for_perfect_calibration_and_counts_bins():
    probs = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    assert expected_calibration_error(probs, np.array([0, 1])) == 0.0
    assert expected_calibration_error(probs, np.array([1, 1])) == pytest.approx(0.5)


@pytest.fixture(scope="module")
def stripes(tmp_path_factory) -> Path:
    return write_stripes(tmp_path_factory.mktemp("quality") / "data", per_class=24)


def _train(data: Path, out: Path, **changes):
    from feredge.train.config import TrainConfig
    from feredge.train.trainer import train

    options = {**TINY, "epochs": 4, "lr": 1e-2, "dropout": 0.0, "label_smoothing": 0.0, "patience": 10, **changes}
    return train(TrainConfig(data=str(data), out=str(out), **options))


@pytest.fixture(scope="module")
def teacher(stripes, tmp_path_factory) -> Path:
    return _train(stripes, tmp_path_factory.mktemp("teacher") / "run", alpha=4, epochs=10, seed=1)


def _val_scores(run: Path, data: Path) -> tuple[np.ndarray, np.ndarray]:
    from feredge.train.evaluate import load_predictor

    predict, meta = load_predictor(run)
    split = load_dataset(data, meta.labels, meta.input_size, val_fraction=0.25, seed=42, workers=1).splits["val"]
    return score_batches(predict, split, meta.preprocess_spec(), meta.test_time_flip), split.targets


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    p, q = np.clip(p, 1e-7, 1), np.clip(q, 1e-7, 1)
    return float((p * (np.log(p) - np.log(q))).sum(1).mean())


@pytest.mark.slow
def test_distillation_lowers_the_kl_to_the_teacher(stripes, teacher, tmp_path):
    teacher_scores, _ = _val_scores(teacher, stripes)
    plain = _train(stripes, tmp_path / "plain", seed=7)
    student = _train(
        stripes, tmp_path / "student", seed=7, teachers=[str(teacher)], distill_alpha=1.0, distill_temperature=2.0
    )
    kl_plain = _kl(teacher_scores, _val_scores(plain, stripes)[0])
    kl_student = _kl(teacher_scores, _val_scores(student, stripes)[0])
    assert kl_student < kl_plain
    record = ModelMetadata.load(student / "metadata.json").extra["distillation"]
    assert record["teachers"] == [str(teacher)] and record["alpha"] == 1.0


@pytest.mark.slow
def test_a_teacher_with_another_contract_is_refused(stripes, teacher, tmp_path):
    with pytest.raises(FeredgeError, match="teacher"):
        _train(stripes, tmp_path / "s", epochs=1, teachers=[str(teacher)], photometric="clahe")


@pytest.mark.slow
def test_cached_targets_let_a_teacher_of_another_contract_teach(stripes, teacher, tmp_path):
    """A raw-pixel teacher, cached, pulls a CLAHE student towards its answers; its int8 file teaches too."""
    from feredge.train.evaluate import load_predictor
    from feredge.train.trainer import TEACHER_TARGETS_FILE

    teacher_scores, _ = _val_scores(teacher, stripes)
    clahe = dict(seed=7, photometric="clahe")
    plain = _train(stripes, tmp_path / "plain", **clahe)
    options = dict(teachers=[str(teacher)], distill_alpha=1.0, distill_temperature=2.0, teacher_targets="cached")
    student = _train(stripes, tmp_path / "student", **clahe, **options)
    assert _kl(teacher_scores, _val_scores(student, stripes)[0]) < _kl(teacher_scores, _val_scores(plain, stripes)[0])
    cached = np.load(student / TEACHER_TARGETS_FILE)["scores"]
    data = load_dataset(stripes, val_fraction=0.25, seed=7, workers=1)  # the student's split (its seed)
    faces = data.splits["train"]
    assert cached.shape == (len(faces), len(data.labels)) and np.allclose(cached.sum(1), 1.0, atol=1e-4)
    predict, meta = load_predictor(teacher)  # raw pixels, no flip of its own: the cache flip-averages it
    expected = score_batches(predict, faces, meta.preprocess_spec(), flip=True)
    np.testing.assert_allclose(cached, expected, atol=1e-5)  # the teacher's answers, row by row in face order
    record = ModelMetadata.load(student / "metadata.json").extra["distillation"]
    assert record["teacher_targets"] == "cached"

    code, err = _cli("convert", str(teacher), "--format", "int8", "--max-f1-drop", "1", "--out", str(tmp_path / "t"))
    assert code == 0, err
    tflite = next((tmp_path / "t").glob("*int8.tflite"))
    _train(stripes, tmp_path / "from_tflite", epochs=1, **clahe, **{**options, "teachers": [str(tflite)]})


@pytest.mark.slow
def test_a_final_fit_caches_a_teachers_scores_on_train_and_val_faces(stripes, teacher, tmp_path):
    """A teacher of another contract reloads the faces the way the run loaded them: merged, in the same order."""
    from feredge.train.trainer import TEACHER_TARGETS_FILE

    options = dict(teachers=[str(teacher)], teacher_targets="cached", photometric="clahe", schedule="cosine")
    student = _train(stripes, tmp_path / "student", epochs=1, seed=7, final_fit=True, **options)
    data = load_dataset(stripes, val_fraction=0.25, seed=7, workers=1)
    faces = sum(len(split) for split in data.splits.values())
    assert np.load(student / TEACHER_TARGETS_FILE)["scores"].shape == (faces, len(data.labels))


@pytest.mark.slow
def test_cached_targets_put_a_teachers_columns_in_the_students_label_order(stripes, teacher, tmp_path, monkeypatch):
    from feredge.train.distill import cached_teacher_scores
    from feredge.train.evaluate import load_predictor

    student = ModelMetadata.load(teacher / "metadata.json")
    rotated = student.labels[1:] + student.labels[:1]  # a 3-cycle: its inverse is another order
    other = _train(stripes, tmp_path / "other", epochs=2, labels=",".join(rotated))
    faces = load_dataset(stripes, student.labels, val_fraction=0.25, seed=7, workers=1).splits["train"]

    def no_reload(size: int, photometric: str):  # the student's contract: its own faces, not a reload
        raise AssertionError("reloaded")

    cached = cached_teacher_scores([other], student, faces, no_reload)
    predict, meta = load_predictor(other)
    assert meta.labels == rotated
    own = score_batches(predict, faces, meta.preprocess_spec(), flip=True)
    for column, name in enumerate(student.labels):
        np.testing.assert_allclose(cached[:, column], own[:, rotated.index(name)], atol=1e-5)


def test_cached_targets_are_reused_only_for_the_run_that_made_them(tmp_path, monkeypatch):
    """--resume reuses the file; another seed (another split) or a damaged file computes it again."""
    from feredge.edge.dataset import Split
    from feredge.train import trainer
    from feredge.train.config import TrainConfig

    calls = []

    def fake_scores(teachers, student, faces, load_faces):
        calls.append(student.labels)
        return np.full((len(faces), 3), len(calls), np.float32)

    monkeypatch.setattr(trainer, "cached_teacher_scores", fake_scores)
    meta = ModelMetadata(labels=("a", "b", "c"))
    faces = Split(np.zeros((5, 48, 48), np.uint8), np.array([0, 1, 2, 0, 1]))
    config = TrainConfig(data="d", out=str(tmp_path), teachers=["t"], teacher_targets="cached", seed=1)
    first = trainer._cached_targets(config, meta, faces, tmp_path)
    again = trainer._cached_targets(config, meta, faces, tmp_path)
    assert len(calls) == 1 and np.array_equal(first, again)
    reseeded = trainer._cached_targets(TrainConfig(**{**config.to_dict(), "seed": 2}), meta, faces, tmp_path)
    assert len(calls) == 2 and reseeded[0, 0] == 2
    (tmp_path / trainer.TEACHER_TARGETS_FILE).write_bytes(b"not an npz")
    trainer._cached_targets(config, meta, faces, tmp_path)
    assert len(calls) == 3


@pytest.mark.slow
def test_cached_targets_refuse_a_teacher_of_other_labels(stripes, tmp_path):
    other = _train(stripes, tmp_path / "other", epochs=1, labels="happy,sad")
    with pytest.raises(FeredgeError, match="labels"):
        _train(stripes, tmp_path / "s", epochs=1, teachers=[str(other)], teacher_targets="cached")
    with pytest.raises(FeredgeError, match="needs at least one --teacher"):
        _train(stripes, tmp_path / "s", epochs=1, teacher_targets="cached")
    served = tmp_path / "teacher.tflite"
    served.write_bytes(b"a served model")  # batch mode needs Keras before it reads the file
    code, err = _cli("train", str(stripes), "--teacher", str(served), "--out", str(tmp_path / "b"))
    assert code == 2 and "--teacher-targets cached" in err and "Traceback" not in err


def _cli(*args: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, err.getvalue()


def _framed(margin: float, framing: dict) -> object:
    from feredge.train.keras_io import SourceModel

    meta = ModelMetadata(labels=("a", "b"), crop_margin=margin, framing=framing)
    return SourceModel(model=None, metadata=meta, path=Path(f"m{margin}.keras"), config=None)


def test_an_ensemble_records_only_the_framing_its_members_agree_on(caplog):
    from feredge.train.ensemble import shared_framing

    yunet = {"margin": -0.05, "offset": 0.0}
    same = [_framed(0.0, {"yunet": yunet, "haar": {"margin": 0.1}}), _framed(0.0, {"yunet": {"margin": -0.05}})]
    assert shared_framing(same) == (0.0, {"yunet": yunet})  # compared as served: a missing offset is 0
    assert "haar" in caplog.text  # the dropped measurement is named
    caplog.clear()
    implicit = [_framed(0.1, {"haar": {"margin": 0.1}}), _framed(0.1, {})]  # the second serves its crop margin
    assert shared_framing(implicit) == (0.1, {"haar": {"margin": 0.1, "offset": 0.0}}) and not caplog.text
    caplog.clear()
    assert shared_framing([_framed(0.0, {}), _framed(0.2, {})]) == (0.1, {})
    assert "evaluate-photos" in caplog.text
    caplog.clear()
    assert shared_framing(same[1:] * 2) == (0.0, {"yunet": yunet}) and not caplog.text


@pytest.mark.slow
def test_ensemble_artefact_equals_the_mean_of_its_members(stripes, teacher, tmp_path):
    other = _train(stripes, tmp_path / "other", alpha=2, epochs=3, seed=3)
    ensemble = tmp_path / "ensemble"
    code, err = _cli("ensemble", str(teacher), str(other), "--out", str(ensemble))
    assert code == 0, err
    code, err = _cli("convert", str(ensemble), "--format", "fp32", "--no-calibrate", "--check-data", str(stripes))
    assert code == 0, err
    artefact = load_model(ensemble / "model_fp32.tflite")
    assert "ensemble" in artefact.metadata.backbone and len(artefact.metadata.extra["members"]) == 2
    split = load_dataset(stripes, artefact.labels, 48, make_val=False, workers=1).splits["train"]
    spec = artefact.metadata.preprocess_spec()
    member_scores = [_val_scores_on(run, split) for run in (teacher, other)]
    np.testing.assert_allclose(score_batches(artefact.predict, split, spec), np.mean(member_scores, axis=0), atol=1e-5)


@pytest.mark.slow
def test_ensemble_of_clahe_and_raw_members_feeds_each_its_own_view(stripes, teacher, tmp_path):
    """Views in member order; the flip-averaged member mirrors inside the graph, the other is scored once
    (or mirrored too, with --test-time-flip)."""
    clahe = _train(stripes, tmp_path / "clahe", alpha=2, epochs=1, seed=4, photometric="clahe", test_time_flip=True)
    assert not ModelMetadata.load(teacher / "metadata.json").test_time_flip
    ensemble = tmp_path / "ensemble"
    code, err = _cli("ensemble", str(clahe), str(teacher), str(clahe), "--out", str(ensemble))
    assert code == 0, err
    meta = ModelMetadata.load(ensemble / "metadata.json")
    assert (meta.photometric, meta.channels, meta.test_time_flip) == ("clahe+none", 2, False)
    convert = ("convert", str(ensemble), "--format", "fp32,int8", "--no-calibrate", "--check-data", str(stripes))
    code, err = _cli(*convert, "--calibration-data", str(stripes))
    assert code == 0, err
    artefact = load_model(ensemble / "model_fp32.tflite")
    stacked = load_dataset(stripes, artefact.labels, 48, make_val=False, workers=1, photometric="clahe+none")
    scores = score_batches(artefact.predict, stacked.splits["train"], artefact.metadata.preprocess_spec())
    views = {
        view: load_dataset(stripes, artefact.labels, 48, make_val=False, workers=1, photometric=view).splits["train"]
        for view in ("clahe", "none")
    }
    members = [
        _val_scores_on(run, views[view]) for run, view in ((clahe, "clahe"), (teacher, "none"), (clahe, "clahe"))
    ]
    np.testing.assert_allclose(scores, np.mean(members, axis=0), atol=1e-5)
    quantized = load_model(ensemble / "model_int8.tflite")
    assert quantized.metadata.photometric == "clahe+none"
    int8_scores = score_batches(quantized.predict, stacked.splits["train"], quantized.metadata.preprocess_spec())
    assert (int8_scores.argmax(1) == scores.argmax(1)).mean() > 0.9

    flip_all = tmp_path / "flip_all"
    assert _cli("ensemble", str(clahe), str(teacher), "--test-time-flip", "--out", str(flip_all))[0] == 0
    assert ModelMetadata.load(flip_all / "metadata.json").test_time_flip
    mirrored = [
        _val_scores_on(run, split, flip=True) for run, split in ((clahe, views["clahe"]), (teacher, views["none"]))
    ]
    np.testing.assert_allclose(_val_scores_on(flip_all, stacked.splits["train"]), np.mean(mirrored, axis=0), atol=1e-5)


@pytest.mark.slow
def test_stacked_views_are_refused_as_a_member_a_soup_and_for_training(stripes, teacher, tmp_path):
    clahe = _train(stripes, tmp_path / "clahe", epochs=1, seed=4, photometric="clahe")
    stacked = tmp_path / "stacked"
    assert _cli("ensemble", str(teacher), str(clahe), "--out", str(stacked))[0] == 0
    code, err = _cli("ensemble", str(stacked), str(teacher), "--out", str(tmp_path / "bad"))
    assert code == 2 and "gray single-view" in err and not (tmp_path / "bad" / "model.keras").exists()
    code, err = _cli("ensemble", str(teacher), str(clahe), "--out", str(tmp_path / "soup"), "--weight-average")
    assert code == 2 and "photometric" in err
    with pytest.raises(FeredgeError, match="only `feredge ensemble` builds"):
        _train(stripes, tmp_path / "trained", epochs=1, photometric="none+clahe")
    code, err = _cli("train", str(stripes), "--teacher", str(stacked), "--out", str(tmp_path / "student"))
    assert code == 2 and "--teacher-targets cached" in err
    from feredge.train.evaluate import load_predictor
    from feredge.train.trainer import TEACHER_TARGETS_FILE

    cached = dict(teachers=[str(stacked)], teacher_targets="cached", seed=7)
    student = _train(stripes, tmp_path / "student", epochs=1, photometric="clahe", **cached)
    faces = load_dataset(stripes, val_fraction=0.25, seed=7, workers=1, photometric="none+clahe").splits["train"]
    predict, meta = load_predictor(stacked)  # as the advice says: the stacked ensemble teaches on its own views
    expected = score_batches(predict, faces, meta.preprocess_spec(), flip=not meta.test_time_flip)
    np.testing.assert_allclose(np.load(student / TEACHER_TARGETS_FILE)["scores"], expected, atol=1e-5)


def _val_scores_on(run: Path, split, flip: bool = False) -> np.ndarray:
    """A model's scores as it is served (``flip``: also mirrored when it is served without)."""
    from feredge.train.evaluate import load_predictor

    predict, meta = load_predictor(run)
    return score_batches(predict, split, meta.preprocess_spec(), flip=flip and not meta.test_time_flip)


@pytest.mark.slow
def test_ensemble_refuses_members_with_different_labels(stripes, teacher, tmp_path):
    other = _train(stripes, tmp_path / "few", epochs=1, labels="happy,sad")
    code, err = _cli("ensemble", str(teacher), str(other), "--out", str(tmp_path / "bad"))
    assert code == 2 and "labels" in err and not (tmp_path / "bad" / "model.keras").exists()


@pytest.mark.slow
def test_conversion_stores_a_fitted_temperature_and_reports_ece(stripes, teacher, tmp_path):
    code, err = _cli("convert", str(teacher), "--format", "fp32", "--out", str(tmp_path))
    assert code == 0, err
    artefact = load_model(tmp_path / "model_fp32.tflite")
    report = json.loads((tmp_path / "model_fp32.report.json").read_text())
    calibration = report["calibration"]
    assert artefact.metadata.temperature == pytest.approx(calibration["temperature"], abs=1e-3)
    assert set(calibration) == {"temperature", "ece_before", "ece_after", "nll_before", "nll_after"}
    assert 0.05 <= calibration["temperature"] <= 20 and 0 <= calibration["ece_after"] <= 1
    assert "ECE" in (tmp_path / "model_fp32.report.md").read_text()


@pytest.mark.slow
def test_conversion_stores_a_given_temperature_and_scores_it(stripes, teacher, tmp_path):
    code, err = _cli("convert", str(teacher), "--format", "fp32", "--temperature", "2.5", "--out", str(tmp_path))
    assert code == 0, err
    artefact = load_model(tmp_path / "model_fp32.tflite")
    calibration = json.loads((tmp_path / "model_fp32.report.json").read_text())["calibration"]
    assert artefact.metadata.temperature == calibration["temperature"] == 2.5 and calibration["given"]
    assert "given, not fitted here" in (tmp_path / "model_fp32.report.md").read_text()
    code, err = _cli("convert", str(teacher), "--format", "fp32", "--temperature", "2.5", "--no-calibrate")
    assert code == 2 and "--no-calibrate" in err
    with pytest.raises(SystemExit) as exit_info, contextlib.redirect_stderr(io.StringIO()):
        main(["convert", str(teacher), "--temperature", "0"])  # outside the metadata's range: a usage error
    assert exit_info.value.code == 2


def test_a_given_temperature_is_scored_not_fitted():
    from feredge.edge.calibration import given_temperature_calibration

    probs, truth = _overconfident(2000, seed=3)
    fitted = fit_temperature(probs, truth)
    at_fit = given_temperature_calibration(probs, truth, fitted)
    elsewhere = given_temperature_calibration(probs, truth, 1.0)
    assert at_fit["nll_after"] < elsewhere["nll_after"] == pytest.approx(at_fit["nll_before"])
    assert at_fit["temperature"] == fitted and at_fit["given"]


@pytest.mark.slow
def test_weight_average_is_one_network_with_the_mixed_weights(stripes, teacher, tmp_path):
    import tf_keras as keras

    twin = _train(stripes, tmp_path / "twin", alpha=4, epochs=1, seed=5)
    soup = tmp_path / "soup"
    code, err = _cli("ensemble", str(teacher), str(twin), "--out", str(soup), "--weight-average", "--mix", "1", "3")
    assert code == 0, err
    models = [keras.models.load_model(str(run / "model.keras"), compile=False) for run in (teacher, twin, soup)]
    assert models[2].count_params() == models[0].count_params()  # one member's cost
    for a, b, mixed in zip(*(m.get_weights() for m in models), strict=True):
        np.testing.assert_allclose(mixed, 0.25 * a + 0.75 * b, rtol=1e-5, atol=1e-6)
    meta = ModelMetadata.load(soup / "metadata.json")
    assert meta.backbone.startswith("weight-average(") and meta.extra["mix"] == [0.25, 0.75]

    other = _train(stripes, tmp_path / "wider", alpha=2, epochs=1, seed=6)
    code, err = _cli("ensemble", str(teacher), str(other), "--out", str(tmp_path / "bad"), "--weight-average")
    assert code == 2 and "one architecture" in err and not (tmp_path / "bad" / "model.keras").exists()
    code, err = _cli("ensemble", str(teacher), str(twin), "--out", str(tmp_path / "bad"), "--mix", "1", "1")
    assert code == 2 and "--mix sets the shares of --weight-average" in err
