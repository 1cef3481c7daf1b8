"""``feredge predict IMG_OR_DIR...``: emotions of the faces in images, as a table or JSON lines.

A bad input gets one message on stderr naming the file and the problem; the run goes on with the
next input, and the exit code follows ``run_main``'s rule (1 when some inputs failed, 2 when all did).
Folder scans take the files with an image suffix and count what they skip in the summary; an entry
with an image suffix that is no file (a broken link, a FIFO) is a failed input, named for what it is.
File names are printed with control characters escaped (``printable``). SIGTERM stops like Ctrl-C.
``--annotate OUT_DIR`` is checked before the model is loaded; each annotated copy keeps the input's
path below its folder (or its file name) and its format when that format holds a colour image (else
``.png`` is appended), and a name that is already taken in the run gets ``-2``, ``-3``... so no copy
overwrites another. A copy that would replace one of the run's inputs, or an OUT_DIR inside a folder
the run scans, stops the run before it starts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path

from feredge.cli.options import add_recognizer_options, build_recognizer, outcome_code, printable

EMPTY_INPUT = "empty input path (''); give an image file or a folder ('.' for the current folder)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="IMG_OR_DIR", help="image files or folders (searched recursively)")
    add_recognizer_options(parser)
    parser.add_argument("--json", action="store_true", help="one JSON object per image on stdout")
    parser.add_argument(
        "--annotate",
        type=Path,
        metavar="OUT_DIR",
        help="write copies with boxes and labels here (images above 4096 px at the reduced size they were decoded at)",
    )


def expand(path: Path) -> tuple[list[tuple[Path, Path | None]], int, list[tuple[Path, str]]]:
    """([(file, folder it was found in or None)], files skipped, [(entry, problem)]): a folder gives its
    images, sorted, recursively, and skips files of another suffix but counts them. An entry with an
    image suffix that is no regular file (a broken link, a FIFO, a device) is an input that failed."""
    from feredge.edge.decode import IMAGE_SUFFIXES

    if not path.is_dir():
        return [(path, None)], 0, []
    entries = [f for f in sorted(path.rglob("*")) if not f.is_dir()]
    images = [f for f in entries if f.suffix.lower() in IMAGE_SUFFIXES]
    found: list[tuple[Path, Path | None]] = [(f, path) for f in images if f.is_file()]
    unusable = [(f, not_a_file(f)) for f in images if not f.is_file()]
    return found, len(entries) - len(images), unusable


def not_a_file(path: Path) -> str:
    """What ``path``, which is no regular file, is: a broken symbolic link (and its target), a FIFO ..."""
    from feredge.edge.decode import input_file_problem

    if path.is_symlink() and not path.exists():
        try:
            target = f" to {os.readlink(path)}"
        except OSError:
            target = ""
        return f"broken symbolic link{target}; an image must be a file"
    return input_file_problem(path, "an image") or "not a regular file; an image must be a file"


# Formats OpenCV writes a BGR image in; an annotated copy of anything else (.pgm) is written as PNG.
ANNOTATED_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm"})


class AnnotatedNames:
    """Where each input's annotated copy goes, in a colour format, never the same path twice."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self._used: set[Path] = set()

    def path_for(self, file: Path, root: Path | None) -> Path:
        import cv2

        relative = file.relative_to(root) if root is not None else Path(file.name)
        suffix = relative.suffix.lower()
        if suffix not in ANNOTATED_SUFFIXES or not cv2.haveImageWriter(f"x{suffix}"):
            relative = relative.with_name(relative.name + ".png")
        path, number = self.out_dir / relative, 1
        while path in self._used:
            number += 1
            path = self.out_dir / relative.with_name(f"{relative.stem}-{number}{relative.suffix}")
        self._used.add(path)
        return path


def check_outside_inputs(out_dir: Path, folders: list[Path]) -> None:
    """``OptionError`` when ``out_dir`` is a scanned input folder or inside one (links resolved): the
    copies would land among the inputs and the next scan of that folder would take them as inputs."""
    from feredge.edge.errors import OptionError

    target = out_dir.resolve()
    for folder in folders:
        root = folder.resolve()
        if target.is_relative_to(root):
            where = "is" if target == root else "is inside"
            raise OptionError(
                f"--annotate: {out_dir} {where} the input folder {folder}, where the next scan would take "
                "the annotated copies for inputs; choose a folder outside it"
            )


def check_no_overwrite(targets: list[Path], inputs: list[Path]) -> None:
    """``OptionError`` when an annotated copy would replace an input (same path, link or hard link)."""
    from feredge.edge.errors import OptionError

    def identity(path: Path) -> tuple[int, int] | None:
        try:
            info = path.stat()
        except OSError:
            return None
        return info.st_dev, info.st_ino

    originals = {key: path for path in inputs if (key := identity(path)) is not None}
    for target in targets:
        key = identity(target)
        if key in originals:
            raise OptionError(
                f"--annotate: the annotated copy of {originals[key]} would overwrite {target}, an input of "
                "this run; choose another folder"
            )


def run(args: argparse.Namespace) -> int:
    from feredge.edge.atomic import sigterm_as_interrupt

    with sigterm_as_interrupt():  # SIGTERM stops like Ctrl-C: an annotated copy half written is removed
        return _predict(args)


