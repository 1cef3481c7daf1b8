"""The demo: the shared service, REST ``/predict`` with good and bad input, the Gradio API, the CLI."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from test_edge_images import png_header

from feredge import cli
from feredge.cli.options import EXIT_USER_ERROR
from feredge.demo import EXAMPLES_DIR
from feredge.demo.app import compare_upload, comparison_table, predict_frame
from feredge.demo.service import (
    MAX_UPLOAD_BYTES,
    DemoRequestError,
    DemoService,
    UploadTooLargeError,
    model_choices,
)
from feredge.edge import detectors
from feredge.edge.detectors import DEFAULT_DETECTOR, available_detectors
from feredge.edge.errors import ImageError
from feredge.edge.labels import FER2013
from feredge.edge.options import RecognizerOptions


def png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


@pytest.fixture(scope="module")
def service(tiny_models: dict[str, Path]) -> DemoService:
    return DemoService({"int8": tiny_models["int8"], "float16": tiny_models["float16"]})


def test_demo_imports_no_tensorflow_and_no_train_stage() -> None:
    code = (
        "import sys, feredge.demo.app, feredge.demo.api, feredge.demo.server, feredge.cli.demo\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras')"
        " or m.startswith('feredge.train'))\n"
        "print(bad)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"


def test_model_choices_name_models_by_stem_and_add_the_shipped_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = tmp_path / "shipped" / "feredge_default_int8.tflite"
    monkeypatch.setattr("feredge.edge.model.MODELS_DIR", shipped.parent)
    monkeypatch.setattr("feredge.edge.model.DEFAULT_MODEL", shipped)
    assert model_choices([tmp_path / "a.tflite", tmp_path / "b.tflite"]) == {
        "a": tmp_path / "a.tflite",
        "b": tmp_path / "b.tflite",
    }
    clash = [tmp_path / "x" / "model.tflite", tmp_path / "y" / "model.tflite"]
    assert list(model_choices(clash)) == ["x/model", "y/model"]
    shipped.parent.mkdir()
    shipped.write_bytes(b"")
    assert list(model_choices([tmp_path / "a.tflite"])) == ["a", "feredge_default_int8"]
    assert list(model_choices([shipped])) == ["feredge_default_int8"]


def test_yunet_is_offered_only_when_its_model_is_at_hand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert available_detectors() == ("haar", "yunet", "blazeface", "none")  # shipped as package data
    without_file = replace(detectors.DETECTORS["yunet"], ready=lambda model_path: model_path is not None)
    monkeypatch.setitem(detectors.DETECTORS, "yunet", without_file)  # as if installed without package data
    assert "yunet" not in available_detectors()
    assert "yunet" in available_detectors(tmp_path / "yunet.onnx")


def test_service_finds_faces_labels_and_stage_timings(service: DemoService, face_scene) -> None:
    scene, placed = face_scene
    result = service.analyze(png(scene), name="scene.png").to_dict()
    json.dumps(result)
    assert result["model"] == "int8" and result["detector"] == DEFAULT_DETECTOR and result["image_size"] == [640, 480]
    assert len(result["faces"]) == len(placed)
    for face in result["faces"]:
        assert face["label"] in FER2013 and set(face["scores"]) == set(FER2013)
    timings = result["timings"]
    assert timings["faces"] == 2 and timings["decode_ms"] > 0
    assert timings["total_ms"] >= timings["detect_ms"] + timings["infer_ms"]


def test_detector_none_treats_the_whole_image_as_a_face(service: DemoService) -> None:
    sky = EXAMPLES_DIR / "no_face.png"
    assert service.analyze(sky.read_bytes()).faces == []
    faces = service.analyze(sky.read_bytes(), detector="none").faces
    assert len(faces) == 1 and faces[0].box == (0, 0, 240, 180)


@pytest.mark.parametrize(
    ("data", "options", "error", "message"),
    [
        (b"just text", {}, ImageError, "not a readable image"),
        (b"", {}, ImageError, "empty"),
        (b"x" * (MAX_UPLOAD_BYTES + 1), {}, UploadTooLargeError, "10 MB upload limit"),
        (None, {"model": "nope"}, DemoRequestError, "unknown model 'nope'; choose from int8, float16"),
        (None, {"detector": "mtcnn"}, DemoRequestError, "unknown detector 'mtcnn'"),
        (None, {"threads": 99}, DemoRequestError, "threads must be between 1 and"),
        (None, {"threads": "two"}, DemoRequestError, "threads must be a whole number, got 'two'"),
        (None, {"threads": 1.5}, DemoRequestError, "threads must be a whole number, got 1.5"),
    ],
)
def test_service_rejects_bad_requests_with_clear_errors(
    service: DemoService, face_drawer, data, options, error, message
) -> None:
    with pytest.raises(error, match=message):
        service.analyze(png(face_drawer()) if data is None else data, **options)


def test_compare_gives_every_models_answer_for_the_same_faces(service: DemoService, face_scene) -> None:
    scene, placed = face_scene
    analyses = service.compare(png(scene), detector="haar", threads="1", name="scene.png")
    assert [a.model for a in analyses] == list(service.models) == ["int8", "float16"]
    assert {(a.detector, a.threads, a.timings.detect_ms) for a in analyses} == {
        ("haar", 1, analyses[0].timings.detect_ms)
    }  # one detection, shared
    for analysis in analyses:
        alone = service.analyze(png(scene), analysis.model, "haar", threads=1)
        assert [f.box for f in analysis.faces] == [f.box for f in alone.faces] and len(alone.faces) == len(placed)
        assert [f.label for f in analysis.faces] == [f.label for f in alone.faces]
        np.testing.assert_allclose(
            [list(f.scores.values()) for f in analysis.faces], [list(f.scores.values()) for f in alone.faces], atol=1e-6
        )
    table = comparison_table(analyses, service.default_model)
    assert "| int8 (default) |" in table and "| float16 |" in table and table.count("\n") == 1 + len(analyses)
    markdown, records = compare_upload(service, None, DEFAULT_DETECTOR, 1)
    assert records is None and "Upload an image" in markdown
    with pytest.raises(ImageError, match="not a readable image"):
        service.compare(b"just text")


def test_large_upload_is_decoded_reduced_and_reports_its_original_size(service: DemoService) -> None:
    wide = cv2.imencode(".jpg", np.full((120, 4400, 3), 90, np.uint8))[1].tobytes()
    analysis = service.analyze(wide, name="panorama.jpg")
    assert analysis.image.shape[:2] == (60, 2200)
    assert analysis.to_dict()["image_size"] == [4400, 120]
    from feredge.demo.app import _respond

    annotated, _, record, *_ = _respond(service, wide, "int8", "haar", 1, "panorama.jpg")
    assert annotated.shape == (60, 2200, 3) and record["image_size"] == [4400, 120]


def test_concurrent_requests_give_the_same_answers_as_sequential_ones(service: DemoService, face_scene) -> None:
    data = png(face_scene[0])
    expected = [(f.box, f.scores) for f in service.analyze(data, "float16", threads=1).faces]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: service.analyze(data, "float16", threads=1), range(16)))
    assert all([(f.box, f.scores) for f in result.faces] == expected for result in results)


def test_live_frame_handler_takes_rgb_frames(service: DemoService, face_drawer) -> None:
    frame = cv2.cvtColor(face_drawer(), cv2.COLOR_BGR2RGB)
    annotated, status, record, first_chart, *_ = predict_frame(service, frame, "int8", "haar", 1)
    assert annotated.shape == frame.shape
    assert status.startswith("**1 face:**") and "latency: detect" in status
    assert record["faces"][0]["label"] == first_chart.value["label"]


def test_rest_predict_returns_faces_scores_and_latency(demo_server, face_scene) -> None:
    url, _ = demo_server
    files = {"file": ("scene.png", png(face_scene[0]), "image/png")}
    response = httpx.post(f"{url}/predict", files=files, params={"model": "float16"}, data={"detector": "none"})
    assert response.status_code == 200
    result = response.json()
    assert result["model"] == "float16" and result["detector"] == "none"
    assert [face["box"] for face in result["faces"]] == [[0, 0, 640, 480]]
    assert set(result["timings"]) >= {"detect_ms", "infer_ms", "total_ms"}
    health = httpx.get(f"{url}/health").json()
    assert health["models"] == ["int8", "float16"] and {"haar", "none"} <= set(health["detectors"])


@pytest.mark.parametrize(
    ("files", "params", "status", "message"),
    [
        ({"file": ("notes.txt", b"not an image at all", "text/plain")}, {}, 400, "notes.txt: not a readable image"),
        ("truncated", {}, 400, "cut.jpg: truncated image file"),
        ({"other": ("a.png", b"data", "image/png")}, {}, 400, "missing multipart field 'file'"),
        ({"file": (None, "text instead of a file")}, {}, 400, "must be a file upload"),
        ("oversized", {}, 413, "10 MB upload limit"),
        ("truncated", {"detector": "mtcnn"}, 400, "unknown detector 'mtcnn'"),
        ("bomb", {}, 400, "bomb.png: 20000x20000 pixels (400 MP) is above the limit of 100 MP"),
    ],
)
def test_rest_predict_rejects_bad_input_with_json_and_stays_up(
    demo_server, face_scene, files, params, status, message
) -> None:
    url, _ = demo_server
    if files == "truncated":
        jpeg = cv2.imencode(".jpg", face_scene[0])[1].tobytes()
        files = {"file": ("cut.jpg", jpeg[: len(jpeg) // 2], "image/jpeg")}
    elif files == "bomb":
        files = {"file": ("bomb.png", png_header(20000, 20000), "image/png")}
    elif files == "oversized":
        files = {"file": ("huge.png", b"\0" * (MAX_UPLOAD_BYTES + 1), "image/png")}
    response = httpx.post(f"{url}/predict", files=files, params=params)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert httpx.get(f"{url}/health").status_code == 200


def test_gradio_client_calls_the_predict_api(demo_server, face_drawer, tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    url, _ = demo_server
    face = tmp_path / "face.png"
    face.write_bytes(png(face_drawer(240)))
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"\xff\xd8\xff not really a jpeg")
    client = Client(url, verbose=False)

    image, status, record, chart, *hidden = client.predict(
        handle_file(str(face)), "int8", "haar", 1, api_name="/predict"
    )
    assert Path(image).is_file()
    assert status.startswith("**1 face:**") and "infer" in status and "total" in status
    assert record["model"] == "int8" and len(record["faces"]) == 1
    assert chart["visible"] and {c["label"] for c in chart["value"]["confidences"]} == set(FER2013)
    assert not any(h["visible"] for h in hidden)

    _, status, record, *_ = client.predict(handle_file(str(junk)), "float16", "haar", 1, api_name="/predict")
    assert status.startswith("**Error:** junk.jpg: ") and "error" in record
    sky = handle_file(str(EXAMPLES_DIR / "no_face.png"))
    _, status, *_ = client.predict(sky, "int8", "haar", 2, api_name="/predict")
    assert status.startswith("**No face found.**")

    table, records = client.predict(handle_file(str(face)), "haar", 1, api_name="/compare")
    assert [r["model"] for r in records] == ["int8", "float16"] and all(len(r["faces"]) == 1 for r in records)
    assert "| int8 (default) |" in table
    table, records = client.predict(handle_file(str(junk)), "haar", 1, api_name="/compare")
    assert table.startswith("**Error:** junk.jpg") and "error" in records


def test_cli_reports_a_busy_port_and_a_missing_model(tiny_int8_model: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["demo", "--model", "missing.tflite"]) == EXIT_USER_ERROR
    assert "missing.tflite: model file not found" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert cli.main(["demo", "--model", str(tiny_int8_model), "--port", str(port)]) == EXIT_USER_ERROR
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_port_out_of_range_is_a_usage_error_and_a_server_error(capsys: pytest.CaptureFixture) -> None:
    from fastapi import FastAPI

    from feredge.demo.server import BackgroundServer, ServerError

    with pytest.raises(SystemExit) as info:
        cli.main(["demo", "--port", "70000"])
    assert info.value.code == 2
    assert "argument --port: expected a port number from 0 to 65535, got '70000'" in capsys.readouterr().err
    with pytest.raises(ServerError, match=r"cannot listen on 127\.0\.0\.1:70000"):
        BackgroundServer(FastAPI(), "127.0.0.1", 70000)


def test_rest_predict_takes_threads_as_query_or_form_field(demo_server, face_drawer) -> None:
    url, _ = demo_server
    files = {"file": ("face.png", png(face_drawer()), "image/png")}
    assert httpx.post(f"{url}/predict", files=files, params={"threads": "1"}).json()["threads"] == 1
    assert httpx.post(f"{url}/predict", files=files, data={"threads": "2"}).json()["threads"] == 2
    bad = httpx.post(f"{url}/predict", files=files, params={"threads": "many"})
    assert bad.status_code == 400 and bad.json()["error"] == "threads must be a whole number, got 'many'"
    bad = httpx.post(f"{url}/predict", files=files, params={"threads": "99"})
    assert bad.status_code == 400 and "threads must be between 1 and" in bad.json()["error"]


def test_rest_predict_takes_prior_tau_for_this_request_alone(demo_server, face_drawer) -> None:
    url, service = demo_server
    files = {"file": ("face.png", png(face_drawer()), "image/png")}
    raw = httpx.post(f"{url}/predict", files=files, data={"prior_tau": "0"})
    assert raw.status_code == 200 and set(raw.json()) == set(httpx.post(f"{url}/predict", files=files).json())
    # the tiny model has no training prior: a tau of 1 reaches its check and is refused as a request error
    refused = httpx.post(f"{url}/predict", files=files, params={"prior_tau": "1"})
    assert refused.status_code == 400 and "prior_tau must be 0, got 1: it has no training class prior" in refused.text
    with service.recognizer() as recognizer:
        assert recognizer.prior_tau == 0.0  # the request's tau did not stay with the cached recognizer
    for value in ("many", "5", "nan"):
        bad = httpx.post(f"{url}/predict", files=files, params={"prior_tau": value})
        assert bad.status_code == 400
        assert bad.json()["error"] == f"prior_tau must be a number from 0 to 3, got {value!r}"


def test_chunked_upload_without_length_is_refused_at_the_cap(demo_server) -> None:
    url, _ = demo_server
    chunk = 64 * 1024

    def body():
        yield b'--cut\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n\r\n'
        for _ in range((MAX_UPLOAD_BYTES + 64 * 1024) // chunk + 2):
            yield b"\0" * chunk
        yield b"\r\n--cut--\r\n"

    headers = {"content-type": "multipart/form-data; boundary=cut"}
    response = httpx.post(f"{url}/predict", content=body(), headers=headers, timeout=60)
    assert response.status_code == 413 and "10 MB upload limit" in response.json()["error"]
    assert httpx.get(f"{url}/health").status_code == 200


def test_reading_an_endless_body_stops_after_the_cap() -> None:
    import asyncio

    from starlette.requests import Request

    from feredge.demo.api import _FORM_OVERHEAD, _read_upload

    chunk, reads = 16 * 1024, []

    async def endless():  # a chunked upload that would go on for 100 chunks (1.6 MB)
        reads.append(1)
        if len(reads) == 1:
            head = b'--cut\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n\r\n'
            return {"type": "http.request", "body": head, "more_body": True}
        if len(reads) > 100:
            return {"type": "http.request", "body": b"\r\n--cut--\r\n", "more_body": False}
        return {"type": "http.request", "body": b"\0" * chunk, "more_body": True}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/predict",
        "query_string": b"",
        "headers": [(b"content-type", b"multipart/form-data; boundary=cut")],
    }
    with pytest.raises(UploadTooLargeError, match="upload limit"):
        asyncio.run(_read_upload(Request(scope, endless), max_bytes=100_000))
    assert len(reads) <= (100_000 + _FORM_OVERHEAD) // chunk + 2


def test_detector_model_is_checked_at_start_up(tiny_int8_model: Path, tmp_path: Path, capsys) -> None:
    missing = tmp_path / "missing.onnx"
    assert cli.main(["demo", "--model", str(tiny_int8_model), "--detector-model", str(missing)]) == 2
    assert f"{missing}: detector model file not found" in capsys.readouterr().err
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not onnx")
    assert cli.main(["demo", "--model", str(tiny_int8_model), "--detector-model", str(junk)]) == 2
    assert "junk.onnx: not a usable YuNet face detector model" in capsys.readouterr().err


def test_a_detector_model_goes_only_to_the_detector_that_runs_one(tiny_models: dict[str, Path]) -> None:
    """``--detector-model`` replaces YuNet's file; the other detectors still serve without one."""
    from feredge.edge.detectors import YUNET_MODEL, detector_names

    service = DemoService({"int8": tiny_models["int8"]}, RecognizerOptions(detector_model=YUNET_MODEL))
    for detector in detector_names():
        analysis = service.analyze(np.full((64, 64, 3), 128, np.uint8), detector=detector)
        assert analysis.detector == detector


