"""The one data loader: FER2013 CSV, FER+ votes, split folders, flat class folders and Kaggle -> uint8 faces.

Training, conversion (calibration and the gate), evaluation and the benchmarks all load data here.
It needs numpy and OpenCV only, so ``feredge bench`` scores accuracy on a device without
TensorFlow. Every image goes through the contract's ``decode_image`` and ``prepare_face`` (gray +
resize), so the cached arrays are exactly what the edge runtime would produce before normalization.
Bad files are counted and reported, never fatal; structural problems (no images, a requested class
with no folder) raise ``DataError`` naming the problem.
"""

from __future__ import annotations

import csv
import errno
import logging
import math
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from feredge.edge import ferplus
from feredge.edge.decode import IMAGE_SUFFIXES, decode_image
from feredge.edge.errors import DataError, ImageError
from feredge.edge.labels import FER2013, canonical, resolve_labels
from feredge.edge.photometric import apply_photometric, check_photometric
from feredge.edge.preprocess import PreprocessSpec, normalize, prepare_face
from feredge.edge.tta import flip_average

log = logging.getLogger(__name__)

SPLIT_DIRS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "validation": "val",
    "valid": "val",
    "test": "test",
    "testing": "test",
}
CSV_USAGE = {"training": "train", "publictest": "val", "privatetest": "test"}
KAGGLE_PREFIX = "kaggle:"
# Reasons a file is skipped, the keys of ``Dataset.skipped``.
NON_IMAGE = "non-image file(s)"
UNREADABLE = "unreadable or corrupt image(s)"
MALFORMED_ROWS = "malformed CSV row(s)"


@dataclass
class Split:
    """Faces of one split: uint8 (N, S, S) gray arrays and int class indices.

    FER+ data also carries ``votes``, the annotators' counts per label (N, K), whose majority the
    targets are: training can learn the distribution and evaluation scores against it.
    """

    images: np.ndarray
    targets: np.ndarray
    votes: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.targets.size)

    def counts(self, num_classes: int) -> np.ndarray:
        return np.bincount(self.targets, minlength=num_classes)

    def take(self, index: np.ndarray) -> Split:
        return Split(self.images[index], self.targets[index], None if self.votes is None else self.votes[index])


def join_splits(parts: Sequence[Split]) -> Split:
    """One split of several, in order; votes only when every part has them."""
    votes = [p.votes for p in parts if p.votes is not None]
    return Split(
        np.concatenate([p.images for p in parts]),
        np.concatenate([p.targets for p in parts]),
        np.concatenate(votes) if len(votes) == len(parts) else None,
    )


@dataclass
class Dataset:
    labels: tuple[str, ...]
    splits: dict[str, Split]
    source: str
    layout: str
    skipped: Counter = field(default_factory=Counter)

    def describe(self) -> str:
        parts = [f"{name}={len(split)}" for name, split in self.splits.items()]
        return f"{self.source} ({self.layout}): {', '.join(parts)}; labels={','.join(self.labels)}"


