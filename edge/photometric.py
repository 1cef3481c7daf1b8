"""Photometric normalization of the gray face crop, part of the input contract.

Real photos are cleaner, smoother and more evenly lit than FER2013's web crops, and a model trained
on the raw crops reads them as "neutral". Local contrast equalization (CLAHE) on the small gray crop
makes both look alike. It runs on the uint8 crop after resizing, in training, calibration, evaluation
and the runtime alike, and the model's metadata names it, so no path can skip or repeat it.
"""

from __future__ import annotations

import cv2
import numpy as np

PHOTOMETRICS = ("none", "clahe")
CLAHE_CLIP = 2.0
CLAHE_GRID = (4, 4)


def check_photometric(name: str) -> str:
    if name not in PHOTOMETRICS:
        raise ValueError(f"unknown photometric normalization {name!r}; choose from {', '.join(PHOTOMETRICS)}")
    return name


def apply_photometric(faces: np.ndarray, name: str) -> np.ndarray:
    """uint8 gray faces, one (S, S) or a stack (N, S, S), normalized by ``name``; same shape and dtype."""
    check_photometric(name)
    if name == "none":
        return faces
    clahe = cv2.createCLAHE(clipLimit=CLAHE_CLIP, tileGridSize=CLAHE_GRID)
    if faces.ndim == 2:
        return clahe.apply(np.ascontiguousarray(faces))
    return np.stack([clahe.apply(np.ascontiguousarray(face)) for face in faces]) if len(faces) else faces