def _predict(args: argparse.Namespace) -> int:
    from feredge.edge.errors import FeredgeError
    from feredge.edge.outputs import check_writable_dir
    from feredge.edge.recognizer import UNCERTAIN

    files, failures, skipped = [], 0, 0

    def failed(name: str, message: str) -> None:
        nonlocal failures
        failures += 1
        print(f"error: {printable(message)}", file=sys.stderr)
        if args.json:  # every failed input has its record, as a file that fails to decode has
            print(json.dumps({"file": name, "error": message}), flush=True)

    for item in args.inputs:
        # Path("") is ".": an empty argument (an unset shell variable) would scan the current folder
        found, passed_over, unusable = expand(Path(item)) if item else ([], 0, [])
        skipped += passed_over
        for entry, problem in unusable:
            failed(str(entry), f"{entry}: {problem}")
        if not found and not unusable:
            failed(item, f"{item}: no image files in this folder" if item else EMPTY_INPUT)
        files += found
    targets: list[Path | None] = [None] * len(files)
    if args.annotate is not None:
        names = AnnotatedNames(args.annotate)
        copies = [names.path_for(file, root) for file, root in files]
        check_no_overwrite(copies, [file for file, _ in files])
        check_outside_inputs(args.annotate, [Path(item) for item in args.inputs if item and Path(item).is_dir()])
        check_writable_dir(args.annotate, "annotated images")  # creates it: only once it is known to be usable
        targets = list(copies)
    recognizer = build_recognizer(args)
    table = Table(
        max([len(printable(str(f))) for f, _ in files] + [len("file")]),
        max(len(label) for label in (*recognizer.labels, UNCERTAIN, "no face")),
    )
    progress = sys.stderr.isatty() and any(root is not None for _, root in files)
    labels: Counter[str] = Counter()
    stage_ms: Counter[str] = Counter()
    done = 0
    for number, ((file, _), target) in enumerate(zip(files, targets, strict=True), 1):
        if progress:
            print(f"\r[{number}/{len(files)}]", end="", file=sys.stderr, flush=True)
        try:
            result = recognizer.recognize(file)
            annotated = None if target is None else _write_annotated(result.image, result.faces, target)
        except FeredgeError as exc:
            if progress:
                print(file=sys.stderr)
            failed(str(file), str(exc))
            continue
        done += 1
        labels.update(face.label for face in result.faces)
        stage_ms.update(result.timings.as_dict())
        if args.json:  # the demo's REST record, with the file (and its annotated copy) in place of threads
            record = {"file": str(file), "model": recognizer.model_name, "detector": recognizer.detector_name}
            record.update(result.to_dict())
            if annotated is not None:
                record["annotated"] = str(annotated)
            print(json.dumps(record), flush=True)
        else:
            table.print_rows(printable(str(file)), result.faces)
    if progress:
        print(file=sys.stderr)
    if len(files) > 1 or failures or skipped:
        _print_summary(done, failures, skipped, labels, stage_ms)
    return outcome_code(done, failures)


class Table:
    """The text table: its header is printed with the first row (an input that fails prints none),
    and the box, the one column without a bound on its width, comes last."""

    def __init__(self, name_width: int, label_width: int) -> None:
        self.name_width = name_width
        self.label_width = label_width
        self._started = False

    def print_rows(self, name: str, faces: list) -> None:
        if not self._started:
            self._started = True
            self._row("file", "face", "label", "conf", "box (x, y, w, h)")
        if not faces:
            self._row(name, "-", "no face", "-", "-")
        for number, face in enumerate(faces, 1):
            box = "(" + ", ".join(map(str, face.box)) + ")"
            self._row(name, str(number), face.label, f"{face.confidence:.2f}", box)
        sys.stdout.flush()

    def _row(self, name: str, face: str, label: str, conf: str, box: str) -> None:
        print(f"{name:<{self.name_width}}  {face:>4}  {label:<{self.label_width}}  {conf:>4}  {box}")


def _write_annotated(image, faces: list, path: Path) -> Path:
    import cv2

    from feredge.edge.atomic import atomic_write_bytes
    from feredge.edge.draw import annotate
    from feredge.edge.errors import ImageError
    from feredge.edge.outputs import naming_write_errors

    ok, encoded = cv2.imencode(path.suffix, annotate(image, faces))  # the format from the suffix, here
    if not ok:
        raise ImageError(f"{path}: cannot encode the annotated image")
    with naming_write_errors(path, "the annotated image"):
        return atomic_write_bytes(path, encoded.tobytes())  # under a temporary name no scan takes for an image


def _print_summary(done: int, failures: int, skipped: int, labels: Counter, stage_ms: Counter) -> None:
    faces = sum(labels.values())
    parts = [f"{done} images", f"{faces} faces", f"{failures} failed"]
    if skipped:
        parts.append(f"{skipped} skipped (not image files)")
    if labels:
        parts.append(", ".join(f"{label} {count}" for label, count in labels.most_common()))
    if done:
        stages = ("decode", "detect", "preprocess", "infer")
        parts.append("mean ms/image: " + " ".join(f"{s} {stage_ms[f'{s}_ms'] / done:.1f}" for s in stages))
    print("summary: " + " · ".join(parts), file=sys.stderr)
