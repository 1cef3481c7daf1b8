"""FER+ (Barsoum et al. 2016): ten annotators' votes per FER2013 face, in both layouts Microsoft documents.

- Folders: ``FER2013Train|FER2013Valid|FER2013Test/label.csv`` beside the face PNGs (the split comes
  from the folder name); a ``label.csv`` row is ``name, "(x, y, w, h)", 10 vote counts``.
- CSV: the original ``fer2013.csv`` with ``--ferplus fer2013new.csv``, whose rows line up with it
  (``Usage, Image name, 10 vote counts``; an empty name is a face FER+ left out).

FER2013's single labels disagree with the annotators' majority on about a third of the faces, so the
votes are the better target. They become targets by the paper's rules (Microsoft's
``ferplus.py``): single votes are dropped as outliers; ``majority`` keeps a face only when one class
has more than half of the remaining votes (ties have none, so they are dropped);
``probability`` and ``crossentropy`` keep the top classes up to 75% of the votes, at most three.
Faces where 'unknown' or 'not a face' wins are dropped and counted. With the 7 FER2013 classes,
contempt votes are dropped before the rules and the rest renormalized; ``contempt`` in the label
set keeps all 8.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from feredge.edge.errors import DataError

# label.csv's vote columns, in Microsoft's order, by their feredge names
COLUMNS = ("neutral", "happy", "surprise", "sad", "angry", "disgust", "fear", "contempt", "unknown", "not_face")
EMOTIONS = COLUMNS[:8]
UNKNOWN, NOT_FACE = 8, 9
LABEL_MODES = ("majority", "probability", "crossentropy")
SPLIT_FOLDERS = {"fer2013train": "train", "fer2013valid": "val", "fer2013test": "test"}
NO_EMOTION = "FER+ face(s) where 'unknown' or 'not a face' won"
NO_MAJORITY = "FER+ face(s) without a clear majority (the paper's rule)"
NOT_IN_FERPLUS = "FER2013 row(s) that FER+ left out"


def check_label_mode(mode: str) -> None:
    if mode not in LABEL_MODES:
        raise DataError(f"unknown label mode {mode!r}; choose {', '.join(LABEL_MODES)}")


def ferplus_split_dirs(root: Path) -> dict[str, Path]:
    """``{split: folder}`` of a FER+ folder layout (empty when ``root`` is not one)."""
    return {
        SPLIT_FOLDERS[d.name.lower()]: d
        for d in sorted(root.iterdir())
        if d.is_dir() and d.name.lower() in SPLIT_FOLDERS and (d / "label.csv").is_file()
    }


def check_labels(labels: Sequence[str], where: Path | str) -> None:
    unknown = [label for label in labels if label not in EMOTIONS]
    if unknown:
        raise DataError(f"{where}: FER+ has no class {', '.join(unknown)} (it has {', '.join(EMOTIONS)})")


def vote_matrix(votes: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """(N, 10) counts in Microsoft's order -> (N, len(labels) + 2): the labels' votes, then unknown and not-a-face.

    Classes outside ``labels`` (contempt, for the 7 FER2013 classes) lose their votes here, before the
    paper's rules, so the rest are renormalized by them.
    """
    index = [COLUMNS.index(label) for label in labels] + [UNKNOWN, NOT_FACE]
    return np.asarray(votes, np.float64)[:, index]


def paper_targets(votes: np.ndarray, mode: str) -> np.ndarray:
    """The paper's target distribution per face over ``votes``' columns (last two: unknown, not a face).

    A row of zeros marks a face the rule drops. Single votes are outliers; ``majority`` needs one class
    above half of the rest; the other modes keep the most-voted classes (ties together) until 75%
    of the votes or three classes, and drop a face whose kept classes hold half the votes or less.
    """
    check_label_mode(mode)
    v = np.where(votes <= 1, 0.0, np.asarray(votes, np.float64))
    total = v.sum(axis=1)
    out = np.zeros_like(v)
    rows = np.arange(len(v))
    if mode == "majority":
        top = v.argmax(axis=1)
        clear = v[rows, top] > 0.5 * total
        out[rows[clear], top[clear]] = 1.0
    else:
        for i in rows:
            kept, remaining, count = np.zeros(v.shape[1]), v[i].copy(), 0
            while kept.sum() < 0.75 * total[i] and count < 3 and remaining.max() > 0:
                peak = remaining.max()
                tied = np.flatnonzero(remaining == peak)
                kept[tied], remaining[tied] = peak, 0.0
                count += len(tied)
                if tied.max() >= v.shape[1] - 2:  # unknown or not a face ties for the lead: stop here
                    break
            if kept.sum() > 0.5 * total[i] and count <= 3:
                out[i] = kept / kept.sum()
    emotion = out.argmax(axis=1) < v.shape[1] - 2
    out[~emotion] = 0.0
    return out


def select_faces(votes: np.ndarray, mode: str, skipped: Counter) -> tuple[np.ndarray, np.ndarray]:
    """(kept row indices, majority class per kept row) of the :func:`vote_matrix` rows the mode keeps."""
    targets = paper_targets(votes, mode)
    kept = targets.sum(axis=1) > 0
    raw_top = votes.argmax(axis=1)
    no_emotion = ~kept & (raw_top >= votes.shape[1] - 2)
    skipped[NO_EMOTION] += int(no_emotion.sum())
    skipped[NO_MAJORITY] += int((~kept & ~no_emotion).sum())
    rows = np.flatnonzero(kept)
    return rows, targets[rows, :-2].argmax(axis=1)


def training_distribution(votes: np.ndarray, mode: str) -> np.ndarray:
    """Soft targets over the labels for ``probability``/``crossentropy`` training (rows sum to 1)."""
    padded = np.concatenate([votes, np.zeros((len(votes), 2))], axis=1)
    targets = paper_targets(padded, mode)[:, :-2]
    sums = targets.sum(axis=1, keepdims=True)
    return np.divide(targets, sums, out=np.zeros_like(targets), where=sums > 0).astype(np.float32)


def read_label_csv(path: Path) -> list[tuple[str, np.ndarray]]:
    """``(file name, 10 vote counts)`` per row of a FER+ ``label.csv``; ``DataError`` with the line number."""
    rows = []
    try:
        with open(path, newline="") as fh:
            for line, row in enumerate(csv.reader(fh), start=1):
                if not row or (line == 1 and not row[0].lower().endswith(".png")):  # blank, or a header
                    continue
                if len(row) != 12:
                    raise DataError(f"{path} line {line}: expected 12 fields (name, box, 10 votes), found {len(row)}")
                rows.append((_name(row[0], path, line), _votes(row[2:], path, line)))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read FER+ labels: {exc}") from exc
    if not rows:
        raise DataError(f"{path}: no FER+ label rows")
    return rows


def _name(name: str, path: Path, line: int) -> str:
    name = name.strip()
    if not name or Path(name).name != name:
        raise DataError(f"{path} line {line}: {name!r} is not an image file name")
    return name


def _votes(fields: Sequence[str], path: Path, line: int) -> np.ndarray:
    """Ten whole vote counts of one row, as Microsoft writes them (0-10 each)."""
    try:
        votes = np.array([int(f) for f in fields], np.int64)
    except ValueError:
        votes = np.zeros(0, np.int64)
    if votes.size != len(COLUMNS) or votes.min() < 0 or votes.sum() == 0:
        raise DataError(
            f"{path} line {line}: expected 10 vote counts (neutral … not-a-face, whole numbers >= 0, not all 0)"
        )
    return votes


def read_votes_csv(path: Path) -> list[tuple[str, str, np.ndarray | None]]:
    """``(usage, image name, votes or None)`` per row of ``fer2013new.csv`` (None: FER+ left the face out)."""
    out = []
    try:
        with open(path, newline="") as fh:
            reader = csv.reader(fh)
            header = [h.strip().lower() for h in next(reader, [])]
            if len(header) != 12 or header[0] != "usage":
                raise DataError(f"{path} line 1: expected the header Usage,Image name,neutral,…,NF of fer2013new.csv")
            for row in reader:
                line = reader.line_num
                if len(row) != 12:
                    raise DataError(f"{path} line {line}: expected 12 fields, found {len(row)}")
                name = row[1].strip()
                out.append((row[0].strip().lower(), name, _votes(row[2:], path, line) if name else None))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read FER+ votes: {exc}") from exc
    return out
