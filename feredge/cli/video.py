"""``feredge video SOURCE``: emotions in a video file, a camera (``0``) or an RTSP/HTTP stream.

Headless by default; ``--out`` writes an annotated video (moved into place when the run ends),
``--show`` opens a window where a display exists, ``--json`` prints one record per frame.
``--timeline`` writes one row per frame and tracked face (CSV, or Parquet with pyarrow), ``--plot``
draws it, ``--summary`` prints each track's share of time per emotion. A file shows a progress bar
with ETA on a terminal. Ctrl-C, SIGTERM (or ``q`` in the window) stop cleanly: the outputs hold the
frames processed until then, and the exit code is 130. An output that is the input is refused.
A camera or stream that delivers frames faster than they are processed is read on a thread that
keeps only the newest frame (``--all-frames`` turns this off). ``--detect-size PX`` detects on a copy
of each frame PX pixels long (the detector's measured default unless given; ``full``: the frame as it is).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from feredge.cli.options import (
    EXIT_INTERRUPTED,
    add_recognizer_options,
    build_recognizer,
    fraction,
    positive_float,
    positive_int,
    printable,
)


def configure(parser: argparse.ArgumentParser) -> None:
    from feredge.edge.options import VideoOptions  # here, not at import: `feredge --help` stays light
    from feredge.edge.video import WRITER_CODECS

    defaults = VideoOptions()

    parser.add_argument("source", metavar="SOURCE", help="video file, camera index (0) or rtsp:// / http:// URL")
    add_recognizer_options(parser)
    speed = parser.add_argument_group("speed (fewer detector runs or frames: faster, less accurate)")
    speed.add_argument(
        "--detect-every",
        type=positive_int,
        default=defaults.detect_every,
        metavar="N",
        help="run the detector every N processed frames, counted after --sample-fps skips (default: %(default)s)",
    )
    speed.add_argument(
        "--sample-fps",
        type=positive_float,
        metavar="F",
        help="process at most F frames per second of video; the others are skipped (default: all)",
    )
    parser.add_argument(
        "--smoothing",
        type=fraction,
        default=defaults.smoothing,
        metavar="ALPHA",
        help="weight of the newest frame in each face's score average, in (0, 1]; 1 disables smoothing "
        "(default: %(default)s)",
    )
    outputs = parser.add_argument_group("outputs")
    outputs.add_argument("--out", metavar="OUT.mp4", help=f"write the annotated video ({', '.join(WRITER_CODECS)})")
    outputs.add_argument(
        "--timeline",
        metavar="OUT.csv",
        help="one row per frame and tracked face: time, track id, box, label, every score, smoothed scores "
        "(.csv, or .parquet with pyarrow)",
    )
    outputs.add_argument("--plot", metavar="OUT.png", help="draw each track's emotions over time (needs matplotlib)")
    outputs.add_argument(
        "--summary", action="store_true", help="print each track's share of time per emotion and its duration"
    )
    outputs.add_argument("--json", action="store_true", help="one JSON record per frame on stdout")
    outputs.add_argument("--show", action="store_true", help="show the annotated video in a window")
    parser.add_argument("--max-frames", type=positive_int, metavar="N", help="stop after N processed frames")
    parser.add_argument(
        "--all-frames",
        action="store_true",
        help="process every frame of a camera or stream even when falling behind (default: skip to the newest)",
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from feredge.edge.atomic import sigterm_as_interrupt
    from feredge.edge.options import VideoOptions
    from feredge.edge.progress import FrameProgress
    from feredge.edge.timeline import check_plot_path, check_timeline_path, record_timeline
    from feredge.edge.video import FrameRecord, check_output

    if args.out is not None:
        check_output(Path(args.out), args.source)
    if args.timeline is not None:
        check_timeline_path(args.timeline, args.source)
    if args.plot is not None:
        check_plot_path(args.plot, args.source)
    video = VideoOptions(
        detect_every=args.detect_every,
        smoothing=args.smoothing,
        sample_fps=args.sample_fps,
        max_frames=args.max_frames,
        drop_stale=False if args.all_frames else None,
    )
    recognizer = build_recognizer(args)
    terminal = sys.stderr.isatty() and not args.json
    bar = FrameProgress(labels=True)
    last_status = 0.0

    def on_frame(record: FrameRecord) -> None:
        nonlocal last_status
        if args.json:
            print(json.dumps(record.to_dict()), flush=True)
        elif terminal and record.total is not None:  # a file: how far, how fast, how long still
            bar(record)
        elif terminal and time.monotonic() - last_status > 0.5:
            last_status = time.monotonic()
            labels = ", ".join(face.label for face in record.faces) or "no face"
            print(f"\rframe {record.index}  {record.fps:5.1f} FPS  {labels}".ljust(70), end="", file=sys.stderr)

    with sigterm_as_interrupt():  # SIGTERM stops like Ctrl-C: the outputs are finished, no temporary file stays
        recorder, summary = record_timeline(
            recognizer,
            args.source,
            video,
            timeline=args.timeline,
            keep_rows=args.plot is not None,
            on_frame=on_frame,
            out=args.out,
            show=args.show,
        )
        if terminal:
            print(file=sys.stderr)
        written = [path for path in (args.out, args.timeline) if path is not None]
        if args.plot is not None:
            from feredge.plots import plot_timeline

            written.append(str(plot_timeline(recorder.rows, args.plot)))
    if args.summary:
        tracks = recorder.summary()
        if args.json:
            print(json.dumps({"summary": [track.to_dict() for track in tracks]}), flush=True)
        else:
            print("\n".join(track.describe() for track in tracks) if tracks else "no face was found in the video")
    counts = ", ".join(f"{label} {n}" for label, n in summary.label_counts.most_common())
    ending = "interrupted" if summary.interrupted else "done"
    print(
        f"{ending}: {summary.frames} frames in {summary.seconds:.1f} s ({summary.mean_fps:.1f} FPS)"
        + (f"; face-frames: {counts}" if counts else "")
        + (f"; skipped {summary.dropped} stale frames" if summary.dropped else "")
        + (f"; wrote {printable(', '.join(written))}" if written else ""),
        file=sys.stderr,
    )
    if summary.interrupted:
        if written:
            kept = printable(", ".join(written))
            print(f"note: kept the frames processed before the interruption in {kept}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0
