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


def frame_count(path: Path) -> int:
    """Frames OpenCV can read back from a written video."""
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count
