"""``feredge video SOURCE``: emotions in a video file, a camera (``0``) or an RTSP/HTTP stream.

Headless by default; ``--out`` writes an annotated video (moved into place when the run ends),
``--show`` opens a window where a display exists, ``--json`` prints one record per frame. Ctrl-C (or
``q`` in the window) stops cleanly. A camera or stream that delivers frames faster than they are
processed is read on a thread that keeps only the newest frame (``--all-frames`` turns this off).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from feredge.edge.cli_options import add_recognizer_options, build_recognizer, fraction, positive_int


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="SOURCE", help="video file, camera index (0) or rtsp:// / http:// URL")
    add_recognizer_options(parser)
    parser.add_argument(
        "--detect-every", type=positive_int, default=3, metavar="N", help="run the detector every N frames (default: 3)"
    )
    parser.add_argument(
        "--smoothing",
        type=fraction,
        default=0.4,
        metavar="ALPHA",
        help="weight of the newest frame in each face's score average, in (0, 1]; 1 disables smoothing (default: 0.4)",
    )
    parser.add_argument("--out", metavar="OUT.mp4", help="write the annotated video (.mp4 or .avi)")
    parser.add_argument("--show", action="store_true", help="show the annotated video in a window")
    parser.add_argument("--json", action="store_true", help="one JSON record per frame on stdout")
    parser.add_argument("--max-frames", type=positive_int, metavar="N", help="stop after N frames")
    parser.add_argument(
        "--all-frames",
        action="store_true",
        help="process every frame of a camera or stream even when falling behind (default: skip to the newest)",
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from feredge.edge.video import FrameRecord, check_output, process_video

    if args.out is not None:
        check_output(Path(args.out))
    recognizer = build_recognizer(args)
    live = sys.stderr.isatty() and not args.json
    last_status = 0.0

    def on_frame(record: FrameRecord) -> None:
        nonlocal last_status
        if args.json:
            print(json.dumps(record.to_dict()), flush=True)
        elif live and time.monotonic() - last_status > 0.5:
            last_status = time.monotonic()
            labels = ", ".join(face.label for face in record.faces) or "no face"
            print(f"\rframe {record.index}  {record.fps:5.1f} FPS  {labels}".ljust(70), end="", file=sys.stderr)

    summary = process_video(
        recognizer,
        args.source,
        detect_every=args.detect_every,
        smoothing=args.smoothing,
        out=args.out,
        show=args.show,
        max_frames=args.max_frames,
        on_frame=on_frame,
        drop_stale=False if args.all_frames else None,
    )
    if live:
        print(file=sys.stderr)
    counts = ", ".join(f"{label} {n}" for label, n in summary.label_counts.most_common())
    ending = "stopped by Ctrl-C" if summary.interrupted else "done"
    print(
        f"{ending}: {summary.frames} frames in {summary.seconds:.1f} s ({summary.mean_fps:.1f} FPS)"
        + (f"; face-frames: {counts}" if counts else "")
        + (f"; skipped {summary.dropped} stale frames" if summary.dropped else "")
        + (f"; wrote {summary.output}" if summary.output else ""),
        file=sys.stderr,
    )
    return 0
