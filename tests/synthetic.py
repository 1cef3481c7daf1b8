"""Small generated face-like data sets in every layout feredge reads; nothing comes from real data."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np


def class_image(index: int, rng: np.random.Generator, size: int = 48) -> np.ndarray:
    """A gray image whose stripe frequency encodes the class, plus noise: learnable, not trivial."""
    rows = np.arange(size)[:, None]
    stripes = 127 + 90 * np.sin(rows * (index + 1) * np.pi / size) * np.ones((1, size))
    return np.clip(stripes + rng.normal(0, 20, (size, size)), 0, 255).astype(np.uint8)


def write_class_folders(root: Path, labels, per_class: int, seed: int = 0, suffix: str = ".png") -> Path:
    rng = np.random.default_rng(seed)
    for i, label in enumerate(labels):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            cv2.imwrite(str(folder / f"{label}_{j}{suffix}"), class_image(i, rng))
    return root


def write_split_folders(root: Path, labels, per_class: int = 6, seed: int = 0, val_dir: str = "val") -> Path:
    write_class_folders(root / "train", labels, per_class, seed)
    write_class_folders(root / val_dir, labels, max(2, per_class // 2), seed + 1)
    return root


def write_fer_csv(path: Path, per_class: int = 6, seed: int = 0) -> Path:
    """FER2013-style CSV: emotion index in FER2013 order, space-separated pixels, Usage column."""
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["emotion", "pixels", "Usage"])
        for usage, n in (("Training", per_class), ("PublicTest", 2), ("PrivateTest", 2)):
            for emotion in range(7):
                for _ in range(n):
                    writer.writerow([emotion, " ".join(map(str, class_image(emotion, rng).ravel())), usage])
    return path


# FER+ vote rows (neutral, happy, surprise, sad, angry, disgust, fear, contempt, unknown, not-a-face) whose
# paper-rule majority is each FER2013 class in turn, then rows every rule drops
FERPLUS_VOTES = {
    "angry": (1, 0, 0, 1, 8, 0, 0, 0, 0, 0),
    "disgust": (0, 0, 0, 2, 1, 7, 0, 0, 0, 0),
    "fear": (1, 0, 2, 0, 0, 0, 7, 0, 0, 0),
    "happy": (1, 9, 0, 0, 0, 0, 0, 0, 0, 0),
    "sad": (3, 0, 0, 6, 1, 0, 0, 0, 0, 0),
    "surprise": (0, 1, 8, 0, 0, 0, 1, 0, 0, 0),
    "neutral": (7, 1, 0, 2, 0, 0, 0, 0, 0, 0),
}
FERPLUS_DROPPED = {
    "unknown": (2, 0, 0, 0, 0, 0, 0, 0, 8, 0),  # 'unknown' wins
    "tie": (4, 4, 0, 0, 0, 0, 0, 0, 2, 0),  # no class above half: the paper drops it in majority mode
}
FER2013_ORDER = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def ferplus_rows(per_class: int) -> list[tuple[int, tuple[int, ...]]]:
    """(FER2013 class index of the drawn face, votes) per face: ``per_class`` per class, then the dropped rows."""
    rows = [(i, FERPLUS_VOTES[label]) for _ in range(per_class) for i, label in enumerate(FER2013_ORDER)]
    return rows + [(6, votes) for votes in FERPLUS_DROPPED.values()]


def write_ferplus_folders(root: Path, per_class: int = 4, seed: int = 0) -> Path:
    """Microsoft's FER+ training layout: FER2013Train|FER2013Valid/label.csv beside ferNNNNNNN.png faces."""
    rng = np.random.default_rng(seed)
    number = 0
    for split, n in (("FER2013Train", per_class), ("FER2013Valid", max(2, per_class // 2))):
        folder = root / split
        folder.mkdir(parents=True)
        with open(folder / "label.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            for index, votes in ferplus_rows(n):
                name = f"fer{number:07d}.png"
                number += 1
                cv2.imwrite(str(folder / name), class_image(index, rng))
                writer.writerow([name, "(0, 0, 48, 48)", *votes])
    return root


def write_ferplus_csv(fer_csv: Path, votes_csv: Path, per_class: int = 4, seed: int = 0) -> tuple[Path, Path]:
    """fer2013.csv and fer2013new.csv that line up row by row; one face FER+ left out (empty name)."""
    rng = np.random.default_rng(seed)
    with open(fer_csv, "w", newline="") as faces, open(votes_csv, "w", newline="") as votes_fh:
        face_writer, vote_writer = csv.writer(faces), csv.writer(votes_fh)
        face_writer.writerow(["emotion", "pixels", "Usage"])
        vote_writer.writerow(["Usage", "Image name", "neutral", "happiness", "surprise", "sadness", "anger",
                              "disgust", "fear", "contempt", "unknown", "NF"])  # fmt: skip
        number = 0
        for usage, n in (("Training", per_class), ("PublicTest", 2)):
            for index, row_votes in [*ferplus_rows(n), (0, None)]:
                face_writer.writerow([index, " ".join(map(str, class_image(index, rng).ravel())), usage])
                name = f"fer{number:07d}.png" if row_votes is not None else ""
                vote_writer.writerow([usage, name, *(row_votes or (0,) * 10)])
                number += 1
    return fer_csv, votes_csv


def frame_count(path: Path) -> int:
    """Frames OpenCV can read back from a written video."""
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count
