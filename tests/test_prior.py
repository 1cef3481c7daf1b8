"""The training class prior in the contract (#25 item 5): metadata, logit adjustment, recognizer option, EM."""

from __future__ import annotations

import math

import numpy as np
import pytest

from feredge.edge.calibration import apply_temperature, estimate_label_shift
from feredge.edge.errors import DataError, MetadataError, OptionError
from feredge.edge.labels import FER2013
from feredge.edge.metadata import ModelMetadata
from feredge.edge.model import EmotionModel, _as_probabilities, load_model
from feredge.edge.recognizer import EmotionRecognizer
from feredge.edge.tta import flip_average

pytestmark = pytest.mark.edge

# FER2013's training frequencies, roughly: neutral and happy dominate, disgust is rare.
PRIOR = (0.14, 0.015, 0.14, 0.25, 0.17, 0.11, 0.175)
WITH_METADATA = ("int8", "uint8", "int8_logits", "int8_flip", "int8_fixed_batch", "float16")


def _batch(n: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 48, 48, 1), dtype=np.float32)


def _with(model: EmotionModel, **changes: object) -> EmotionModel:
    """The same interpreter under other metadata."""
    return EmotionModel(model.runner, model.metadata.replace(**changes), model.name, model.threads)


def _softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


# --- metadata ---


def test_old_metadata_has_no_prior_and_tau_zero():
    meta = ModelMetadata.from_dict({"labels": list(FER2013)})
    assert meta.class_prior is None and meta.prior_tau == 0.0


def test_prior_and_tau_round_trip():
    meta = ModelMetadata(labels=FER2013, class_prior=PRIOR, prior_tau=1)
    again = ModelMetadata.from_json(meta.to_json())
    assert again.class_prior == PRIOR and again.prior_tau == 1.0 and isinstance(again.prior_tau, float)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"class_prior": [0.5, 0.5]}, r"class_prior must be a list of 7 numbers \(one per label\)"),
        ({"class_prior": "uniform"}, r"class_prior must be a list of 7 numbers"),
        ({"class_prior": [0.2, -0.1, 0.2, 0.2, 0.2, 0.2, 0.1]}, r"class_prior entries must be numbers >= 0"),
        ({"class_prior": [math.nan] * 7}, r"class_prior entries must be numbers >= 0"),
        ({"class_prior": [True] * 7}, r"class_prior entries must be numbers >= 0"),
        ({"class_prior": [0.2] * 7}, r"class_prior must sum to 1 \(within 0.001\), sums to 1.4"),
        ({"prior_tau": -0.5, "class_prior": PRIOR}, r"prior_tau must be a number within \[0.0, 3.0\], got -0.5"),
        ({"prior_tau": 3.5, "class_prior": PRIOR}, r"prior_tau must be a number within \[0.0, 3.0\]"),
        ({"prior_tau": math.nan, "class_prior": PRIOR}, r"prior_tau must be a number within"),
        ({"prior_tau": "1", "class_prior": PRIOR}, r"prior_tau must be a number within"),
        ({"prior_tau": True, "class_prior": PRIOR}, r"prior_tau must be a number within"),
        ({"prior_tau": 1.0}, r"prior_tau is 1 but it has no training class prior \(class_prior\) in its metadata"),
        (
            {"prior_tau": 0.5, "class_prior": [0.2, 0.0, 0.2, 0.2, 0.2, 0.1, 0.1]},
            r"prior_tau is 0.5 but its training class prior is 0 for disgust \(never trained on\)",
        ),
    ],
)
def test_bad_prior_metadata_is_refused(fields, message):
    with pytest.raises(MetadataError, match=message):
        ModelMetadata.from_dict({"labels": list(FER2013), **fields})


def test_a_prior_rounded_in_its_last_digits_is_accepted():
    assert ModelMetadata(labels=FER2013, class_prior=[0.1429] * 6 + [0.1427]).class_prior is not None


# --- the runtime: tau = 0 is today's scores, bit for bit ---


