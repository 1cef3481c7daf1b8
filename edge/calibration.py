"""Calibration of class scores: expected calibration error, NLL, temperature scaling, and the class prior.

A softmax trained with label smoothing and selected on accuracy is not a probability: its top score
says 0.6 when the model is right 70% of the time, or the other way round. Conversion fits one
temperature on held-out faces, as the runtime scores them (quantized, flip-averaged), and stores it in
the metadata, so ``Face.confidence`` and the ``min_confidence`` threshold mean what they say.

A network also learns its training set's class frequencies: FER data are a third neutral, so photos get
"neutral" far more often than they show it. The metadata's ``class_prior`` lets the runtime take
``prior_tau * log(prior)`` from the scores (``apply_temperature``), and ``estimate_label_shift`` estimates
the prior of a batch of faces, when a batch run wants the scores under that one instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from feredge.edge.errors import DataError, OptionError

ECE_BINS = 15
_EPS = 1e-12


def apply_temperature(probs: np.ndarray, temperature: float, shift: np.ndarray | None = None) -> np.ndarray:
    """Probabilities re-tempered as ``softmax((log(p) - shift) / T)``: the same as dividing the logits by T.

    ``shift`` is ``tau * log(training prior)`` (``EmotionModel.prior_shift``), the logit adjustment of
    Menon et al. (2021): a network trained on a skewed prior favours the frequent classes by their log
    frequency, and tau = 1 takes that away. ``log(p)`` differs from the network's logits by one constant
    per row, which the softmax ignores, so models that output logits and models that output a softmax are
    adjusted alike. ``None`` (tau = 0) computes exactly what it did before the prior existed.
    """
    if temperature == 1.0 and shift is None:
        return probs
    logits = np.log(np.clip(probs, _EPS, 1.0))
    if shift is not None:
        logits = logits - shift
    return softmax(logits / temperature)


def softmax(logits: np.ndarray) -> np.ndarray:
    """float32 probabilities over the last axis, the maximum taken off first so ``exp`` cannot overflow."""
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)


def nll(probs: np.ndarray, targets: np.ndarray) -> float:
    """Mean negative log-likelihood of the true classes."""
    picked = probs[np.arange(len(targets)), targets]
    return float(-np.log(np.clip(picked, _EPS, 1.0)).mean())


def expected_calibration_error(probs: np.ndarray, targets: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: the gap between confidence and accuracy, averaged over equal-width confidence bins."""
    if len(targets) == 0:
        return 0.0
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == targets
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    gap = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            gap += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(gap)


def fit_temperature(probs: np.ndarray, targets: np.ndarray, low: float = 0.05, high: float = 20.0) -> float:
    """The temperature that minimizes NLL on (probs, targets), by golden-section search on log T.

    NLL is convex in 1/T for fixed logits, so a one-dimensional search finds the optimum; it needs
    no optimizer library and runs in milliseconds on a few thousand faces.
    """
    if len(targets) == 0:
        raise ValueError("cannot fit a temperature on no samples")
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = np.log(low), np.log(high)

    def loss(log_t: float) -> float:
        return nll(apply_temperature(probs, float(np.exp(log_t))), targets)

    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = loss(c), loss(d)
    for _ in range(60):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = loss(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = loss(d)
    return float(np.exp((a + b) / 2.0))


def cross_fitted_calibration(probs: np.ndarray, targets: np.ndarray, folds: int = 2, seed: int = 0) -> dict[str, float]:
    """ECE and NLL before and after temperature scaling, the "after" scored on folds the fit never saw.

    Fitting and scoring on the same faces flatters the result; the final temperature is fitted on
    all of them, but the reported "after" comes from ``folds``-fold cross-fitting.
    """
    rng = np.random.default_rng(seed)
    fold_of = rng.permutation(len(targets)) % folds
    calibrated = np.empty_like(probs)
    for fold in range(folds):
        held = fold_of == fold
        temperature = fit_temperature(probs[~held], targets[~held])
        calibrated[held] = apply_temperature(probs[held], temperature)
    return {"temperature": fit_temperature(probs, targets), **_before_after(probs, calibrated, targets)}


def given_temperature_calibration(probs: np.ndarray, targets: np.ndarray, temperature: float) -> dict[str, Any]:
    """ECE and NLL before and after a temperature fitted elsewhere (a final fit's validated twin, say).

    A model trained on every labelled face has none left to fit on: fitting on faces it learned would
    make it look better calibrated than it is on new ones.
    """
    calibrated = apply_temperature(probs, temperature)
    return {"temperature": float(temperature), "given": True, **_before_after(probs, calibrated, targets)}


def _before_after(probs: np.ndarray, calibrated: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    return {
        "ece_before": expected_calibration_error(probs, targets),
        "ece_after": expected_calibration_error(calibrated, targets),
        "nll_before": nll(probs, targets),
        "nll_after": nll(calibrated, targets),
    }


def estimate_label_shift(
    probs: np.ndarray, train_prior: np.ndarray | Sequence[float], max_iter: int = 1000, tol: float = 1e-8
) -> np.ndarray:
    """The class prior of a batch of faces, re-estimated from the model's posteriors by EM (Saerens et al. 2002).

    Opt-in for batch runs (a folder of photos): a posterior ``p(y|x)`` learned under ``train_prior`` is
    re-weighted by ``new / train`` and renormalized, ``new`` becomes the mean re-weighted posterior, until it
    stops moving. ``probs`` are the calibrated scores with the training prior kept (``predict(..., prior_tau=0)``);
    rows of zeros or a batch of one face say little, so use it on tens of faces or more. The posteriors under
    the returned prior are ``apply_temperature(probs, 1.0, np.log(train_prior) - np.log(new_prior))``.
    """
    probs = np.asarray(probs, np.float64)
    prior = np.asarray(train_prior, np.float64)
    if prior.ndim != 1 or len(prior) < 2 or not np.all(np.isfinite(prior) & (prior > 0)):
        raise OptionError(f"train_prior must be two or more positive numbers, got {np.array2string(prior)[:80]}")
    if probs.ndim != 2 or probs.shape[1] != len(prior) or len(probs) == 0:
        raise DataError(f"probs must be a non-empty (N, {len(prior)}) array of scores, got shape {probs.shape}")
    if not np.all(np.isfinite(probs) & (probs >= 0)):
        raise DataError("probs must be finite and non-negative (probabilities)")
    prior = prior / prior.sum()
    probs = np.clip(probs, _EPS, None)
    new = prior
    for _ in range(max_iter):
        weighted = probs * (new / prior)
        updated = (weighted / weighted.sum(axis=1, keepdims=True)).mean(axis=0)
        done = np.abs(updated - new).max() < tol
        new = updated
        if done:
            break
    return new
