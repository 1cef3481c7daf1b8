"""MediaPipe BlazeFace (short range) on the LiteRT interpreter: SSD anchors, box decoding and NMS.

The model (``face_detection_short_range.tflite``, Apache-2.0) takes a 1x128x128x3 RGB float input in
[-1, 1] and returns 896 anchors x 16 regressors (box centre and size, then six keypoints: the eyes,
nose tip, mouth centre and both ear tragions) and 896 logits. It has no post-processing inside, so
this module reproduces MediaPipe's graph (``face_detection_short_range.pbtxt``): the anchors of
``SsdAnchorsCalculator``, the decoding of ``TensorsToDetectionsCalculator`` and weighted NMS. It runs
on the same interpreter as the emotion model, so a device needs no OpenCV DNN for it.

The frame is letterboxed to a square first (as MediaPipe's ``keep_aspect_ratio``), so a 640x480
frame becomes 128x96 pixels of content: faces under about 40 px in such a frame are too small for it
(it is made for faces within about 2 m of a phone camera).
"""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np

from feredge.edge.decode import check_model_file
from feredge.edge.detectors import Found, iou
from feredge.edge.errors import ModelLoadError
from feredge.edge.tflite_runner import create_interpreter

INPUT_SIZE = 128
STRIDES = (8, 16, 16, 16)
ANCHOR_OFFSET = 0.5
NUM_ANCHORS = 896
NUM_COORDS = 16
NUM_KEYPOINTS = 6
SCORE_CLIP = 100.0
# Names of the keypoints in output order; "right" is the subject's right (the left of the image).
KEYPOINTS = ("right_eye", "left_eye", "nose_tip", "mouth_center", "right_ear", "left_ear")


def ssd_anchors(input_size: int = INPUT_SIZE, strides: tuple[int, ...] = STRIDES) -> np.ndarray:
    """(N, 2) anchor centres in [0, 1], as MediaPipe's ``SsdAnchorsCalculator`` lays them out.

    Consecutive layers with the same stride share one grid, each contributing two anchors per cell
    (aspect ratio 1 and its interpolated scale); with ``fixed_anchor_size`` every anchor is 1 x 1, so
    only the centres matter. Strides 8, 16, 16, 16 give 16x16x2 + 8x8x6 = 896 anchors.
    """
    centres = []
    layer = 0
    while layer < len(strides):
        stride = strides[layer]
        repeats = 0
        while layer < len(strides) and strides[layer] == stride:
            repeats += 1
            layer += 1
        cells = -(-input_size // stride)  # ceil
        ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
        grid = np.stack([(xs + ANCHOR_OFFSET) / cells, (ys + ANCHOR_OFFSET) / cells], axis=-1).reshape(-1, 1, 2)
        centres.append(np.repeat(grid, 2 * repeats, axis=1).reshape(-1, 2))
    return np.concatenate(centres).astype(np.float32)


def decode(regressors: np.ndarray, anchors: np.ndarray, input_size: int = INPUT_SIZE) -> np.ndarray:
    """(N, 16) raw regressors -> (N, 16) in [0, 1] units: x0, y0, x1, y1, then six (x, y) keypoints."""
    raw = regressors / float(input_size)
    centre = raw[:, 0:2] + anchors
    half = raw[:, 2:4] / 2.0
    points = raw[:, 4:].reshape(-1, NUM_KEYPOINTS, 2) + anchors[:, None, :]
    return np.concatenate([centre - half, centre + half, points.reshape(-1, 2 * NUM_KEYPOINTS)], axis=1)


def sigmoid_scores(logits: np.ndarray) -> np.ndarray:
    """Scores of the raw logits, clipped to +-100 first as MediaPipe does (``score_clipping_thresh``)."""
    return 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -SCORE_CLIP, SCORE_CLIP)))


