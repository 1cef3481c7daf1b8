"""Latency measured the LiteRT-benchmark way: init, first run and steady state reported apart.

The first invoke pays for tensor allocation and weight packing (XNNPACK), so it is neither mixed into
the steady-state percentiles nor dropped: it is what a one-shot ``feredge predict`` costs.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence

import cv2
import numpy as np

from feredge.edge.model import EmotionModel
from feredge.edge.recognizer import EmotionRecognizer

BATCH_SIZES = (1, 8, 32)
STAGES = ("detect", "preprocess", "infer")


def elapsed_ms(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000.0


def summarize(samples_ms: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99 and mean of timings in milliseconds."""
    values = np.asarray(samples_ms, np.float64)
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(values.mean()), "runs": len(values)}


def face_latency(model: EmotionModel, face: np.ndarray, runs: int, warmup: int) -> dict:
    """First-run and steady-state latency of one preprocessed face (1, S, S, C); call right after loading."""
    first = elapsed_ms(lambda: model.predict(face))
    for _ in range(warmup):
        model.predict(face)
    return {"first_ms": first, "steady_ms": summarize([elapsed_ms(lambda: model.predict(face)) for _ in range(runs)])}


def throughput(model: EmotionModel, face: np.ndarray, runs: int) -> dict[str, float]:
    """Faces per second at each of ``BATCH_SIZES``, about ``runs`` faces each (at least two calls)."""
    rates = {}
    for size in BATCH_SIZES:
        batch = np.repeat(face, size, axis=0)
        model.predict(batch)  # resizes the input tensor: not part of the rate
        calls = max(2, math.ceil(runs / size))
        start = time.perf_counter()
        for _ in range(calls):
            model.predict(batch)
        rates[str(size)] = size * calls / (time.perf_counter() - start)
    return rates


@contextlib.contextmanager
def opencv_threads(threads: int) -> Iterator[None]:
    """Give the detector the same thread budget as the interpreter, as on a device running both."""
    previous = cv2.getNumThreads()
    cv2.setNumThreads(threads)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


def pipeline_latency(recognizer: EmotionRecognizer, frame: np.ndarray, runs: int, warmup: int, threads: int) -> dict:
    """Per-frame latency and FPS of detect -> preprocess -> infer on ``frame``, stages apart."""
    with opencv_threads(threads):
        for _ in range(warmup):
            recognizer.predict(frame)
        timings = []
        for _ in range(runs):
            timings.append(recognizer.recognize(frame).timings.as_dict())
    total = summarize([t["total_ms"] for t in timings])
    return {
        "faces_found": min(int(t["faces"]) for t in timings),
        "total_ms": total,
        "fps": 1000.0 / total["mean"],
        "stages_ms": {stage: float(np.mean([t[f"{stage}_ms"] for t in timings])) for stage in STAGES},
    }
