"""The photometric step of the contract: recorded in metadata, applied once, refused when unknown."""

from __future__ import annotations

import numpy as np
import pytest

from feredge.edge.errors import MetadataError
from feredge.edge.labels import FER2013
from feredge.edge.metadata import ModelMetadata
from feredge.edge.photometric import apply_photometric
from feredge.edge.preprocess import PreprocessSpec, crop_face, prepare_face, preprocess_face, square_box

pytestmark = pytest.mark.edge


def _low_contrast_face() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (110 + rng.integers(0, 20, (60, 60))).astype(np.uint8)


def test_clahe_spreads_a_low_contrast_face_and_none_is_identity():
    face = _low_contrast_face()
    assert np.array_equal(apply_photometric(face, "none"), face)
    spread = apply_photometric(prepare_face(face, 48), "clahe")
    assert spread.dtype == np.uint8 and spread.shape == (48, 48)
    assert spread.std() > 2 * prepare_face(face, 48).std()


def test_batch_and_single_face_give_the_same_pixels():
    faces = np.stack([prepare_face(_low_contrast_face(), 48)] * 3)
    assert np.array_equal(apply_photometric(faces, "clahe")[1], apply_photometric(faces[1], "clahe"))


def test_preprocess_applies_the_spec_photometric_once():
    face = _low_contrast_face()
    plain = preprocess_face(face, PreprocessSpec(48, 1, "raw"))
    clahe = preprocess_face(face, PreprocessSpec(48, 1, "raw", "clahe"))
    expected = apply_photometric(prepare_face(face, 48), "clahe").astype(np.float32)
    assert np.array_equal(clahe[..., 0], expected)
    assert not np.array_equal(plain, clahe)


def test_unknown_photometric_is_a_metadata_error():
    with pytest.raises(MetadataError, match="photometric"):
        ModelMetadata(labels=FER2013, photometric="sepia")
    with pytest.raises(ValueError, match="sepia"):
        PreprocessSpec(photometric="sepia")


def test_framing_per_detector_falls_back_to_crop_margin():
    meta = ModelMetadata(labels=FER2013, crop_margin=0.1, framing={"yunet": {"margin": -0.05, "offset": 0.04}})
    assert meta.framing_for("yunet") == (-0.05, 0.04)
    assert meta.framing_for("haar") == (0.1, 0.0)
    again = ModelMetadata.from_json(meta.to_json())
    assert again.framing_for("yunet") == (-0.05, 0.04) and again.schema_version == 2
    with pytest.raises(MetadataError, match="offset"):
        ModelMetadata(labels=FER2013, framing={"yunet": {"offset": 0.9}})
    with pytest.raises(MetadataError, match="margin"):
        ModelMetadata(labels=FER2013, framing={"yunet": {"margin": "wide"}})


def test_negative_margin_and_offset_move_the_crop():
    image = np.zeros((200, 200), np.uint8)
    assert square_box((50, 50, 100, 100), -0.1, image.shape) == (60, 60, 80, 80)
    assert square_box((50, 50, 100, 100), 0.0, image.shape, offset=0.1) == (50, 60, 100, 100)
    assert crop_face(image, (50, 50, 100, 100), -0.1).shape == (80, 80)


def test_a_newer_schema_is_refused_rather_than_half_read():
    data = ModelMetadata(labels=FER2013).to_dict()
    data["schema_version"] = 3
    with pytest.raises(MetadataError, match="newer"):
        ModelMetadata.from_dict(data)


def test_stacked_views_are_each_single_view_as_a_channel():
    face = _low_contrast_face()
    spec = PreprocessSpec(48, 2, "unit", "none+clahe")
    stacked = preprocess_face(face, spec)
    assert stacked.shape == (48, 48, 2)
    for channel, view in enumerate(("none", "clahe")):
        np.testing.assert_array_equal(
            stacked[..., channel], preprocess_face(face, PreprocessSpec(48, 1, "unit", view))[..., 0]
        )
    batch = np.stack([prepare_face(face, 48)] * 2)
    assert apply_photometric(batch, "clahe+none").shape == (2, 48, 48, 2)


@pytest.mark.parametrize(
    ("channels", "photometric", "problem"),
    [
        (1, "none+clahe", "channels must be 2"),
        (2, "clahe+clahe", "unknown"),
        (2, "none+", "unknown"),
        (2, "clahe", "1 or 3"),
    ],
)
def test_stacked_views_need_one_channel_each_and_distinct_names(channels, photometric, problem):
    with pytest.raises(MetadataError, match=problem):
        ModelMetadata(labels=FER2013, channels=channels, photometric=photometric)


def test_stacked_views_each_take_the_gray_normalization_constants():
    face = _low_contrast_face()
    stacked = preprocess_face(face, PreprocessSpec(48, 2, "imagenet", "clahe+none"))
    gray = preprocess_face(face, PreprocessSpec(48, 1, "imagenet"))
    np.testing.assert_allclose(stacked[..., 1], gray[..., 0], rtol=1e-6)
