"""One ``feredge evaluate-photos`` run: photos, detectors, framings, models and peers in one record.

Every detector runs once per photo and every row reuses those faces, so rows differ only in what they
vary. Timings run with ``threads`` interpreter and OpenCV threads; the load average is recorded at
the start and the end, since a busy machine makes every millisecond an upper bound.
"""

from __future__ import annotations

import datetime
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from feredge import __version__
from feredge.benchmarks import groups
from feredge.benchmarks.errors import PeerError
from feredge.benchmarks.latency import opencv_threads, summarize
from feredge.benchmarks.machine import load_average
from feredge.benchmarks.photos import (
    Cropper,
    Framing,
    Photo,
    best_rows,
    check_known_classes,
    class_counts,
    evaluate_grid,
    read_photos,
    run_detector,
    score_row,
    unknown_classes,
)
from feredge.edge.decode import decode_image
from feredge.edge.detectors import DEFAULT_MAX_SIDE, DETECTORS, detect_faces, make_detector
from feredge.edge.model import EmotionModel, load_model

log = logging.getLogger(__name__)

FRAME_FACE_SIDE = 120.0  # the face of the timed 640x480 frame, in pixels
FRAME_WARMUP = 3
PEER_ROWS = {"fer": "fer (tflite)", "facex": "facex"}  # the model column of each peer's row


@dataclass(frozen=True)
class PhotoSettings:
    data: str
    models: tuple[str, ...] = ()
    detectors: tuple[str, ...] = ("haar", "yunet", "blazeface")
    margins: tuple[float, ...] = (0.0,)
    offsets: tuple[float, ...] = (0.0,)
    align: bool = False
    peers: tuple[str, ...] = ()
    min_face: int | None = None  # None: each detector's own
    max_side: int = DEFAULT_MAX_SIDE
    groups: int = 0
    frames: int = 50
    extra: tuple[str, ...] = ()
    threads: int = 1
    seed: int = 0


def run_photos(settings: PhotoSettings) -> dict[str, Any]:
    """The JSON-ready record that ``photo_report`` renders."""
    started = load_average()
    photos, unreadable = read_photos(settings.data)
    # before the grid, which a bad path would otherwise waste; only --groups uses them
    extras = [decode_image(path) for path in settings.extra] if settings.groups else []
    models = _load_models(settings)
    for name, model in models.items():
        check_known_classes(photos, model.labels, name)
    with opencv_threads(settings.threads):
        sizes = {"min_face": settings.min_face, "max_side": settings.max_side}
        detectors = {name: make_detector(name, **sizes) for name in settings.detectors}
        detections = [run_detector(name, detector, photos) for name, detector in detectors.items()]
        margins = _with_metadata_framings(settings, models)
        rows = evaluate_grid(photos, models, detections, *margins, settings.align)
        _mark_defaults(rows, models)
        peers, peers_skipped = _peers(photos, settings)
        rows += [peer.row for peer in peers]
        finders = {**detectors, **{peer.name: peer.detector for peer in peers}}
        consensus = _consensus_detectors()
        group = _groups(settings, photos, extras, finders, consensus) if settings.groups else None
        frames = _frame_rates(settings, photos, detectors, consensus, models, rows, peers)
    return {
        "feredge": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "load_average": {"start": started, "end": load_average()},
        "settings": asdict(settings),
        "photos": {
            "path": str(settings.data),
            "count": len(photos),
            "classes": class_counts(photos),
            "unreadable": unreadable,
            "left_out": _left_out(photos, models, peers),
        },
        "peers_skipped": peers_skipped,
        "models": {name: _contract(model) for name, model in models.items()},
        "rows": rows,
        "best": sorted(best_rows(rows), key=lambda r: -r["accuracy"]),  # most accurate first, for the report
        "groups": group,
        "frames": frames,
    }


def _load_models(settings: PhotoSettings) -> dict[str, EmotionModel]:
    from feredge.edge.artifacts import display_names

    if not settings.models:
        model = load_model(threads=settings.threads)
        return {Path(model.name).stem: model}
    names = display_names(list(settings.models))
    return {name: load_model(path, threads=settings.threads) for name, path in zip(names, settings.models, strict=True)}


def _left_out(photos: list[Photo], models: dict[str, EmotionModel], peers: list[Peer]) -> dict[str, dict[str, int]]:
    """Per model (and peer), the photos per class it was not scored on because it does not know the class."""
    labels = {name: model.labels for name, model in models.items()}
    labels.update({peer.row["model"]: peer.model.labels for peer in peers})
    return {name: left for name, known in labels.items() if (left := unknown_classes(photos, known))}


def _contract(model: EmotionModel) -> dict[str, Any]:
    """What the model's metadata makes every row do: its photometric step and its framings."""
    meta = model.metadata
    return {"photometric": meta.photometric, "crop_margin": meta.crop_margin, "framing": meta.framing}


def _with_metadata_framings(settings: PhotoSettings, models: dict[str, EmotionModel]) -> tuple[list, list]:
    """The grid's margins and offsets, plus each model's own (metadata) framing of every detector."""
    margins, offsets = list(settings.margins), list(settings.offsets)
    for model in models.values():
        for detector in settings.detectors:
            margin, offset = model.metadata.framing_for(detector)
            margins += [] if margin in margins else [margin]
            offsets += [] if offset in offsets else [offset]
    return margins, offsets


