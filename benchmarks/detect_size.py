"""Recall, false boxes and detect time per detector at each candidate detect size, and the rule's choice.

    python -m feredge.benchmarks.detect_size /work/shared/data/jaffe --groups 40 --out benchmarks/results/DIR

The rule (``docs/deploy.md``, written before the first run): a detector's default is the smallest
size whose recall stays within 1 point of full resolution, with no more false boxes, on both the
group-photo proxy (``groups.py``, built as ``feredge evaluate-photos --groups N`` builds it: same
sources, same seed) and the photos themselves (one face each; detection only, no emotion scored).
Detect times are per 640x480 proxy canvas at ``--threads`` OpenCV and LiteRT threads: the median of
each of ``TIMING_ROUNDS`` passes over ``TIMING_CANVASES`` canvases, and the least of those medians, which
a machine busy with other work inflates least.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from feredge import __version__
from feredge.benchmarks import groups
from feredge.benchmarks.latency import opencv_threads
from feredge.benchmarks.machine import load_average, machine_info
from feredge.benchmarks.photos import read_photos
from feredge.edge.atomic import atomic_write_text
from feredge.edge.detectors import DETECTORS, detect_faces, detector_names, make_detector

CANDIDATES = (None, 640, 480, 320, 240, 160)
RECALL_SLACK = 0.01  # "within 1 point of full resolution"
TIMING_ROUNDS = 3
TIMING_CANVASES = 20


def size_label(size: int | None) -> str:
    return "full" if size is None else str(size)


def frame_ms(detector: Any, canvases: Sequence[tuple[np.ndarray, list]]) -> dict[str, float]:
    """Detect ms per canvas: each round's median, and the least of them (``min_of_medians``)."""
    medians = []
    for _ in range(TIMING_ROUNDS):
        times = []
        for canvas, _ in canvases[:TIMING_CANVASES]:
            start = time.perf_counter()
            detect_faces(detector, canvas)
            times.append((time.perf_counter() - start) * 1000.0)
        medians.append(float(np.median(times)))
    return {"median_of_rounds": float(np.median(medians)), "min_of_medians": min(medians)}


def photo_scores(detector: Any, sources: Sequence[groups.Source]) -> dict[str, Any]:
    """Recall and false boxes on the photos themselves: each has one face, its consensus box."""
    hits, false = [], 0
    for source in sources:
        hit, extra = groups.match([source.box], [face.box for face in detect_faces(detector, source.image)])
        hits += hit
        false += extra
    return {"faces": len(hits), "recall": float(np.mean(hits)), "false_boxes": false}


def choose(rows: list[dict[str, Any]]) -> int | None:
    """The rule: the smallest size whose recall on both sets is within 1 point of full resolution's, with
    no more false boxes than it; full resolution (None) when no smaller size qualifies."""
    full = next(row for row in rows if row["detect_size"] is None)

    def keeps_up(row: dict[str, Any]) -> bool:
        return all(
            row[part]["recall"] >= full[part]["recall"] - RECALL_SLACK
            and row[part]["false_boxes"] <= full[part]["false_boxes"]
            for part in ("groups", "photos")
        )

    sized = sorted(
        (row for row in rows if row["detect_size"] is not None and keeps_up(row)), key=lambda r: r["detect_size"]
    )
    return sized[0]["detect_size"] if sized else None


