"""The Gradio Blocks UI: an image, webcam snapshot or live webcam in; boxes, labels and charts out.

The upload handler runs with ``preprocess=False``: it gets the uploaded file itself, not a PIL
decode of it, so a non-image or truncated file reaches ``DemoService`` and comes back as the same
friendly message ``POST /predict`` gives, instead of a Gradio processing error.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import cv2
import gradio as gr
import numpy as np
from fastapi import FastAPI

from feredge.demo import example_images
from feredge.demo.service import Analysis, DemoService
from feredge.edge.draw import annotate
from feredge.edge.errors import FeredgeError

MAX_CHARTS = 4
IDLE_MESSAGE = "Upload an image, take a webcam snapshot or pick an example."
# System fonts: the default theme fetches Google Fonts, which an offline Pi cannot reach.
THEME = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


def build_blocks(service: DemoService) -> gr.Blocks:
    """The demo page; its image handler is exposed to ``gradio_client`` as ``/predict``."""
    examples = example_images()
    with gr.Blocks(title="feredge demo", analytics_enabled=False, delete_cache=(3600, 3600)) as blocks:
        gr.Markdown(
            "## feredge: facial emotion recognition on the edge\n"
            "Runs on this device with the TFLite runtime. REST: `POST /predict` with an image in field `file`."
        )
        with gr.Row():
            with gr.Column():
                with gr.Tab("Image"):
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
                button = gr.Button("Analyze", variant="primary")
            with gr.Column():
                annotated = gr.Image(label="Faces", interactive=False, elem_id="annotated")
                status = gr.Markdown(IDLE_MESSAGE, elem_id="status")
                charts = [gr.Label(visible=False, elem_id=f"face-{i}") for i in range(1, MAX_CHARTS + 1)]
                with gr.Accordion("JSON (as POST /predict returns it)", open=False):
                    record = gr.JSON(label="Result")
        outputs = [annotated, status, record, *charts]
        controls = [model, detector, threads]
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
    return gr.mount_gradio_app(
        app,
        build_blocks(service),
        path="/",
        theme=THEME,
        ssr_mode=False,
        max_file_size=service.max_upload_bytes,
    )


def predict_upload(
    service: DemoService, payload: dict[str, Any] | None, model: str, detector: str, threads: float
) -> tuple:
    """Gradio handler for an uploaded file or webcam snapshot (the raw upload record, not a decode)."""
    if not payload:
        return _message(IDLE_MESSAGE)
    path = Path(payload["path"])
    return _respond(service, path.read_bytes(), model, detector, threads, payload.get("orig_name") or path.name)


def predict_frame(service: DemoService, frame: np.ndarray | None, model: str, detector: str, threads: float) -> tuple:
    """Gradio handler for a live webcam frame (RGB array)."""
    if frame is None:
        return _message(IDLE_MESSAGE)
    return _respond(service, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), model, detector, threads, "webcam")


def _respond(
    service: DemoService, image: bytes | np.ndarray, model: str, detector: str, threads: float, name: str
) -> tuple:
    try:
        analysis = service.analyze(image, model, detector, int(threads), name=name)
    except FeredgeError as exc:
        gr.Warning(str(exc))
        return _message(f"**Error:** {exc}", {"error": str(exc)})
    shown = [
        gr.Label(
            value=face.scores,
            num_top_classes=len(face.scores),
            label=f"Face {number}: {face.label} {face.confidence:.0%}",
            visible=True,
        )
        for number, face in enumerate(analysis.faces[:MAX_CHARTS], 1)
    ]
    annotated = cv2.cvtColor(annotate(analysis.decoded, analysis.faces), cv2.COLOR_BGR2RGB)
    return (annotated, summary(analysis), analysis.to_dict(), *shown, *_hidden_charts(MAX_CHARTS - len(shown)))


def summary(analysis: Analysis) -> str:
    """Markdown: what was found (or a clear "no face found") and the measured latency per stage."""
    count = len(analysis.faces)
    if count == 0:
        head = "**No face found.** If the image already is a face crop, choose detector `none`."
    else:
        labels = ", ".join(face.label for face in analysis.faces)
        head = f"**{count} face{'s' if count > 1 else ''}:** {labels}"
        if count > MAX_CHARTS:
            head += f" (charts for the {MAX_CHARTS} largest)"
    t = analysis.timings
    return (
        f"{head}\n\nlatency: detect {t['detect_ms']:.1f} ms · infer {t['infer_ms']:.1f} ms · "
        f"total {t['total_ms']:.1f} ms — model `{analysis.model}`, detector `{analysis.detector}`, "
        f"{analysis.threads} thread{'s' if analysis.threads > 1 else ''}"
    )


def _message(text: str, record: dict | None = None) -> tuple:
    """Outputs for an idle or failed request: no image, ``text`` as status, no charts."""
    return (None, text, record, *_hidden_charts(MAX_CHARTS))


def _hidden_charts(count: int) -> list[gr.Label]:
    return [gr.Label(value=None, visible=False) for _ in range(count)]