def weighted_nms(decoded: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[tuple[np.ndarray, float]]:
    """MediaPipe's weighted NMS: each cluster of boxes overlapping the best one is averaged by score.

    BlazeFace fires on several neighbouring anchors per face; averaging them steadies the box and the
    keypoints from frame to frame more than keeping the single best anchor.
    """
    order = np.argsort(-scores)
    decoded, scores = decoded[order], scores[order]
    boxes = np.concatenate([decoded[:, :2], decoded[:, 2:4] - decoded[:, :2]], axis=1)  # x0, y0, x1, y1 -> x, y, w, h
    remaining = np.ones(len(scores), bool)
    kept = []
    for i in range(len(scores)):
        if not remaining[i]:
            continue
        cluster = remaining & (iou(boxes[i], boxes) > iou_threshold)
        cluster[i] = True
        weights = scores[cluster]
        kept.append(((decoded[cluster] * weights[:, None]).sum(0) / weights.sum(), float(scores[i])))
        remaining &= ~cluster
    return kept


class BlazeFaceModel:
    """The BlazeFace network: a BGR or gray image in, its faces as ``Found`` in the image's pixels out.

    Boxes are (x, y, w, h) floats and keypoints (6, 2) per face, as ``BlazeFaceDetector`` hands them on.
    One interpreter is not safe to invoke from two threads, so calls are serialized.
    """

    def __init__(
        self, path: str | Path, score_threshold: float = 0.5, iou_threshold: float = 0.3, threads: int = 1
    ) -> None:
        path = Path(path)
        check_model_file(path, "detector model")
        self._interpreter, _ = create_interpreter(path.read_bytes(), threads, str(path))
        inputs = self._interpreter.get_input_details()
        outputs = {tuple(o["shape"][1:]): o["index"] for o in self._interpreter.get_output_details()}
        if len(inputs) != 1 or tuple(inputs[0]["shape"]) != (1, INPUT_SIZE, INPUT_SIZE, 3):
            raise ModelLoadError(f"{path}: not a BlazeFace short-range model (expected one 1x128x128x3 input)")
        if inputs[0]["dtype"] != np.float32:  # letterbox() feeds floats in [-1, 1]
            raise ModelLoadError(f"{path}: not a BlazeFace short-range model (expected a float32 input)")
        if set(outputs) != {(NUM_ANCHORS, NUM_COORDS), (NUM_ANCHORS, 1)}:
            raise ModelLoadError(f"{path}: not a BlazeFace short-range model (expected 896x16 and 896x1 outputs)")
        self._input = inputs[0]["index"]
        self._regressors = outputs[NUM_ANCHORS, NUM_COORDS]
        self._scores = outputs[NUM_ANCHORS, 1]
        self._anchors = ssd_anchors()
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self._lock = threading.Lock()

    def __call__(self, image: np.ndarray) -> Found:
        tensor, side, (pad_x, pad_y) = letterbox(image, INPUT_SIZE)
        with self._lock:
            self._interpreter.set_tensor(self._input, tensor)
            self._interpreter.invoke()
            regressors = self._interpreter.get_tensor(self._regressors)[0]
            logits = self._interpreter.get_tensor(self._scores)[0, :, 0]
        scores = sigmoid_scores(logits)
        keep = scores >= self.score_threshold
        kept = weighted_nms(decode(regressors[keep], self._anchors[keep]), scores[keep], self.iou_threshold)
        if not kept:
            return Found(np.zeros((0, 4)), np.zeros(0), np.zeros((0, NUM_KEYPOINTS, 2)))
        pixels = np.stack([row for row, _ in kept]).reshape(len(kept), -1, 2) * side - (pad_x, pad_y)
        corners = pixels[:, :2].reshape(-1, 4)
        boxes = np.concatenate([corners[:, :2], corners[:, 2:] - corners[:, :2]], axis=1)
        return Found(boxes, np.array([score for _, score in kept]), pixels[:, 2:])


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float, tuple[float, float]]:
    """(1, size, size, 3) RGB float in [-1, 1] of ``image`` centred on a black square, the square's side
    in image pixels and the padding (x, y) added on the left and top, to map [0, 1] back to pixels."""
    height, width = image.shape[:2]
    side = max(height, width)
    scale = size / side
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    small = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    rgb = cv2.cvtColor(small, cv2.COLOR_GRAY2RGB if small.ndim == 2 else cv2.COLOR_BGR2RGB)
    canvas = np.full((size, size, 3), -1.0, np.float32)  # black in [-1, 1]
    left, top = (size - new_w) // 2, (size - new_h) // 2
    canvas[top : top + new_h, left : left + new_w] = rgb * np.float32(2.0 / 255.0) - 1.0
    return canvas[None], side, (left / scale, top / scale)