def _mark_defaults(rows: list[dict[str, Any]], models: dict[str, EmotionModel]) -> None:
    """``default``: the row the runtime would serve (the model's metadata framing, no alignment)."""
    for row in rows:
        margin, offset = models[row["model"]].metadata.framing_for(row["detector"])
        row["default"] = not row["align"] and (row["margin"], row["offset"]) == (margin, offset)


@dataclass(frozen=True)
class Peer:
    """A peer's whole pipeline: its scored row, and its detector, model and crop (for groups and frame rates)."""

    name: str
    row: dict[str, Any]
    detector: Any
    model: EmotionModel
    crop: Cropper


def _peers(photos: list[Photo], settings: PhotoSettings) -> tuple[list[Peer], dict[str, str]]:
    """The requested peers' pipelines, and for each one not installed the one-line reason it is skipped."""
    peers, skipped = [], {}
    for name in dict.fromkeys(settings.peers):
        try:
            peers.append(_peer(name, photos, settings.threads))
        except PeerError as exc:
            log.warning("%s: skipped: %s", name, exc)
            skipped[name] = str(exc)
    return peers, skipped


def _peer(name: str, photos: list[Photo], threads: int) -> Peer:
    """A peer package's whole pipeline (its own detector, crop and model) as one row."""
    if name == "fer":
        from feredge.benchmarks.fer_pipeline import fer_face_crop, fer_pipeline

        detector, model = fer_pipeline(threads)
        crop, framing = fer_face_crop, "fer: square +10 px"
    else:
        from feredge.benchmarks.facex_pipeline import facex_face_crop, facex_pipeline

        detector, model = facex_pipeline(threads)
        crop, framing = facex_face_crop, "facex: the box"
    check_known_classes(photos, model.labels, PEER_ROWS[name])
    detections = run_detector(name, detector, photos)
    row = score_row(
        model,
        photos,
        detections,
        crop,
        model=PEER_ROWS[name],
        framing=framing,
        margin=None,
        offset=None,
        align=False,
    )
    row["default"] = True
    return Peer(name, row, detector, model, crop)


def _consensus_detectors() -> dict[str, Any]:
    """Every registered face finder, unrestricted by size: the consensus must not depend on the selection."""
    return {
        name: make_detector(name, min_face=0, max_side=4096, detect_size=None)
        for name, entry in DETECTORS.items()
        if not entry.whole_image
    }


def _groups(
    settings: PhotoSettings,
    photos: list[Photo],
    extras: list[np.ndarray],
    detectors: dict[str, Any],
    consensus: dict[str, Any],
) -> dict[str, Any]:
    images = [photo.image for photo in photos] + extras
    sources, self_iou = groups.consensus_sources(images, consensus)
    if not sources:
        return {"error": "no photo has a face that two detectors agree on"}
    rng = np.random.default_rng(settings.seed)
    canvases = [groups.compose(sources, rng) for _ in range(settings.groups)]
    return {
        "sources": len(sources),
        "of_images": len(images),
        "canvases": len(canvases),
        "faces": sum(len(truth) for _, truth in canvases),
        "self_iou": self_iou,
        "rows": groups.detection_scores(detectors, canvases),
    }


def _frame_rates(
    settings: PhotoSettings,
    photos: list[Photo],
    detectors: dict[str, Any],
    consensus: dict[str, Any],
    models: dict[str, EmotionModel],
    rows: list[dict[str, Any]],
    peers: list[Peer],
) -> list[dict[str, Any]]:
    """Detect + crop (or align) + classify on a 640x480 frame with one face: ms and frames/s per pipeline.

    Each detector runs with the first model and that model's best framing for it on the photos.
    """
    sources, _ = groups.consensus_sources([photos[0].image], consensus)
    if not sources:
        return []
    frame = groups.one_face_frame(sources[0], FRAME_FACE_SIDE)
    model_name, model = next(iter(models.items()))
    best = {row["detector"]: row for row in best_rows([r for r in rows if r["model"] == model_name])}
    pipelines = {}
    for name in settings.detectors:
        framing = Framing(best[name]["margin"], best[name]["offset"], best[name]["align"])
        pipelines[name] = (detectors[name], framing.cropper(name, model.spec.input_size), model, framing.name)
    for peer in peers:
        pipelines[peer.name] = (peer.detector, peer.crop, peer.model, peer.name)
    out = []
    for name, (detector, crop, pipeline_model, framing_name) in pipelines.items():
        times, found = [], 0
        for i in range(FRAME_WARMUP + settings.frames):
            start = time.perf_counter()
            faces = detect_faces(detector, frame)
            if faces:
                pipeline_model.predict_crops([crop(frame, face) for face in faces])
            if i >= FRAME_WARMUP:
                times.append((time.perf_counter() - start) * 1000.0)
                found = len(faces)
        total = summarize(times)
        out.append({"pipeline": name, "framing": framing_name, "faces": found, "ms": total, "fps": 1000 / total["p50"]})
    fer_fps = next((row["fps"] for row in out if row["pipeline"] == "fer"), None)
    for row in out:
        row["x_fer"] = row["fps"] / fer_fps if fer_fps else None
    return out
