"""Landmark alignment: rotate, scale and shift a face so its landmarks land on a template.

A detector's box frames each face a little differently (tilt, how much forehead or chin); the
landmarks of YuNet and BlazeFace say where the eyes, nose and mouth are. A similarity transform
(rotation, uniform scale, shift; no shear, so the face keeps its proportions) that moves them onto
where FER2013's own training faces have them gives a crop framed like a training crop.

The templates below are in units of the square crop's side ((0, 0) its top-left, (1, 1) its
bottom-right), measured by ``python -m feredge.benchmarks.template`` on FER2013 training faces.
"""

from __future__ import annotations

import cv2
import numpy as np

from feredge.edge.errors import DataError, OptionError

# detector -> (indices of the detector's landmarks used, template points in crop units).
# Measured on 3,000 FER2013 training faces (seed 0), mirror-symmetrized: YuNet (score 0.7) found
# 2,436 (81%), BlazeFace 2,750 (92%). Both put the eyes at 0.317 / 0.683 across and 0.39 down.
TEMPLATES: dict[str, tuple[tuple[int, ...], np.ndarray]] = {
    # right eye, left eye, nose tip, right and left mouth corner
    "yunet": (
        (0, 1, 2, 3, 4),
        np.array([(0.3162, 0.3990), (0.6838, 0.3990), (0.5000, 0.5968), (0.3503, 0.7404), (0.6497, 0.7404)]),
    ),
    # right eye, left eye, nose tip, mouth centre (the ear tragions move with every turn of the head)
    "blazeface": ((0, 1, 2, 3), np.array([(0.3178, 0.3924), (0.6822, 0.3924), (0.5000, 0.5993), (0.5000, 0.7683)])),
}


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """2x3 least-squares similarity transform taking ``source`` (K, 2) points onto ``target`` (K, 2).

    Umeyama's closed form: unlike a RANSAC fit it uses every point and is deterministic, and with
    five or six points there is no outlier to reject.
    """
    source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
    if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 2 or len(source) < 2:
        raise DataError(f"need two matching (K >= 2, 2) point sets, got {source.shape} and {target.shape}")
    mean_s, mean_t = source.mean(0), target.mean(0)
    s, t = source - mean_s, target - mean_t
    covariance = t.T @ s / len(source)
    u, d, vt = np.linalg.svd(covariance)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1.0
    rotation = u @ sign @ vt
    variance = (s**2).sum() / len(source)
    scale = float(np.trace(np.diag(d) @ sign) / variance) if variance > 0 else 1.0
    shift = mean_t - scale * rotation @ mean_s
    return np.hstack([scale * rotation, shift[:, None]])


def align_face(image: np.ndarray, landmarks: np.ndarray, template: np.ndarray, size: int) -> np.ndarray:
    """A ``size`` x ``size`` crop of ``image`` in which ``landmarks`` (K, 2 pixels) sit on ``template``
    (K, 2 in crop units). Pixels beyond the image repeat its border, as a clipped box crop would."""
    matrix = similarity_transform(landmarks, np.asarray(template, np.float64) * size)
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def framed_template(template: np.ndarray, margin: float = 0.0, offset: float = 0.0) -> np.ndarray:
    """``template`` for a crop grown by ``margin`` of its side on each edge and moved down by ``offset``
    of it, as ``square_box`` frames a box: margin 0 and offset 0 is the training faces' framing."""
    grow = 1.0 + 2.0 * margin
    return (np.asarray(template, np.float64) - 0.5) / grow + 0.5 - np.array([0.0, offset / grow])


def align_detected(
    image: np.ndarray, detector: str, landmarks: np.ndarray, size: int, margin: float = 0.0, offset: float = 0.0
) -> np.ndarray:
    """``align_face`` with the template measured for ``detector``'s landmarks, framed by ``margin``/``offset``."""
    if detector not in TEMPLATES:
        raise OptionError(f"no alignment template for detector {detector!r}; have {', '.join(TEMPLATES)}")
    indices, template = TEMPLATES[detector]
    return align_face(image, np.asarray(landmarks)[list(indices)], framed_template(template, margin, offset), size)
