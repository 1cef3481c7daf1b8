"""``feredge predict IMG_OR_DIR...``: emotions of the faces in images, as a table or JSON lines.

A bad input gets one message on stderr naming the file and the problem; the run goes on with the
next input and the exit code is 1 when any input failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

from feredge.edge.cli_options import add_recognizer_options, build_recognizer


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="IMG_OR_DIR", help="image files or folders (searched recursively)")
    add_recognizer_options(parser)
    parser.add_argument("--json", action="store_true", help="one JSON object per image on stdout")
    parser.add_argument(
        "--annotate", type=Path, metavar="OUT_DIR",
        help="write copies with boxes and labels here (images above 4096 px at the reduced size they were decoded at)",
    )


def expand(path: Path) -> list[tuple[Path, Path | None]]:
    """(file, folder it was found in or None): a folder gives its images, sorted, recursively."""
    from feredge.edge.preprocess import IMAGE_SUFFIXES

    if not path.is_dir():
        return [(path, None)]
    return [(f, path) for f in sorted(path.rglob("*")) if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]


def run(args: argparse.Namespace) -> int:
    from feredge.edge.errors import FeredgeError
    from feredge.edge.preprocess import decode_image_scaled

    recognizer = build_recognizer(args)
    files, failures = [], 0
    for item in args.inputs:
        found = expand(Path(item))
        if not found:
            failures += 1
            print(f"error: {item}: no image files in this folder", file=sys.stderr)
        files += found
    width = max([len(str(f)) for f, _ in files] + [4])
    if not args.json and files:
        print(f"{'file':<{width}}  face  {'box (x, y, w, h)':<22}  {'label':<10}  conf")
    progress = sys.stderr.isatty() and any(root is not None for _, root in files)
    labels: Counter[str] = Counter()
    stage_ms: Counter[str] = Counter()
    done = 0
    for number, (file, root) in enumerate(files, 1):
        if progress:
            print(f"\r[{number}/{len(files)}]", end="", file=sys.stderr, flush=True)
        try:
            start = time.perf_counter()
            image = decode_image_scaled(file)
            decode_ms = (time.perf_counter() - start) * 1000.0
            faces = recognizer.predict(image)
            recognizer.timings.decode_ms += decode_ms
            if args.annotate is not None:
                _write_annotated(image, faces, args.annotate / (file.relative_to(root) if root else file.name))
        except FeredgeError as exc:
            failures += 1
            if progress:
                print(file=sys.stderr)
            print(f"error: {exc}", file=sys.stderr)
            if args.json:
                print(json.dumps({"file": str(file), "error": str(exc)}), flush=True)
            continue
        done += 1
        labels.update(face.label for face in faces)
        timings = recognizer.timings.as_dict()
        stage_ms.update(timings)
        if args.json:
            record = {"file": str(file), "faces": [face.to_dict() for face in faces], "timings": timings}
            print(json.dumps(record), flush=True)
        else:
            _print_rows(str(file), faces, width)
    if progress:
        print(file=sys.stderr)
    if len(files) > 1 or failures:
        _print_summary(done, failures, labels, stage_ms)
    return 1 if failures else 0


def _print_rows(name: str, faces: list, width: int) -> None:
    if not faces:
        print(f"{name:<{width}}  {'-':>4}  {'-':<22}  no face")
    for number, face in enumerate(faces, 1):
        box = "(" + ", ".join(map(str, face.box)) + ")"
        print(f"{name:<{width}}  {number:>4}  {box:<22}  {face.label:<10}  {face.confidence:.2f}")
    sys.stdout.flush()


def _write_annotated(image, faces: list, path: Path) -> None:
    import cv2

    from feredge.edge.atomic import atomic_write_bytes
    from feredge.edge.draw import annotate
    from feredge.edge.errors import ImageError

    ok, encoded = cv2.imencode(path.suffix or ".png", annotate(image, faces))
    if not ok:
        raise ImageError(f"{path}: cannot encode the annotated image")
    atomic_write_bytes(path, encoded.tobytes())


def _print_summary(done: int, failures: int, labels: Counter, stage_ms: Counter) -> None:
    faces = sum(labels.values())
    parts = [f"{done} images", f"{faces} faces", f"{failures} failed"]
    if labels:
        parts.append(", ".join(f"{label} {count}" for label, count in labels.most_common()))
    if done:
        stages = ("decode", "detect", "preprocess", "infer")
        parts.append("mean ms/image: " + " ".join(f"{s} {stage_ms[f'{s}_ms'] / done:.1f}" for s in stages))
    print("summary: " + " · ".join(parts), file=sys.stderr)