def _todays_scores(model: EmotionModel, batch: np.ndarray) -> np.ndarray:
    """What EmotionModel.predict computed before the prior existed: dequantized probabilities, flip-averaged
    when asked, then re-tempered as softmax(log(p) / T)."""

    def probabilities(x: np.ndarray) -> np.ndarray:
        return _as_probabilities(model.runner.run(x))

    probs = flip_average(probabilities, batch) if model.metadata.test_time_flip else probabilities(batch)
    temperature = model.metadata.temperature
    if temperature == 1.0:
        return probs
    logits = np.log(np.clip(probs, 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    exp = np.exp(logits)
    return (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("name", [*WITH_METADATA, "float32_plain", "no_labels"])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_tau_zero_reproduces_todays_scores_exactly_on_every_fixture_model(tiny_models, name, temperature):
    labels = "fer2013" if name in ("float32_plain", "no_labels") else None
    loaded = load_model(tiny_models[name], labels=labels, threads=1)
    plain = _with(loaded, temperature=temperature)
    batch = np.random.default_rng(1).random((5, *loaded.runner.input_shape), dtype=np.float32)
    today = _todays_scores(plain, batch)
    assert np.array_equal(plain.predict(batch), today)
    assert np.array_equal(plain.predict(batch, prior_tau=0.0), today)
    with_prior = _with(plain, class_prior=PRIOR, prior_tau=0.0)
    assert np.array_equal(with_prior.predict(batch), today)
    assert np.array_equal(_with(with_prior, prior_tau=1.0).predict(batch, prior_tau=0), today)


@pytest.mark.parametrize("name", ["int8", "int8_logits", "float16", "int8_flip"])
def test_the_prior_is_taken_from_the_log_scores_before_the_temperature(tiny_models, name):
    model = _with(load_model(tiny_models[name], threads=1), class_prior=PRIOR, prior_tau=1.0, temperature=0.8)
    batch = _batch()
    raw = _todays_scores(_with(model, temperature=1.0), batch)
    expected = _softmax((np.log(np.clip(raw, 1e-12, 1.0)) - 0.5 * np.log(PRIOR)) / 0.8)
    np.testing.assert_allclose(model.predict(batch, prior_tau=0.5), expected, rtol=1e-5, atol=1e-7)
    default = _softmax((np.log(np.clip(raw, 1e-12, 1.0)) - np.log(PRIOR)) / 0.8)
    np.testing.assert_allclose(model.predict(batch), default, rtol=1e-5, atol=1e-7)  # the metadata's tau


def test_softmax_and_logit_outputs_are_adjusted_alike(tiny_models):
    """int8 outputs a softmax and int8_logits the logits: the adjustment lands in the same place."""
    batch = _batch()
    softmax = _with(load_model(tiny_models["int8"], threads=1), class_prior=PRIOR, prior_tau=1.0)
    logits = _with(load_model(tiny_models["int8_logits"], threads=1), class_prior=PRIOR, prior_tau=1.0)
    np.testing.assert_allclose(softmax.predict(batch), logits.predict(batch), atol=0.03)
    assert np.abs(softmax.predict(batch) - softmax.predict(batch, prior_tau=0)).max() > 0.05


def test_removing_the_prior_favours_the_rare_classes(tiny_int8_model):
    model = _with(load_model(tiny_int8_model, threads=1), class_prior=PRIOR)
    batch = _batch()
    raw, adjusted = model.predict(batch, prior_tau=0), model.predict(batch, prior_tau=1)
    disgust, happy = FER2013.index("disgust"), FER2013.index("happy")
    assert (adjusted[:, disgust] > raw[:, disgust]).all() and (adjusted[:, happy] < raw[:, happy]).all()
    np.testing.assert_allclose(adjusted.sum(axis=1), 1.0, atol=1e-5)


def test_a_uniform_prior_changes_nothing(tiny_int8_model):
    model = _with(load_model(tiny_int8_model, threads=1), class_prior=[1 / 7] * 7)
    batch = _batch()
    np.testing.assert_allclose(model.predict(batch, prior_tau=1), model.predict(batch, prior_tau=0), atol=1e-6)


@pytest.mark.parametrize("tau", [-0.1, 3.01, math.nan, math.inf, "1", True])
def test_model_refuses_a_bad_tau(tiny_int8_model, tau):
    model = _with(load_model(tiny_int8_model, threads=1), class_prior=PRIOR)
    with pytest.raises(OptionError, match=r"prior_tau must be a number within \[0, 3\]"):
        model.predict(_batch(1), prior_tau=tau)


def test_tau_without_a_prior_is_an_error_unless_zero(tiny_int8_model):
    model = load_model(tiny_int8_model, threads=1)
    assert model.metadata.class_prior is None
    assert model.predict(_batch(1), prior_tau=0).shape == (1, 7)
    with pytest.raises(OptionError, match=r"int8.tflite: prior_tau must be 0, got 1: it has no training class prior"):
        model.predict(_batch(1), prior_tau=1)


def test_a_class_never_trained_on_is_kept_but_allows_only_tau_zero(tiny_int8_model):
    """Its log prior is -inf: removing it would give that class every face."""
    unseen = (0.2, 0.0, 0.2, 0.2, 0.2, 0.1, 0.1)
    model = _with(load_model(tiny_int8_model, threads=1), class_prior=unseen)
    assert model.metadata.class_prior == unseen
    assert np.array_equal(model.predict(_batch(2), prior_tau=0), _todays_scores(model, _batch(2)))
    with pytest.raises(
        OptionError, match=r"prior_tau must be 0, got 0.5: its training class prior is 0 for disgust \(never"
    ):
        model.predict(_batch(1), prior_tau=0.5)
    with pytest.raises(OptionError, match=r"training class prior is 0 for disgust"):
        EmotionRecognizer(model, detector="none", prior_tau=1)


# --- the recognizer option ---


def test_recognizer_takes_the_models_tau_unless_given_one(tiny_int8_model):
    model = _with(load_model(tiny_int8_model, threads=1), class_prior=PRIOR, prior_tau=1.0)
    face = np.random.default_rng(2).integers(0, 255, (60, 60), np.uint8)
    default = EmotionRecognizer(model, detector="none")
    assert default.prior_tau == 1.0 and "prior_tau=1" in repr(default)
    raw = EmotionRecognizer(model, detector="none", prior_tau=0)
    assert raw.prior_tau == 0.0 and "prior_tau" not in repr(raw)
    half = EmotionRecognizer(model, detector="none", prior_tau=0.5)
    crops = model.preprocess([face])
    for recognizer in (default, raw, half):
        (found,) = recognizer.predict(face)
        expected = model.predict(crops, prior_tau=recognizer.prior_tau)[0]
        assert found.scores == {label: round(float(p), 6) for label, p in zip(FER2013, expected, strict=True)}
    assert default.predict(face)[0].scores != raw.predict(face)[0].scores


@pytest.mark.parametrize("tau", [-1, 3.5, math.nan, math.inf, "0.5", True, [1.0]])
def test_recognizer_refuses_a_bad_tau_before_loading_a_model(tmp_path, tau):
    with pytest.raises(OptionError, match=r"prior_tau must be a number within \[0, 3\]"):
        EmotionRecognizer(tmp_path / "missing.tflite", prior_tau=tau)


def test_recognizer_refuses_tau_for_a_model_without_a_prior(tiny_int8_model):
    with pytest.raises(OptionError, match=r"int8.tflite: prior_tau must be 0, got 1: it has no training class prior"):
        EmotionRecognizer(tiny_int8_model, detector="none", prior_tau=1)
    assert EmotionRecognizer(tiny_int8_model, detector="none", prior_tau=0.0).prior_tau == 0.0


# --- label-shift re-estimation (Saerens et al. 2002) ---


def _gaussian_posteriors(prior_train: np.ndarray, prior_test: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Bayes posteriors under ``prior_train`` of faces drawn under ``prior_test``: class k is N(2k, 1) in 1-D."""
    rng = np.random.default_rng(seed)
    means = 2.0 * np.arange(len(prior_train))
    classes = rng.choice(len(prior_test), n, p=prior_test)
    x = rng.normal(means[classes], 1.0)
    likelihood = np.exp(-0.5 * (x[:, None] - means[None, :]) ** 2)
    joint = likelihood * prior_train
    return joint / joint.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("seed", [0, 1])
def test_label_shift_recovers_a_known_prior(seed):
    train = np.array([0.25, 0.25, 0.25, 0.25])
    true = np.array([0.6, 0.25, 0.1, 0.05])
    probs = _gaussian_posteriors(train, true, 20_000, seed)
    naive = probs.mean(axis=0)  # the posteriors' mean is pulled towards the training prior
    estimate = estimate_label_shift(probs, train)
    np.testing.assert_allclose(estimate, true, atol=0.02)
    assert np.abs(estimate - true).sum() < np.abs(naive - true).sum() / 2
    assert math.isclose(estimate.sum(), 1.0)
    shifted = apply_temperature(probs, 1.0, np.log(train) - np.log(estimate))  # the posteriors under it
    np.testing.assert_allclose(shifted.mean(axis=0), estimate, atol=1e-3)


def test_label_shift_finds_no_shift_where_there_is_none():
    train = np.array([0.5, 0.3, 0.2])
    probs = _gaussian_posteriors(train, train, 20_000, 3)
    np.testing.assert_allclose(estimate_label_shift(probs, train), train, atol=0.02)


@pytest.mark.parametrize(
    ("probs", "prior", "error", "message"),
    [
        (np.zeros((0, 3)), [0.3, 0.3, 0.4], DataError, r"non-empty \(N, 3\) array"),
        (np.full((4, 2), 0.5), [0.3, 0.3, 0.4], DataError, r"\(N, 3\) array of scores, got shape \(4, 2\)"),
        (np.full((4, 3), np.nan), [0.3, 0.3, 0.4], DataError, r"finite and non-negative"),
        (np.full((4, 3), 1 / 3), [0.5, 0.0, 0.5], OptionError, r"train_prior must be two or more positive"),
        (np.full((4, 3), 1 / 3), [[0.5, 0.5]], OptionError, r"train_prior must be two or more positive"),
    ],
)
def test_label_shift_refuses_bad_input(probs, prior, error, message):
    with pytest.raises(error, match=message):
        estimate_label_shift(probs, prior)
