"""The Gradio Blocks UI: an image, webcam snapshot or live webcam in, boxes, labels and charts out; or a
short clip in, the annotated video, each face's emotions over time and the timeline CSV out.

The upload handlers run with ``preprocess=False``: they get the uploaded file's record, not a PIL
decode of it, so a non-image or truncated file reaches ``DemoService`` and comes back as the same
friendly message ``POST /predict`` gives, instead of a Gradio processing error. A record names a
server path that a client can set to anything, so the handlers open only files that
``feredge.demo.uploads`` accepts (Gradio's own uploads), and every error is answered in this
project's words: an unexpected one is logged with its traceback and answered with a fixed message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import cv2
import gradio as gr
import numpy as np
from fastapi import FastAPI

from feredge.demo import example_images
from feredge.demo.api import INTERNAL_ERROR
from feredge.demo.clips import IDLE_MESSAGE as VIDEO_IDLE_MESSAGE
from feredge.demo.clips import MAX_CLIP_SECONDS, analyze_clip, human_size
from feredge.demo.service import Analysis, DemoService
from feredge.demo.uploads import read_uploaded, uploaded_file
from feredge.edge.draw import annotate
from feredge.edge.errors import FeredgeError
from feredge.edge.options import VideoOptions

MAX_CHARTS = 4
IDLE_MESSAGE = "Upload an image, take a webcam snapshot or pick an example."
COMPARE_IDLE_MESSAGE = (
    "Upload an image: every model answers for the same faces, the default first (the Model choice does not apply)."
)
# System fonts: the default theme fetches Google Fonts, which an offline Pi cannot reach.
THEME = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
TIE_NOTE = (
    "Some scores are equal (an int8 model scores in steps of 1/256): equal scores are listed in the model's "
    "label order, and a tie for the best is named with `=`."
)

log = logging.getLogger(__name__)
T = TypeVar("T")


def build_blocks(service: DemoService) -> gr.Blocks:
    """The demo page: shared model, detector and thread controls, then an Image tab (upload, webcam
    snapshot or live webcam; exposed to ``gradio_client`` as ``/predict``), a Video tab (a short
    clip; ``/analyze_video``) and a Compare tab (every model on one image; ``/compare``)."""
    examples = example_images()
    with gr.Blocks(title="feredge demo", analytics_enabled=False, delete_cache=(3600, 3600)) as blocks:
        gr.Markdown(
            "## feredge: facial emotion recognition on the edge\n"
            "Runs on this device with the TFLite runtime. REST: `POST /predict` with an image in field `file`."
        )
        with gr.Row():
            model = gr.Dropdown(list(service.models), value=service.default_model, label="Model")
            detector = gr.Radio(
                list(service.detectors),
                value=service.default_detector,
                label="Face detector",
                info="none: the whole image is one face crop",
            )
            threads = gr.Slider(
                1, service.max_threads, value=service.default_threads, step=1, label="Interpreter threads"
            )
        controls = [model, detector, threads]
        with gr.Tab("Image", elem_id="tab-image"), gr.Row():
            with gr.Column():
                with gr.Tab("Upload or snapshot"):
                    image = gr.Image(
                        label="Image (upload, webcam snapshot or paste)",
                        type="filepath",
                        sources=["upload", "webcam", "clipboard"],
                        elem_id="input-image",
                    )
                    if examples:
                        gr.Examples([[str(p)] for p in examples], inputs=image, cache_examples=False)
                with gr.Tab("Live webcam"):
                    live = gr.Image(label="Webcam stream", sources=["webcam"], streaming=True, elem_id="live-image")
                button = gr.Button("Analyze", variant="primary")
            with gr.Column():
                annotated = gr.Image(label="Faces", interactive=False, elem_id="annotated")
                status = gr.Markdown(IDLE_MESSAGE, elem_id="status")
                charts = [gr.Label(visible=False, elem_id=f"face-{i}") for i in range(1, MAX_CHARTS + 1)]
                with gr.Accordion("JSON (as POST /predict returns it)", open=False):
                    record = gr.JSON(label="Result")
        with gr.Tab("Video", elem_id="tab-video"):
            build_video_tab(service, *controls)
        with gr.Tab("Compare models", elem_id="tab-compare"), gr.Row():
            with gr.Column():
                compare_image = gr.Image(
                    label="Image", type="filepath", sources=["upload", "webcam", "clipboard"], elem_id="compare-image"
                )
                compare_button = gr.Button("Compare", variant="primary")
            with gr.Column():
                comparison = gr.Markdown(COMPARE_IDLE_MESSAGE, elem_id="comparison")
                with gr.Accordion("JSON (one record per model)", open=False):
                    compare_record = gr.JSON(label="Results")
        gr.on(
            [compare_image.change, compare_button.click, detector.change, threads.release],
            partial(compare_upload, service),
            inputs=[compare_image, detector, threads],
            outputs=[comparison, compare_record],
            preprocess=False,
            api_name="compare",
        )
        outputs = [annotated, status, record, *charts]
        gr.on(
            [image.change, button.click, model.change, detector.change, threads.release],
            partial(predict_upload, service),
            inputs=[image, *controls],
            outputs=outputs,
            preprocess=False,
            api_name="predict",
        )
        live.stream(
            partial(predict_frame, service), inputs=[live, *controls], outputs=outputs, api_visibility="private"
        )
    return blocks


def mount_ui(app: FastAPI, service: DemoService) -> FastAPI:
    """Mount the UI at ``/`` of ``app`` with Gradio's upload cap set to the service's."""
    blocks = build_blocks(service)
    mounted = gr.mount_gradio_app(
        app, blocks, path="/", theme=THEME, ssr_mode=False, max_file_size=service.max_upload_bytes
    )
    # Only launch() sets this, and Gradio skips its own check that API inputs are uploads without it.
    blocks.has_launched = True
    return mounted


def predict_upload(
    service: DemoService, payload: dict[str, Any] | None, model: str, detector: str, threads: float
) -> tuple:
    """Gradio handler for an uploaded file or webcam snapshot (the raw upload record, not a decode)."""
    if not payload:
        return _message(IDLE_MESSAGE)
    name = upload_name(payload)

    def work() -> tuple:
        data = read_uploaded(payload.get("path"), service.max_upload_bytes, name)
        return _respond(service, data, model, detector, threads, name)

    return _guard(work, lambda text: _message(_error_line(text), {"error": text}))


def compare_upload(
    service: DemoService, payload: dict[str, Any] | None, detector: str, threads: float
) -> tuple[str, Any]:
    """Gradio handler of the Compare tab: every model on one upload, as a table and JSON records."""
    if not payload:
        return COMPARE_IDLE_MESSAGE, None
    name = upload_name(payload)

    def work() -> tuple[str, Any]:
        data = read_uploaded(payload.get("path"), service.max_upload_bytes, name)
        analyses = service.compare(data, detector, threads, name)
        return comparison_table(analyses, service.default_model), [analysis.to_dict() for analysis in analyses]

    return _guard(work, lambda text: (_error_line(text), {"error": text}))


def upload_name(payload: dict[str, Any]) -> str:
    """The name the user's file had (the client's word, never a server path), for messages."""
    name = payload.get("orig_name")
    return Path(name).name if isinstance(name, str) and Path(name).name else "upload"


def _guard(work: Callable[[], T], failed: Callable[[str], T]) -> T:
    """``work()``, or ``failed(message)`` with the message toasted: a ``FeredgeError``'s own text, and a
    fixed text for anything else (its traceback goes to the server log, never to the client)."""
    try:
        return work()
    except FeredgeError as exc:
        text = str(exc)
    except Exception:
        log.exception("demo request failed")
        text = INTERNAL_ERROR
    gr.Warning(text)
    return failed(text)


def _error_line(text: str) -> str:
    return f"**Error:** {text}"


def comparison_table(analyses: list[Analysis], default_model: str) -> str:
    """Markdown: one row per model with each face's label(s) and confidence, and the model's times."""
    rows = ["| model | faces | infer ms | total ms |", "| --- | --- | ---: | ---: |"]
    for analysis in analyses:
        faces = ", ".join(f"{shown_label(face)} {face.confidence:.0%}" for face in analysis.faces) or "no face found"
        name = f"{analysis.model} (default)" if analysis.model == default_model else analysis.model
        t = analysis.timings
        rows.append(f"| {name} | {faces} | {t.infer_ms:.1f} | {t.total_ms:.1f} |")
    return "\n".join(rows)


def predict_frame(service: DemoService, frame: np.ndarray | None, model: str, detector: str, threads: float) -> tuple:
    """Gradio handler for a live webcam frame (RGB array)."""
    if frame is None:
        return _message(IDLE_MESSAGE)
    return _guard(
        lambda: _respond(service, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), model, detector, threads, "webcam"),
        lambda text: _message(_error_line(text), {"error": text}),
    )


def _respond(
    service: DemoService, image: bytes | np.ndarray, model: str, detector: str, threads: float, name: str
) -> tuple:
    """The Image tab's outputs for one image; errors propagate to the caller's ``_guard``."""
    analysis = service.analyze(image, model, detector, threads, name=name)
    shown = [
        gr.Label(
            value=face.scores,
            num_top_classes=len(face.scores),
            label=f"Face {number}: {shown_label(face)} {face.confidence:.0%}",
            visible=True,
        )
        for number, face in enumerate(analysis.faces[:MAX_CHARTS], 1)
    ]
    annotated = cv2.cvtColor(annotate(analysis.decoded, analysis.faces), cv2.COLOR_BGR2RGB)
    return (annotated, summary(analysis), analysis.to_dict(), *shown, *_hidden_charts(MAX_CHARTS - len(shown)))


def tied(scores: dict[str, float]) -> list[list[str]]:
    """Labels grouped by equal score, best first, each group in the model's label order: an int8
    model's scores come in steps of 1/256, so exact ties are common and must not look ranked."""
    groups: dict[float, list[str]] = {}
    for label, score in scores.items():
        groups.setdefault(score, []).append(label)
    return [groups[score] for score in sorted(groups, reverse=True)]