def sweep(
    data: str, names: Sequence[str], sizes: Sequence[int | None], canvases: int, seed: int, threads: int
) -> dict[str, Any]:
    """Every detector at every size on the proxy and the photos; JSON-ready, with each detector's choice."""
    started = load_average()
    photos, unreadable = read_photos(data)
    with opencv_threads(threads):
        consensus = {
            name: make_detector(name, min_face=0, max_side=4096, detect_size=None)
            for name in detector_names(finds_faces=True)
        }
        sources, self_iou = groups.consensus_sources([photo.image for photo in photos], consensus)
        rng = np.random.default_rng(seed)
        proxy = [groups.compose(sources, rng) for _ in range(canvases)]
        results = {}
        for name in names:
            rows = []
            for size in sizes:
                detector = make_detector(name, detect_size=size)
                start = time.perf_counter()
                group = groups.detection_scores({name: detector}, proxy)[0]
                rows.append(
                    {
                        "detect_size": size,
                        "groups": {key: group[key] for key in ("faces", "recall", "recall_by_side", "false_boxes")},
                        "detect_ms": frame_ms(detector, proxy),
                        "photos": photo_scores(detector, sources),
                        "seconds": round(time.perf_counter() - start, 1),
                    }
                )
            results[name] = {"rows": rows, "chosen": choose(rows), "registered": DETECTORS[name].detect_size}
    return {
        "feredge": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(["ai-edge-litert"]) | {"load_average": {"start": started, "end": load_average()}},
        "settings": {"data": data, "groups": canvases, "seed": seed, "threads": threads, "sizes": list(sizes)},
        "photos": {"count": len(photos), "with_consensus": len(sources), "unreadable": len(unreadable)},
        "proxy": {"canvases": len(proxy), "faces": sum(len(truth) for _, truth in proxy), "self_iou": self_iou},
        "detectors": results,
    }


def report(results: dict[str, Any], command: str) -> str:
    """results.md: the command, then one table per detector and its choice by the rule."""
    settings, photos, proxy = results["settings"], results["photos"], results["proxy"]
    lines = [
        "# Detect size: recall, false boxes and detect time per candidate",
        "",
        f"- {results['created']}, feredge {results['feredge']}: `{command}`",
        f"- {results['machine']['cpu']}, {settings['threads']} thread(s); load average "
        f"{results['machine']['load_average']['start']} at the start, {results['machine']['load_average']['end']} "
        "at the end",
        f"- group-photo proxy: {proxy['canvases']} canvases of 640x480, {proxy['faces']} faces of 30-150 px (seed "
        f"{settings['seed']}); photos: {photos['with_consensus']} of {photos['count']} with a consensus box "
        "(one face each)",
        "- rule (docs/deploy.md): the smallest size whose recall on both stays within 1 point of full resolution, "
        "with no more false boxes",
        "",
    ]
    for name, entry in results["detectors"].items():
        lines += [
            f"## {name}: chosen {size_label(entry['chosen'])}",
            "",
            "| detect size | proxy recall | proxy false boxes | recall by face side | photo recall | photo false boxes "
            "| detect ms per 640x480 frame (least median; median) |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for row in entry["rows"]:
            group, photo = row["groups"], row["photos"]
            sides = ", ".join(f"{k}: {v:.1%}" for k, v in group["recall_by_side"].items())
            lines.append(
                f"| {size_label(row['detect_size'])} | {group['recall']:.1%} ({group['faces']}) | "
                f"{group['false_boxes']} | {sides} | {photo['recall']:.1%} ({photo['faces']}) | "
                f"{photo['false_boxes']} | {row['detect_ms']['min_of_medians']:.1f}; "
                f"{row['detect_ms']['median_of_rounds']:.1f} |"
            )
        lines.append("")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m feredge.benchmarks.detect_size", description=__doc__.splitlines()[0]
    )
    parser.add_argument("data", help="folder-per-class photos of one face each (e.g. /work/shared/data/jaffe)")
    parser.add_argument("--detectors", nargs="+", default=list(detector_names(finds_faces=True)))
    parser.add_argument(
        "--sizes", nargs="+", default=[size_label(s) for s in CANDIDATES], help="candidate sizes; 'full' is None"
    )
    parser.add_argument("--groups", type=int, default=40, help="proxy canvases (default: 40)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True, help="folder for results.json and results.md")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = [None if size == "full" else int(size) for size in args.sizes]
    if None not in sizes:
        sys.exit("--sizes must include 'full': the rule compares every size with full resolution")
    results = sweep(args.data, args.detectors, sizes, args.groups, args.seed, args.threads)
    command = "python -m feredge.benchmarks.detect_size " + " ".join(sys.argv[1:] if argv is None else argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "results.json", json.dumps(results, indent=1) + "\n")
    text = report(results, command)
    atomic_write_text(out / "results.md", text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
