"""Photometric normalization of the gray face crop, part of the input contract.

Real photos are cleaner, smoother and more evenly lit than FER2013's web crops, and a model trained
on the raw crops reads them as "neutral". Local contrast equalization (CLAHE) on the small gray crop
makes both look alike. It runs on the uint8 crop after resizing, in training, calibration, evaluation
and the runtime alike, and the model's metadata names it, so no path can skip or repeat it.

A "+"-joined name such as ``none+clahe`` stacks several views of one crop as channels, in that
order. An ensemble of members trained on different views takes them this way in one input tensor,
so the views are made by this one implementation and not inside the graph (CLAHE is no graph op).
"""

from __future__ import annotations

import cv2
import numpy as np

PHOTOMETRICS = ("none", "clahe")
CLAHE_CLIP = 2.0
CLAHE_GRID = (4, 4)


def photometric_views(name: str) -> tuple[str, ...]:
    """The single normalizations a (possibly "+"-joined) name stacks; raises ValueError for bad names."""
    views = tuple(name.split("+")) if isinstance(name, str) else ()
    if not views or any(view not in PHOTOMETRICS for view in views) or len(set(views)) != len(views):
        raise ValueError(
            f"unknown photometric normalization {name!r}; choose from {', '.join(PHOTOMETRICS)}, "
            "or join distinct ones with '+' to stack them as channels"
        )
    return views


def is_stacked(name: str) -> bool:
    """Whether a photometric name stacks several views (the one place that knows the "+" spelling)."""
    return "+" in name


def check_photometric(name: str) -> str:
    photometric_views(name)
    return name


def apply_photometric(faces: np.ndarray, name: str) -> np.ndarray:
    """uint8 gray faces, one (S, S) or a stack (N, S, S), normalized by ``name``; same shape and dtype.

    A stacked name returns its views on a new last axis: (S, S, V) or (N, S, S, V).
    """
    views = photometric_views(name)
    if len(views) > 1:
        return np.stack([_apply_one(faces, view) for view in views], axis=-1)
    return _apply_one(faces, name)


def _apply_one(faces: np.ndarray, name: str) -> np.ndarray:
    if name == "none":
        return faces
    clahe = cv2.createCLAHE(clipLimit=CLAHE_CLIP, tileGridSize=CLAHE_GRID)
    if faces.ndim == 2:
        return clahe.apply(np.ascontiguousarray(faces))
    return np.stack([clahe.apply(np.ascontiguousarray(face)) for face in faces]) if len(faces) else faces
