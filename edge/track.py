"""Face tracking across video frames: IoU matching on predicted boxes and score smoothing per face.

Each tracked face keeps an exponential moving average of its scores, so a label changes only when
the evidence holds for a few frames instead of flickering with every frame's noise. Each track also
keeps its box's velocity: a face the detector misses for a few frames (turned away, or hidden while
another face passes in front of it) is matched where it should be by then, not where it was last
seen, so it keeps its id and its smoothed scores; and two faces that cross keep theirs. A face that
moved too far for its boxes to overlap (fast motion while the detector ran only every few frames,
before the track knew its velocity) is matched by the distance of the centres instead, but only to
a track seen in the last update: a track lost for a while is never chased across the frame.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from feredge.edge.detectors import Box, iou
from feredge.edge.errors import OptionError
from feredge.edge.recognizer import Face, face_from_scores


def _centre(box: Box) -> np.ndarray:
    return np.array([box[0] + box[2] / 2.0, box[1] + box[3] / 2.0])


def centre_shift(a: Box, b: Box) -> float:
    """Distance between the boxes' centres in sides of ``a`` (0: same centre)."""
    return float(np.linalg.norm(_centre(a) - _centre(b))) / max(a[2], a[3], 1)


def similar_size(a: Box, b: Box, ratio: float = 1.5) -> bool:
    return max(a[2], b[2]) <= ratio * min(a[2], b[2])


def greedy_match(ranked: Iterable[tuple[float, int, int]], accept: Callable[[float], bool]) -> dict[int, int]:
    """One-to-one pairs ``{a: b}`` from candidates ``(measure, a, b)`` ranked best first: each is taken
    when neither side is taken yet, until the first whose measure ``accept`` refuses.

    Greedy, not optimal (Hungarian): faces are few and rarely contend, so taking the best pair first is enough."""
    pairs: dict[int, int] = {}
    taken: set[int] = set()
    for measure, a, b in ranked:
        if not accept(measure):
            break
        if a not in pairs and b not in taken:
            pairs[a] = b
            taken.add(b)
    return pairs


@dataclass
class _Track:
    id: int
    box: Box  # where the face was last seen, or carried to on a frame without detection
    scores: np.ndarray
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # box centre, pixels per update
    missed: int = 0
    hits: int = 1  # detections
    anchor: Box = field(init=False)  # the last detected box: the velocity is measured from it
    age: int = 0  # updates since ``anchor``

    def __post_init__(self) -> None:
        self.anchor = self.box

    def predicted(self, ahead: int) -> Box:
        """The box moved on by ``ahead`` updates at the track's velocity."""
        dx, dy = np.rint(self.velocity * ahead).astype(int)
        return (self.box[0] + int(dx), self.box[1] + int(dy), self.box[2], self.box[3])

    def observe(self, box: Box, detected: bool) -> None:
        """Matched to ``box``: a detection updates the velocity over the updates since the last
        one; a carried box (no detection ran) only moves the track, since it is the track's own guess."""
        if detected:
            step = (_centre(box) - _centre(self.anchor)) / max(self.age, 1)
            self.velocity = step if self.hits == 1 else 0.5 * self.velocity + 0.5 * step
            self.anchor, self.age, self.hits = box, 0, self.hits + 1
        self.box, self.missed = box, 0


def check_smoothing(alpha: float) -> None:
    """The one range check of the score smoothing, for callers that must refuse it before opening a source."""
    if not 0.0 < alpha <= 1.0:
        raise OptionError(f"smoothing alpha must be in (0, 1], got {alpha}")


class FaceTracker:
    """Matches each frame's faces to tracks by IoU with their predicted boxes and smooths their scores.

    ``alpha`` is the weight of the newest frame (1 = no smoothing). A track that finds no face keeps
    its state, moving on at its velocity, for ``max_missed`` updates, so a face the detector drops
    for a moment resumes its smoothed scores and its id. A track seen in the last update and a face
    left without an overlap of ``iou_threshold`` are paired when their centres are less than
    ``max_shift`` box sides apart and their sizes are alike. ``min_confidence`` labels a face whose
    best smoothed score is below it ``"uncertain"``.
    """

    def __init__(
        self,
        labels: Sequence[str],
        alpha: float = 0.4,
        iou_threshold: float = 0.3,
        max_missed: int = 8,
        min_confidence: float = 0.0,
        max_shift: float = 1.0,
    ) -> None:
        check_smoothing(alpha)
        self.labels = tuple(labels)
        self.alpha = alpha
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self.min_confidence = min_confidence
        self.max_shift = max_shift
        self._tracks: list[_Track] = []
        self._ids = itertools.count(1)

    @property
    def boxes(self) -> list[Box]:
        """Boxes of the faces seen in the last update."""
        return [t.box for t in self._tracks if t.missed == 0]

    @property
    def next_boxes(self) -> list[Box]:
        """Where the faces seen in the last update should be in the next frame: the boxes to carry
        to a frame without detection."""
        return [t.predicted(1) for t in self._tracks if t.missed == 0]

    def update(self, faces: Sequence[Face], detected: bool = True) -> list[Face]:
        """The faces, in the same order, with smoothed scores, labels and ``track_id`` set.

        ``detected=False`` says the boxes are the carried ``next_boxes``, not a detector's: they
        move the tracks without teaching them a velocity."""
        for track in self._tracks:
            track.age += 1
        overlaps = sorted(
            (
                (float(iou(t.predicted(t.missed + 1), f.box)), ti, fi)
                for ti, t in enumerate(self._tracks)
                for fi, f in enumerate(faces)
            ),
            reverse=True,
        )
        face_of = greedy_match(overlaps, lambda overlap: overlap >= self.iou_threshold)
        matched_faces = set(face_of.values())
        near = sorted(
            (centre_shift(predicted, f.box), ti, fi)
            for ti, t in enumerate(self._tracks)
            if ti not in face_of and t.missed == 0  # a track unseen for a while is not chased across the frame
            for predicted in [t.predicted(t.missed + 1)]
            for fi, f in enumerate(faces)
            if fi not in matched_faces and similar_size(predicted, f.box)
        )
        face_of |= greedy_match(near, lambda shift: shift < self.max_shift)
        track_of = {fi: self._tracks[ti] for ti, fi in face_of.items()}
        for ti, track in enumerate(self._tracks):
            if ti not in face_of:
                track.missed += 1
        self._tracks = [t for t in self._tracks if t.missed <= self.max_missed]
        smoothed = []
        for fi, face in enumerate(faces):
            scores = np.array([face.scores[label] for label in self.labels], np.float32)
            found = track_of.get(fi)
            if found is None:
                track = _Track(next(self._ids), face.box, scores)
                self._tracks.append(track)
            else:
                track = found
                track.scores = self.alpha * scores + (1.0 - self.alpha) * track.scores
                track.observe(face.box, detected)
            smoothed.append(face_from_scores(track.box, self.labels, track.scores, track.id, self.min_confidence))
        return smoothed