def shown_label(face: Any) -> str:
    """The face's label, or every label tied with it at the top (``happy = neutral``)."""
    if face.label not in face.scores:  # "uncertain": below the recognizer's min_confidence
        return face.label
    best = tied(face.scores)[0]
    return " = ".join(best) if face.label in best else face.label


def summary(analysis: Analysis) -> str:
    """Markdown: what was found (or a clear "no face found") and the measured latency per stage."""
    count = len(analysis.faces)
    if count == 0:
        head = "**No face found.** If the image already is a face crop, choose detector `none`."
    else:
        labels = ", ".join(shown_label(face) for face in analysis.faces)
        head = f"**{count} face{'s' if count > 1 else ''}:** {labels}"
        if count > MAX_CHARTS:
            head += f" (charts for the first {MAX_CHARTS})"
        if any(len(group) > 1 for face in analysis.faces for group in tied(face.scores)):
            head += f"\n\n{TIE_NOTE}"
    t = analysis.timings
    return (
        f"{head}\n\nlatency: detect {t.detect_ms:.1f} ms · infer {t.infer_ms:.1f} ms · "
        f"total {t.total_ms:.1f} ms — model `{analysis.model}`, detector `{analysis.detector}`, "
        f"{analysis.threads} thread{'s' if analysis.threads > 1 else ''}"
    )