def load_dataset(
    source: str | Path,
    labels: str | Sequence[str] | None = None,
    input_size: int = 48,
    val_fraction: float = 0.1,
    seed: int = 0,
    workers: int = 4,
    make_val: bool = True,
    photometric: str = "none",
    ferplus_votes: str | Path | None = None,
    label_mode: str = "majority",
) -> Dataset:
    """Load any supported layout into memory; split off validation when the layout has none.

    ``make_val=False`` keeps a layout without a validation split whole (evaluation, calibration);
    otherwise the data is for training and must have at least two classes.
    ``photometric`` is the model's photometric normalization: the cached faces are then exactly the
    pixels ``prepare_face`` gives the runtime. FER+ data (its folder layout, or ``fer2013.csv`` with
    ``ferplus_votes=fer2013new.csv``) keeps the faces ``label_mode`` keeps (``feredge.edge.ferplus``).
    """
    check_photometric(photometric)
    ferplus.check_label_mode(label_mode)
    source_str = str(source)
    if source_str.startswith(KAGGLE_PREFIX):
        source = download_kaggle(source_str[len(KAGGLE_PREFIX) :])
    path = Path(source)
    try:
        path.stat()
    except OSError as exc:  # a symlink loop or a closed folder is not "not found"
        raise DataError(f"{path}: {'data set not found' if exc.errno == errno.ENOENT else exc.strerror}") from exc
    wanted = resolve_labels(labels) if labels else None
    if ferplus_votes is not None and not path.is_file():
        raise DataError(f"{path}: FER+ votes ({ferplus_votes}) go with the fer2013.csv file they line up with")
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise DataError(f"{path}: a data file must be a FER2013-style CSV (emotion,pixels,Usage)")
        if ferplus_votes is not None:
            dataset = _load_ferplus_csv(path, Path(ferplus_votes), wanted, input_size, label_mode)
        else:
            dataset = _load_csv(path, wanted, input_size)
    else:
        split_dirs = {
            SPLIT_DIRS[d.name.lower()]: d for d in sorted(path.iterdir()) if d.is_dir() and d.name.lower() in SPLIT_DIRS
        }
        ferplus_dirs = ferplus.ferplus_split_dirs(path)
        if ferplus_dirs:
            dataset = _load_ferplus_folders(path, ferplus_dirs, wanted, input_size, workers, label_mode)
        elif "train" in split_dirs:
            dataset = _load_split_folders(path, split_dirs, wanted, input_size, workers)
        else:
            dataset = _load_class_folders(path, wanted, input_size, workers)
    if make_val and len(dataset.labels) < 2:  # training data: a 1-output "classifier" would train and mean nothing
        raise DataError(f"{path}: only one class ({', '.join(dataset.labels)}); training needs at least two classes")
    if make_val and "val" not in dataset.splits:
        dataset.splits["train"], dataset.splits["val"] = stratified_split(dataset.splits["train"], val_fraction, seed)
        if len(dataset.splits["val"]) == 0:
            raise DataError(
                f"{path}: too few images to split off validation (need 2+ per class); add a val/ folder or more images"
            )
    for name, split in dataset.splits.items():
        empty = [dataset.labels[i] for i, n in enumerate(split.counts(len(dataset.labels))) if n == 0]
        if name == "train" and empty:
            raise DataError(f"{path}: class(es) with no training images: {', '.join(empty)}")
    for split in dataset.splits.values():
        split.images = apply_photometric(split.images, photometric)
    if dataset.skipped:
        summary = ", ".join(f"{n} {reason}" for reason, n in sorted(dataset.skipped.items()))
        log.warning("left out %d item(s) of %s: %s", sum(dataset.skipped.values()), path, summary)
    return dataset


def select_split(dataset: Dataset, name: str = "auto") -> tuple[str, Split]:
    """(name, split) to score: ``auto`` is val if present, else test, else all; ``all`` joins every split."""
    if name == "auto":
        name = next((n for n in ("val", "test") if n in dataset.splits), "all")
    if name == "all":
        return name, join_splits(list(dataset.splits.values()))
    if name not in dataset.splits:
        raise DataError(f"{dataset.source}: no {name!r} split (has {', '.join(dataset.splits)}); use --split all")
    return name, dataset.splits[name]


def score_batches(
    predict: Callable[[np.ndarray], np.ndarray],
    split: Split,
    spec: PreprocessSpec,
    flip: bool = False,
    batch_size: int = 256,
) -> np.ndarray:
    """Class scores of a split's uint8 faces: contract normalization, ``predict`` on batches, optional flip.

    ``predict`` is any ``(N, S, S, C) -> (N, K)`` callable: ``EmotionModel.predict`` (which flip-averages
    by itself when its metadata asks) or a Keras model's ``predict_on_batch``. Training, evaluation,
    the conversion gate and the benchmarks all score through here, so they score a model alike.
    """
    out = []
    for start in range(0, len(split), batch_size):
        faces = split.images[start : start + batch_size].astype(np.float32)
        batch = np.asarray(normalize(faces, spec), np.float32)
        scores = flip_average(predict, batch) if flip else predict(batch)
        out.append(np.asarray(scores, np.float32))
    return np.concatenate(out)


def download_kaggle(handle: str) -> Path:
    """Download a Kaggle data set with kagglehub (needs the package and Kaggle credentials)."""
    try:
        import kagglehub
    except ImportError as exc:
        raise DataError("kaggle data sets need kagglehub: pip install 'feredge[kaggle]'") from exc
    try:
        return Path(kagglehub.dataset_download(handle))
    except Exception as exc:  # kagglehub raises many types: network, auth, not-found
        raise DataError(
            f"kagglehub could not download {handle!r}: {exc}. Check your Kaggle credentials "
            "(~/.kaggle/kaggle.json or KAGGLE_USERNAME/KAGGLE_KEY) and network, or pass a local path."
        ) from exc


