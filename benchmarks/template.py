"""Measure the landmark templates of ``feredge.edge.align`` on FER2013's own training faces.

    python -m feredge.benchmarks.template ../shared/data/fer2013/train --detector yunet --faces 3000

A 48x48 FER2013 crop is too small and too tightly framed for a detector, so each is padded with its
own border (replicated, half a side each way) and upscaled, the detector runs on that, and the
landmarks of its largest face are mapped back to crop units. The median over the faces found is the
template: where the training faces have their eyes, nose and mouth. It is made mirror-symmetric
(averaged with its mirror image), because training flips faces and the model saw both. It prints the constants to paste
into ``edge/align.py`` and how many faces it found.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from feredge.edge.decode import IMAGE_SUFFIXES, decode_image
from feredge.edge.detectors import DETECTORS, detect_faces, make_detector

PAD = 0.5  # share of the side added on each edge
UPSCALE = 3
# Landmarks used for alignment: BlazeFace's ear tragions move with every turn of the head.
USED_POINTS = {"yunet": (0, 1, 2, 3, 4), "blazeface": (0, 1, 2, 3)}
# Each landmark's mirror image: the eyes (and YuNet's mouth corners, BlazeFace's ears) swap sides.
MIRROR = {"yunet": (1, 0, 2, 4, 3), "blazeface": (1, 0, 2, 3, 5, 4)}


def sample_faces(root: Path, count: int, seed: int) -> list[Path]:
    """``count`` image files under ``root`` (any depth), drawn at random with ``seed``."""
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    random.Random(seed).shuffle(files)
    return files[:count]


def crop_landmarks(detector, crop: np.ndarray) -> np.ndarray | None:
    """Landmarks of the largest face in a padded, upscaled copy of ``crop``, in crop units; None if none."""
    side = crop.shape[0]
    pad = round(side * PAD)
    padded = cv2.copyMakeBorder(crop, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    big = cv2.resize(padded, None, fx=UPSCALE, fy=UPSCALE, interpolation=cv2.INTER_CUBIC)
    faces = [face for face in detect_faces(detector, big) if face.landmarks is not None]
    if not faces:
        return None
    return (faces[0].landmarks / UPSCALE - pad) / side


def measure(root: Path, detector_name: str, count: int, seed: int) -> tuple[np.ndarray, int, int]:
    """(mirror-symmetric median landmarks in crop units, faces found, faces tried)."""
    detector = make_detector(detector_name, min_face=0, max_side=10_000, detect_size=None)
    points = []
    files = sample_faces(root, count, seed)
    for path in files:
        found = crop_landmarks(detector, decode_image(path))
        if found is not None:
            points.append(found)
    if not points:
        raise SystemExit(f"{detector_name} found no face in {len(files)} images under {root}")
    median = np.median(np.stack(points), axis=0)
    mirrored = median[list(MIRROR[detector_name])] * (-1.0, 1.0) + (1.0, 0.0)
    return (median + mirrored) / 2.0, len(points), len(files)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m feredge.benchmarks.template", description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="FER2013 training faces (folders per class)")
    landmark_detectors = [name for name, entry in DETECTORS.items() if entry.landmarks]
    parser.add_argument("--detector", choices=landmark_detectors, default=landmark_detectors[0])
    parser.add_argument("--faces", type=int, default=3000, help="faces to sample (default: 3000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    median, found, tried = measure(args.data, args.detector, args.faces, args.seed)
    used = USED_POINTS[args.detector]
    rows = ", ".join(f"({x:.4f}, {y:.4f})" for x, y in median[list(used)])
    print(f"# {args.detector}: {found} of {tried} faces found ({found / tried:.1%}), seed {args.seed}")
    print(f'"{args.detector}": ({used}, np.array([{rows}])),')
    return 0


if __name__ == "__main__":
    sys.exit(main())