def _message(text: str, record: dict | None = None) -> tuple:
    """Outputs for an idle or failed request: no image, ``text`` as status, no charts."""
    return (None, text, record, *_hidden_charts(MAX_CHARTS))


def _hidden_charts(count: int) -> list[gr.Label]:
    return [gr.Label(value=None, visible=False) for _ in range(count)]


def build_video_tab(service: DemoService, model: gr.Dropdown, detector: gr.Radio, threads: gr.Slider) -> None:
    """The Video tab's components and its handler (``/analyze_video``), inside the page's ``gr.Blocks``."""
    with gr.Row():
        with gr.Column():
            # A file box, not a gr.Video: a browser cannot play many uploads (mp4v, AVI), and a video
            # player would show its "not playable" error for a clip this tab reads well.
            clip = gr.File(
                label=f"Clip (up to {MAX_CLIP_SECONDS:g} s and {human_size(service.max_upload_bytes)})",
                file_types=["video"],
                elem_id="input-video",
            )
            detect_every = gr.Slider(
                1,
                10,
                value=VideoOptions.detect_every,
                step=1,
                label="Run the face detector every N frames",
                info="higher: faster",
            )
            button = gr.Button("Analyze video", variant="primary", elem_id="analyze-video")
        with gr.Column():
            annotated = gr.Video(label="Annotated video", interactive=False, elem_id="annotated-video")
            status = gr.Markdown(VIDEO_IDLE_MESSAGE, elem_id="video-status")
            plot = gr.Image(label="Emotions over time", type="filepath", interactive=False, elem_id="timeline-plot")
            table = gr.File(label="Timeline (CSV: one row per frame and face)", elem_id="timeline-csv")
    # The button alone starts a clip: an upload that started it too made one click analyse it twice.
    gr.on(
        [button.click],
        partial(predict_clip, service),
        inputs=[clip, model, detector, threads, detect_every],
        outputs=[annotated, plot, table, status],
        preprocess=False,
        api_name="analyze_video",
    )


def predict_clip(
    service: DemoService,
    payload: dict[str, Any] | None,
    model: str,
    detector: str,
    threads: float,
    detect_every: float,
    progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio's way to ask for a progress bar)
) -> tuple:
    """Gradio handler for an uploaded clip (the raw upload record, never a converted copy)."""
    payload = payload.get("video", payload) if isinstance(payload, dict) else None  # gr.Video wraps the file
    if not payload:
        return None, None, None, VIDEO_IDLE_MESSAGE
    name = upload_name(payload)

    def on_progress(done: int, total: int | None) -> None:
        if total:
            progress((done, total), desc="frames", unit="frames")

    def work() -> tuple:
        path = uploaded_file(payload.get("path"))
        result = analyze_clip(service, path, name, model, detector, threads, int(detect_every), on_progress)
        plot = str(result.plot) if result.plot is not None else None
        return str(result.video), plot, str(result.timeline), result.status

    return _guard(work, lambda text: (None, None, None, _error_line(text)))