def test_demo_help_says_the_detector_model_replaces_the_shipped_yunet(capsys) -> None:
    with pytest.raises(SystemExit):
        cli.main(["demo", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "instead of the shipped one for the yunet detector (the default detector)" in text
    assert "enables" not in text


def test_labels_option_serves_models_without_metadata(tiny_models: dict[str, Path], face_drawer) -> None:
    from feredge.edge.errors import MetadataError

    with pytest.raises(MetadataError, match="metadata has no labels"):
        DemoService({"plain": tiny_models["no_labels"]})
    service = DemoService({"plain": tiny_models["no_labels"]}, RecognizerOptions(labels="fer2013"))
    (face,) = service.analyze(png(face_drawer())).faces
    assert set(face.scores) == set(FER2013)
    assert cli.build_parser().parse_args(["demo", "--labels", "fer5"]).labels == "fer5"


def test_demo_prior_tau_and_detect_size_reach_every_recognizer(tiny_models: dict[str, Path], monkeypatch) -> None:
    from feredge.edge.errors import ModelLoadError

    given = []

    def stop(models, options, **kwargs):
        given.append(options)
        raise ModelLoadError("stopped before serving")

    monkeypatch.setattr("feredge.demo.service.DemoService", stop)
    assert cli.main(["demo", "--model", str(tiny_models["int8"]), "--prior-tau", "0", "--detect-size", "full"]) == 2
    assert (given[0].prior_tau, given[0].detect_size) == (0.0, None)
    monkeypatch.undo()
    service = DemoService({"int8": tiny_models["int8"]}, RecognizerOptions(prior_tau=0.0, detect_size=160))
    for detector in ("haar", "yunet"):
        with service.recognizer(detector=detector) as recognizer:
            assert recognizer.prior_tau == 0.0 and recognizer.detector.detect_size == 160
