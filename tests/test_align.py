"""Landmark alignment: a known similarity is recovered and the landmarks land on the template."""

from __future__ import annotations

import numpy as np
import pytest

from feredge.edge.align import TEMPLATES, align_detected, align_face, framed_template, similarity_transform
from feredge.edge.errors import DataError, OptionError

pytestmark = pytest.mark.edge


def similarity(angle_deg: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    rotation = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return np.hstack([rotation, np.array(shift)[:, None]])


def test_similarity_transform_recovers_a_known_one() -> None:
    points = np.random.default_rng(0).uniform(0, 100, (5, 2))
    known = similarity(23.0, 1.7, (12.0, -40.0))
    moved = points @ known[:, :2].T + known[:, 2]
    assert np.allclose(similarity_transform(points, moved), known, atol=1e-9)


def test_aligned_crop_puts_the_landmarks_on_the_template() -> None:
    _, template = TEMPLATES["yunet"]
    size = 96
    # The template's points, turned 20 degrees, scaled 2.5x and moved into a bigger image: the landmarks.
    known = similarity(20.0, 2.5, (150.0, 60.0))
    landmarks = (template * size) @ known[:, :2].T + known[:, 2]
    image = np.zeros((480, 640), np.uint8)
    for x, y in landmarks:
        image[round(y) - 2 : round(y) + 3, round(x) - 2 : round(x) + 3] = 255
    crop = align_face(image, landmarks, template, size)
    assert crop.shape == (size, size)
    for x, y in template * size:
        window = crop[round(y) - 3 : round(y) + 4, round(x) - 3 : round(x) + 4]
        assert window.max() > 100, (x, y)
    assert crop.astype(int).sum() < 5 * 7 * 7 * 255  # nothing else is bright


def test_framing_a_template_grows_and_shifts_it() -> None:
    _, template = TEMPLATES["blazeface"]
    assert np.allclose(framed_template(template), template)
    wider = framed_template(template, margin=0.5)
    assert np.allclose(wider - 0.5, (template - 0.5) / 2)
    lower = framed_template(template, offset=0.1)
    assert np.allclose(lower[:, 1], template[:, 1] - 0.1) and np.allclose(lower[:, 0], template[:, 0])


def test_align_detected_uses_the_detectors_points_and_refuses_unknown_ones() -> None:
    image = np.full((100, 100, 3), 50, np.uint8)
    landmarks = np.array([(30, 40), (70, 40), (50, 60), (50, 75), (10, 50), (90, 50)], np.float32)
    assert align_detected(image, "blazeface", landmarks, 64).shape == (64, 64, 3)
    with pytest.raises(OptionError, match="no alignment template for detector 'haar'"):
        align_detected(image, "haar", landmarks, 64)
    with pytest.raises(DataError, match="matching"):
        similarity_transform(landmarks[:3], landmarks[:4])
