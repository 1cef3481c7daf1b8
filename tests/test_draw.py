"""The annotated picture numbers faces as ``feredge predict``'s table and the demo's charts do."""

from __future__ import annotations

import numpy as np
import pytest

from feredge.edge.draw import annotate, face_caption
from feredge.edge.recognizer import Face

pytestmark = pytest.mark.edge


def _face(x: int, track_id: int | None = None) -> Face:
    return Face((x, 10, 20, 20), "happy", 0.87, {"happy": 0.87, "sad": 0.13}, track_id)


def test_photo_faces_are_numbered_in_their_order_and_tracked_faces_by_track_id():
    faces = [_face(10), _face(50)]
    assert [face_caption(face, n) for n, face in enumerate(faces, 1)] == ["1: happy 87%", "2: happy 87%"]
    assert face_caption(_face(10, track_id=7), 1) == "#7 happy 87%"


def test_annotate_draws_every_face():
    image = np.zeros((60, 100, 3), np.uint8)
    drawn = annotate(image, [_face(10), _face(60)])
    assert drawn is image and drawn[10:31, 10:31].any() and drawn[10:31, 60:81].any()