def stratified_split(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """Per-class split, so rare classes (disgust) appear in both parts."""
    if not 0.0 < fraction < 1.0:
        raise DataError(f"validation fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    held: list[int] = []
    for cls in np.unique(split.targets):
        idx = np.flatnonzero(split.targets == cls)
        rng.shuffle(idx)
        n_held = round(len(idx) * fraction)
        if len(idx) > 1:
            n_held = min(max(n_held, 1), len(idx) - 1)
        held.extend(idx[:n_held])
    mask = np.zeros(len(split), bool)
    mask[np.asarray(held, np.intp)] = True
    return split.take(~mask), split.take(mask)


def _choose_labels(found: Sequence[str], wanted: tuple[str, ...] | None, where: Path) -> tuple[str, ...]:
    if wanted is None:
        found_set = set(found)
        if found_set <= set(FER2013):
            return tuple(lab for lab in FER2013 if lab in found_set)
        return tuple(sorted(found_set))
    missing = [lab for lab in wanted if lab not in found]
    if missing:
        raise DataError(
            f"{where}: requested label(s) {', '.join(missing)} not found; the data has {', '.join(sorted(found))}"
        )
    ignored = sorted(set(found) - set(wanted))
    if ignored:
        log.info("ignoring classes not in the label set: %s", ", ".join(ignored))
    return wanted


def _class_dirs(root: Path) -> dict[str, Path]:
    dirs: dict[str, Path] = {}
    for d in sorted(root.iterdir()):
        if d.is_dir() and not d.name.startswith("."):
            name = canonical(d.name)
            if name in dirs:
                raise DataError(f"{root}: folders {dirs[name].name!r} and {d.name!r} both mean class {name!r}")
            dirs[name] = d
    return dirs


def _read_folder(
    class_dirs: dict[str, Path],
    labels: tuple[str, ...],
    size: int,
    skipped: Counter,
    workers: int,
    required: bool = False,
) -> Split:
    """The faces in ``class_dirs``; with ``required`` (a training split), a class whose image files are
    all unreadable is a ``DataError`` that says so, rather than a class that seems to have no images."""
    items: list[tuple[Path, int]] = []
    for index, label in enumerate(labels):
        for f in sorted(class_dirs[label].rglob("*")):
            if f.is_dir() or f.name.startswith("."):
                continue
            if not f.is_file() or f.suffix.lower() not in IMAGE_SUFFIXES:  # another suffix, a FIFO, a broken link
                skipped[NON_IMAGE] += 1
                continue
            items.append((f, index))

    faces = _read_faces([f for f, _ in items], size, workers)
    keep = [i for i, face in enumerate(faces) if not isinstance(face, str)]
    if len(keep) < len(items):
        skipped[UNREADABLE] += len(items) - len(keep)
    if required:
        _check_readable(class_dirs, labels, [index for _, index in items], faces)
    if not keep:
        return Split(np.zeros((0, size, size), np.uint8), np.zeros(0, np.int64))
    return Split(np.stack([faces[i] for i in keep]), np.array([items[i][1] for i in keep], np.int64))


def _read_faces(files: Sequence[Path], size: int, workers: int) -> list[np.ndarray | str]:
    """The contract's face of each file, or the error text of a file that cannot be decoded."""

    def read(file: Path) -> np.ndarray | str:
        try:
            return prepare_face(decode_image(file), size)
        except ImageError as exc:
            log.debug("skip %s", exc)
            return str(exc)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(read, files, chunksize=64))


def _check_readable(
    class_dirs: dict[str, Path], labels: tuple[str, ...], targets: list[int], faces: list[np.ndarray | str]
) -> None:
    """``DataError`` naming each class whose image files are all unreadable, with their count and first error."""
    files, readable, first = Counter(targets), set(), dict[int, str]()
    for index, face in zip(targets, faces, strict=True):
        if isinstance(face, str):
            first.setdefault(index, face)
        else:
            readable.add(index)
    broken = [
        f"{class_dirs[labels[i]]}: {n} image file(s), all unreadable (first: {first[i]})"
        for i, n in sorted(files.items())
        if i not in readable
    ]
    if broken:
        raise DataError(f"class(es) without a readable training image: {'; '.join(broken)}")


def _load_class_folders(root: Path, wanted, size: int, workers: int) -> Dataset:
    class_dirs = _class_dirs(root)
    if not class_dirs:
        raise DataError(f"{root}: no class folders (expected root/<class>/*.jpg or root/train/<class>/*)")
    labels = _choose_labels(list(class_dirs), wanted, root)
    skipped: Counter = Counter()
    train = _read_folder(class_dirs, labels, size, skipped, workers, required=True)
    if len(train) == 0:
        raise DataError(f"{root}: no readable images in the class folders")
    return Dataset(labels, {"train": train}, str(root), "class-folders", skipped)


def _load_split_folders(root: Path, split_dirs: dict[str, Path], wanted, size: int, workers: int) -> Dataset:
    train_dirs = _class_dirs(split_dirs["train"])
    if not train_dirs:
        raise DataError(f"{split_dirs['train']}: no class folders")
    labels = _choose_labels(list(train_dirs), wanted, split_dirs["train"])
    skipped: Counter = Counter()
    splits = {}
    for name, d in split_dirs.items():
        dirs = _class_dirs(d)
        unknown = sorted(set(dirs) - set(train_dirs))
        if unknown:
            raise DataError(f"{d}: classes {', '.join(unknown)} are not in the training split")
        present = {lab: dirs[lab] for lab in labels if lab in dirs}
        split = _read_folder(present, labels, size, skipped, workers, name == "train") if present else None
        if split is None or len(split) == 0:
            if name == "train":
                raise DataError(f"{d}: no readable images")
            log.warning("%s: split %r has no readable images; ignoring it", root, name)
            continue
        splits[name] = split
    return Dataset(labels, splits, str(root), "split-folders", skipped)


def _load_csv(path: Path, wanted, size: int) -> Dataset:
    rows: dict[str, tuple[list[np.ndarray], list[int]]] = {}
    skipped: Counter = Counter()
    bad: list[str] = []  # "line N: what is wrong" of the first malformed rows
    labels = wanted or FER2013
    index_of = {lab: i for i, lab in enumerate(labels)}
    for line, emotion, pixels, usage in _csv_rows(path):
        try:
            label, face = _csv_face(emotion, pixels)
        except ValueError as exc:
            skipped[MALFORMED_ROWS] += 1
            if len(bad) < 3:
                bad.append(f"line {line}: {exc}")
            continue
        if label not in index_of:
            continue
        faces, targets = rows.setdefault(CSV_USAGE.get(usage or "training", "train"), ([], []))
        faces.append(prepare_face(face, size))
        targets.append(index_of[label])
    if bad:
        more = skipped[MALFORMED_ROWS] - len(bad)
        log.warning("%s: skipped malformed row(s): %s%s", path, "; ".join(bad), f"; and {more} more" if more else "")
    if "train" not in rows:
        raise DataError(f"{path}: no training rows for labels {', '.join(labels)}")
    splits = {name: Split(np.stack(f), np.array(t, np.int64)) for name, (f, t) in rows.items()}
    return Dataset(tuple(labels), splits, str(path), "fer2013-csv", skipped)


def _csv_rows(path: Path) -> Iterator[tuple[int, str | None, str | None, str]]:
    """``(line, emotion, pixels, usage)`` of each row of a FER2013-style CSV; a file that cannot be read is
    a ``DataError`` naming the line it stopped at."""
    reader = None
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            fields = {f.strip().lower(): f for f in reader.fieldnames or []}
            if not {"emotion", "pixels"} <= set(fields):
                raise DataError(f"{path}: CSV needs 'emotion' and 'pixels' columns, found {reader.fieldnames}")
            for row in reader:
                usage = (row.get(fields.get("usage", ""), "") or "").strip().lower()
                yield reader.line_num, row.get(fields["emotion"]), row.get(fields["pixels"]), usage
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        where = f" (line {reader.line_num})" if reader is not None and reader.line_num else ""
        raise DataError(f"{path}: cannot read CSV{where}: {exc}") from exc


def _csv_face(emotion: str | None, pixels: str | None) -> tuple[str, np.ndarray]:
    """(FER2013 label, square uint8 face) of one CSV row's fields; ``ValueError`` saying what is wrong."""
    if emotion is None or pixels is None:
        raise ValueError("missing the emotion or pixels field")
    try:
        index = int(emotion)
        values = np.array(pixels.split(), dtype=np.int64)
    except (ValueError, OverflowError):
        raise ValueError("emotion and pixels must be whole numbers") from None
    if not 0 <= index < len(FER2013):
        raise ValueError(f"emotion {index} is not a FER2013 class index (0-{len(FER2013) - 1})")
    side = math.isqrt(values.size)
    if side == 0 or side * side != values.size:
        raise ValueError(f"{values.size} pixels do not make a square image")
    if values.min() < 0 or values.max() > 255:
        raise ValueError("pixel values must be within 0-255")
    return FER2013[index], values.astype(np.uint8).reshape(side, side)


def _ferplus_labels(wanted: tuple[str, ...] | None, where: Path) -> tuple[str, ...]:
    labels = wanted or FER2013
    ferplus.check_labels(labels, where)
    return labels


def _vote_split(faces: list[np.ndarray], votes: np.ndarray, labels, mode: str, skipped: Counter) -> Split | None:
    """The faces ``mode`` keeps, their majority classes and their votes over ``labels``."""
    matrix = ferplus.vote_matrix(votes, labels)
    rows, targets = ferplus.select_faces(matrix, mode, skipped)
    if rows.size == 0:
        return None
    return Split(np.stack([faces[i] for i in rows]), targets.astype(np.int64), matrix[rows, :-2].astype(np.float32))


def _load_ferplus_folders(
    root: Path, split_dirs: dict[str, Path], wanted, size: int, workers: int, mode: str
) -> Dataset:
    if "train" not in split_dirs:
        raise DataError(f"{root}: FER+ folders without FER2013Train/label.csv")
    labels = _ferplus_labels(wanted, root)
    skipped: Counter = Counter()
    splits = {}
    for name, folder in split_dirs.items():
        rows = ferplus.read_label_csv(folder / "label.csv")
        faces = _read_faces([folder / file for file, _ in rows], size, workers)
        readable = [i for i, face in enumerate(faces) if not isinstance(face, str)]
        if len(readable) < len(rows):
            skipped[UNREADABLE] += len(rows) - len(readable)
        votes = np.stack([rows[i][1] for i in readable]) if readable else np.zeros((0, len(ferplus.COLUMNS)))
        kept = [face for face in faces if not isinstance(face, str)]
        split = _vote_split(kept, votes, labels, mode, skipped) if readable else None
        if split is None:
            raise DataError(f"{folder}: no readable FER+ face with a usable label")
        splits[name] = split
    return Dataset(labels, splits, str(root), f"ferplus-folders ({mode})", skipped)


def _load_ferplus_csv(path: Path, votes_path: Path, wanted, size: int, mode: str) -> Dataset:
    """``fer2013.csv`` with ``fer2013new.csv``: row i of one is row i of the other."""
    labels = _ferplus_labels(wanted, votes_path)
    votes_rows = ferplus.read_votes_csv(votes_path)
    skipped: Counter = Counter()
    by_split: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
    count = 0
    for count, (line, emotion, pixels, own_usage) in enumerate(_csv_rows(path), start=1):
        if count > len(votes_rows):
            raise DataError(
                f"{path} line {line}: more rows than {votes_path} ({len(votes_rows)}); they must line up row by row"
            )
        usage, _name, votes = votes_rows[count - 1]
        if own_usage and own_usage != usage:
            raise DataError(
                f"{path} line {line}: Usage {own_usage!r} but {votes_path} line {count + 1} "
                f"says {usage!r}; the two files must line up row by row"
            )
        if votes is None:
            skipped[ferplus.NOT_IN_FERPLUS] += 1
            continue
        try:
            _label, face = _csv_face(emotion, pixels)
        except ValueError as exc:
            raise DataError(f"{path} line {line}: {exc}") from exc
        faces, votes_list = by_split.setdefault(CSV_USAGE.get(usage, "train"), ([], []))
        faces.append(prepare_face(face, size))
        votes_list.append(votes)
    if count != len(votes_rows):
        raise DataError(f"{path}: {count} rows but {votes_path} has {len(votes_rows)}; they must line up row by row")
    splits = {}
    for name, (faces, votes_list) in by_split.items():
        split = _vote_split(faces, np.stack(votes_list), labels, mode, skipped)
        if split is not None:
            splits[name] = split
    if "train" not in splits:
        raise DataError(f"{path}: no FER+ training rows with a usable label")
    return Dataset(labels, splits, f"{path} + {votes_path}", f"ferplus-csv ({mode})", skipped)
