"""Calibration of class scores: expected calibration error, NLL, and temperature scaling.

A softmax trained with label smoothing and selected on accuracy is not a probability: its top score
says 0.6 when the model is right 70% of the time, or the other way round. Conversion fits one
temperature on held-out faces, as the runtime scores them (quantized, flip-averaged), and stores it in
the metadata, so ``Face.confidence`` and the ``min_confidence`` threshold mean what they say.
"""

from __future__ import annotations

from typing import Any

import numpy as np

ECE_BINS = 15
_EPS = 1e-12


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities re-tempered as ``softmax(log(p) / T)``: the same as dividing the logits by T."""
    if temperature == 1.0:
        return probs
    logits = np.log(np.clip(probs, _EPS, 1.0)) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    exp = np.exp(logits)
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
