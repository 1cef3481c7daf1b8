"""``preprocess_faces``: a batch of crops in one step, bit for bit what ``preprocess_face`` gives each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from feredge.edge.model import load_model
from feredge.edge.preprocess import NORMALIZATIONS, PreprocessSpec, preprocess_face, preprocess_faces

pytestmark = pytest.mark.edge

FIXTURES = Path(__file__).parent / "fixtures"


def crops() -> list[np.ndarray]:
    """Colour and gray crops larger, smaller and exactly the size of the input, of uneven shapes."""
    rng = np.random.default_rng(0)
    shapes = [(120, 100, 3), (48, 48, 3), (30, 41), (48, 48), (200, 201, 3), (7, 9, 3)]
    return [rng.integers(0, 256, shape, dtype=np.uint8) for shape in shapes]


SPECS = [
    PreprocessSpec(48, channels, normalization, photometric)
    for normalization in NORMALIZATIONS
    for photometric, channels in (("none", 1), ("clahe", 1), ("none", 3), ("clahe", 3), ("none+clahe", 2))
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.normalization}-{s.photometric}-{s.channels}")
def test_the_batch_equals_each_face_bit_for_bit(spec) -> None:
    faces = crops()
    batch = preprocess_faces(faces, spec)
    assert batch.dtype == np.float32 and batch.shape == (len(faces), 48, 48, spec.channels)
    np.testing.assert_array_equal(batch, np.stack([preprocess_face(face, spec) for face in faces]))
    np.testing.assert_array_equal(preprocess_faces(faces[2:3], spec)[0], preprocess_face(faces[2], spec))


def test_no_crops_is_an_empty_batch_of_the_input_shape() -> None:
    assert preprocess_faces([], PreprocessSpec(40, 3)).shape == (0, 40, 40, 3)


def test_the_model_preprocesses_through_the_batch_step() -> None:
    model = load_model(FIXTURES / "int8.tflite")
    faces = crops()
    np.testing.assert_array_equal(model.preprocess(faces), preprocess_faces(faces, model.spec))
    assert model.preprocess([]).shape == (0, 48, 48, 1)
