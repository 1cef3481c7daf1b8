"""Print what the shipped model computes for one photo, bit for bit, as one JSON line.

``check.sh`` runs this with the same wheel on x86-64 and under arm64 emulation and compares the
lines, so it prints only what must not depend on the CPU: the boxes and labels, and the hex of the
model's raw outputs and final scores. The raw outputs are the int8 output tensor dequantized element
by element (``(q - zero_point) * scale`` in float32), so equal bits there mean equal int8 outputs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

import numpy as np

from feredge.edge.recognizer import EmotionRecognizer


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", help="a photo with at least one face")
    return parser.parse_args(argv)


def _recording(function: Callable[[np.ndarray], np.ndarray], seen: list[np.ndarray]):
    """``function`` that also keeps each result, to read the arrays ``predict`` rounds away."""

    def record(batch: np.ndarray) -> np.ndarray:
        result = function(batch)
        seen.append(np.array(result))
        return result

    return record


def run(args: argparse.Namespace) -> dict:
    recognizer = EmotionRecognizer()  # the shipped model and the default detector, as `feredge predict`
    raw: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    model = recognizer.model
    model.runner.run = _recording(model.runner.run, raw)
    model.predict = _recording(model.predict, scores)
    faces = recognizer.predict(args.image)
    return {
        "model": model.name.rsplit("/", 1)[-1],
        "faces": [[list(face.box), face.label] for face in faces],
        "raw_outputs": [array.astype("<f4").tobytes().hex() for array in raw],
        "scores": [array.astype("<f4").tobytes().hex() for array in scores],
    }


def main(argv: Sequence[str] | None = None) -> int:
    print(json.dumps(run(parse_args(argv)), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
