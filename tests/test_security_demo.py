"""Issue 29, the demo server: hostile Gradio API calls, FIFOs, slow clients, malformed uploads, slow decodes.

Every Gradio API name is called through the real HTTP API with paths a client may write into a file
record: none may be read, copied or waited on, and all get the same answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import socket
import stat
import threading
import time
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("gradio")  # the demo extra: the edge-only job of .ci/run skips this module

import httpx
from starlette.requests import Request

from feredge.demo import api, decoder, server
from feredge.demo.app import INTERNAL_ERROR, predict_upload, shown_label, summary, tied
from feredge.demo.decoder import DecoderPool, DecodeTimeoutError
from feredge.demo.uploads import REFUSED, UploadPathError, read_uploaded, upload_folder, uploaded_file

API_NAMES = ("predict", "compare", "analyze_video")


def png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def file_record(path: str) -> dict:
    return {"path": path, "orig_name": "photo.png", "meta": {"_type": "gradio.FileData"}}


def inputs(name: str, record: dict) -> list:
    """The inputs of each API name, with ``record`` as its file."""
    return {
        "predict": [record, "int8", "haar", 1],
        "compare": [record, "haar", 1],
        "analyze_video": [record, "int8", "haar", 1, 3],
    }[name]


@pytest.fixture
def hostile(tmp_path: Path, face_drawer):
    """name -> a path a client may send, each pointing at (or being) something that is no upload."""
    secret = tmp_path / "secret.png"
    secret.write_bytes(png(face_drawer(120)) + uuid.uuid4().bytes)  # unique bytes: a copy is recognizable
    outside_fifo = tmp_path / "pipe.png"
    os.mkfifo(outside_fifo)
    folder = upload_folder()
    inside = folder / f"feredge-test-{uuid.uuid4().hex}"
    inside.mkdir(parents=True)
    (inside / "link.png").symlink_to(secret)
    os.mkfifo(inside / "fifo.png")
    (inside / "sub").mkdir()
    paths = {
        "absolute": str(secret),
        "dotdot": f"{folder}/../{os.path.relpath(secret, folder.parent)}",
        "relative": os.path.relpath(secret),
        "symlink_out": str(inside / "link.png"),
        "fifo_outside": str(outside_fifo),
        "fifo_inside": str(inside / "fifo.png"),
        "dev_zero": "/dev/zero",
        "folder": str(inside / "sub"),
        "missing": str(inside / "missing.png"),
        "url": "http://127.0.0.1:9/photo.png",
    }
    yield paths, secret, [outside_fifo, inside / "fifo.png"]
    for fifo in (outside_fifo, inside / "fifo.png"):
        _release(fifo)
    for entry in (inside / "link.png", inside / "fifo.png"):
        entry.unlink()
    (inside / "sub").rmdir()
    inside.rmdir()


def _release(fifo: Path) -> None:
    """Let a reader stuck on ``fifo`` go (a failing run must not hang the session's server)."""
    with contextlib.suppress(OSError):
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def _has_reader(fifo: Path) -> bool:
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError as exc:
        assert exc.errno == errno.ENXIO  # no process has it open for reading
        return False
    return True


def _copies(secret: Path) -> int:
    """Files in Gradio's upload folder with the secret's bytes."""
    content, size = secret.read_bytes(), secret.stat().st_size
    found = 0
    for root, _, files in os.walk(upload_folder()):
        for name in files:
            path = Path(root, name)
            with contextlib.suppress(OSError):
                if path.is_file() and not path.is_symlink() and path.stat().st_size == size:
                    found += path.read_bytes() == content
    return found


@pytest.mark.parametrize("api_name", API_NAMES)
def test_no_api_name_reads_a_path_that_is_no_upload(demo_server, hostile, api_name) -> None:
    url, _ = demo_server
    paths, secret, fifos = hostile
    before = _copies(secret)
    for kind, path in paths.items():
        response = httpx.post(
            f"{url}/gradio_api/call/{api_name}", json={"data": inputs(api_name, file_record(path))}, timeout=10
        )
        assert (response.status_code, response.json()) == (400, {"error": REFUSED}), kind
    assert _copies(secret) == before
    assert not any(_has_reader(fifo) for fifo in fifos)


def test_every_event_refuses_hostile_paths_through_the_queue_too(demo_server, hostile) -> None:
    """The browser's route, for every event the page has (the private webcam stream included)."""
    url, _ = demo_server
    paths, secret, _ = hostile
    events = httpx.get(f"{url}/config", timeout=10).json()["dependencies"]
    assert len(events) >= 3
    for event in events:
        for kind in ("absolute", "symlink_out", "fifo_inside", "dev_zero"):
            body = {"data": [file_record(paths[kind])], "fn_index": event["id"], "session_hash": "s29", "trigger_id": 0}
            response = httpx.post(f"{url}/gradio_api/queue/join", json=body, timeout=10)
            assert (response.status_code, response.json()) == (400, {"error": REFUSED}), (event["id"], kind)
    assert _copies(secret) == 0


def test_uploads_still_work_through_the_api(demo_server, face_drawer, tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    url, _ = demo_server
    face = tmp_path / "face.png"
    face.write_bytes(png(face_drawer(200)))
    _, status, record, *_ = Client(url, verbose=False).predict(
        handle_file(str(face)), "int8", "haar", 1, api_name="/predict"
    )
    assert status.startswith("**1 face:**") and record["faces"]


def test_a_fifo_request_never_stops_health_or_rest_predict(demo_server, hostile, face_drawer) -> None:
    url, _ = demo_server
    paths, _, fifos = hostile
    answers: list[int] = []

    def hostile_call() -> None:
        for kind in ("fifo_outside", "fifo_inside"):
            body = {"data": inputs("predict", file_record(paths[kind]))}
            with contextlib.suppress(httpx.HTTPError):
                answers.append(httpx.post(f"{url}/gradio_api/call/predict", json=body, timeout=10).status_code)

    caller = threading.Thread(target=hostile_call)
    caller.start()
    try:
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200
        files = {"file": ("face.png", png(face_drawer()), "image/png")}
        assert httpx.post(f"{url}/predict", files=files, timeout=30).status_code == 200
    finally:
        caller.join(15)
        for fifo in fifos:
            _release(fifo)
    assert answers == [400, 400]


def test_handlers_open_only_regular_files_in_the_upload_folder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "uploads"))
    folder = tmp_path / "uploads"
    folder.mkdir()
    (folder / "ok.png").write_bytes(b"data")
    os.mkfifo(folder / "fifo.png")
    (folder / "out.png").symlink_to(tmp_path / "secret.png")
    (tmp_path / "secret.png").write_bytes(b"secret")
    assert read_uploaded(str(folder / "ok.png"), 100, "ok.png") == b"data"
    assert uploaded_file(str(folder / "sub" / ".." / "ok.png")) == folder.resolve() / "ok.png"
    done = threading.Event()

    def refuse_fifo() -> None:
        with pytest.raises(UploadPathError):
            read_uploaded(str(folder / "fifo.png"), 100, "fifo.png")
        done.set()

    threading.Thread(target=refuse_fifo, daemon=True).start()
    finished = done.wait(5)
    _release(folder / "fifo.png")
    assert finished, "reading a FIFO blocked"
    for bad in (folder / "out.png", tmp_path / "secret.png", folder, "/dev/zero", "", None, 3, "a\0b"):
        with pytest.raises(UploadPathError, match=f"^{re.escape(REFUSED)}$"):
            read_uploaded(bad if bad is None or isinstance(bad, int) else str(bad), 100, "x.png")


def test_unexpected_errors_reach_the_client_in_the_projects_words(tmp_path, monkeypatch, face_drawer) -> None:
    """An OpenCV assertion (with its source file and line) or an OSError naming a server path is logged,
    not shown: the page and the API get one fixed sentence."""
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    upload = tmp_path / "face.png"
    upload.write_bytes(png(face_drawer()))

    class Service:
        max_upload_bytes = 2**20

        def analyze(self, *args, **kwargs):
            raise cv2.error("OpenCV(4.10.0) /io/opencv/modules/imgcodecs/src/loadsave.cpp:79: error: (-215)")

    _, status, record, *_ = predict_upload(Service(), {"path": str(upload), "orig_name": "face.png"}, "m", "haar", 1)
    assert status == f"**Error:** {INTERNAL_ERROR}" and record == {"error": INTERNAL_ERROR}
    assert "cpp" not in status and os.getcwd() not in status


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        ("multipart/form-data; boundary=cut", b'--cut\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\nabc', "ends before its closing boundary"),  # noqa: E501
        ("multipart/form-data; boundary=cut", b'--cut\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\nabc\r\n--cut\r\n', "ends before its closing boundary"),  # noqa: E501
        ("multipart/form-data", b"--cut\r\n", "malformed multipart form"),
    ],
    ids=["no-closing-boundary", "no-closing-dashes", "no-boundary"],
)  # fmt: skip
def test_a_multipart_body_cut_short_is_a_malformed_upload(demo_server, content_type, body, message) -> None:
    url, _ = demo_server
    response = httpx.post(f"{url}/predict", content=body, headers={"content-type": content_type}, timeout=10)
    assert response.status_code == 400 and message in response.json()["error"]
    assert "missing" not in response.json()["error"]


def test_an_upload_that_stalls_is_let_go(monkeypatch) -> None:
    monkeypatch.setattr(api, "UPLOAD_STALL_S", 0.2)
    sent = []

    async def stalls():
        if not sent:
            sent.append(1)
            head = b'--cut\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n\r\nabc'
            return {"type": "http.request", "body": head, "more_body": True}
        await asyncio.sleep(3600)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/predict",
        "query_string": b"",
        "headers": [(b"content-type", b"multipart/form-data; boundary=cut")],
    }
    with pytest.raises(api.UploadStalledError, match="stalled") as info:
        asyncio.run(api._read_upload(Request(scope, stalls), max_bytes=1000))
    assert api.error_status(info.value) == 408


@pytest.fixture
def small_server(monkeypatch):
    """A bare app behind the demo's uvicorn settings, with a 0.5 s header deadline and 3 connections."""
    from fastapi import FastAPI

    monkeypatch.setattr(server.HeaderTimeoutH11, "header_timeout_s", 0.5)
    monkeypatch.setattr(server, "MAX_CONNECTIONS", 3)
    app = FastAPI()
    app.get("/ping")(lambda: {"ok": True})
    with server.BackgroundServer(app) as running:
        yield running


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        return sock.recv(1024) == b""
    except TimeoutError:
        return False


def test_a_client_that_sends_no_or_half_a_request_head_is_dropped(small_server) -> None:
    idle = socket.create_connection((small_server.host, small_server.port))
    slow = socket.create_connection((small_server.host, small_server.port))
    slow.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
    with idle, slow:
        assert _closed_within(idle, 5) and _closed_within(slow, 5)
    assert httpx.get(f"{small_server.url}/ping", timeout=5).json() == {"ok": True}


def test_connections_past_the_limit_get_503_and_keep_alive_is_bounded(small_server) -> None:
    config = small_server._server.config
    assert (config.timeout_keep_alive, config.limit_concurrency) == (server.KEEP_ALIVE_S, 3)
    held = [socket.create_connection((small_server.host, small_server.port)) for _ in range(3)]
    try:
        time.sleep(0.1)
        assert httpx.get(f"{small_server.url}/ping", timeout=5).status_code == 503
    finally:
        for sock in held:
            sock.close()


def test_a_decode_past_the_deadline_is_refused_and_the_next_one_works() -> None:
    pool = DecoderPool(1, timeout_s=0.05)
    try:
        big = png(np.zeros((6000, 6000), np.uint8))
        with pytest.raises(DecodeTimeoutError, match=r"^big\.png: took longer than 0\.05 s to decode"):
            pool.decode(big, "big.png")
        pool.timeout_s = 0.5  # the replacement's start (about 1 s) is not part of a decode's deadline
        small = pool.decode(png(np.full((20, 30, 3), 7, np.uint8)), "small.png")
        assert small.image.shape == (20, 30, 3) and int(small.image[0, 0, 0]) == 7
        with pytest.raises(decoder.ImageError, match=r"^junk\.png: not a readable image"):
            pool.decode(b"junk", "junk.png")
    finally:
        pool.close()


def test_a_decode_timeout_is_a_400_for_rest_predict(tiny_models, face_drawer) -> None:
    from feredge.demo.server import BackgroundServer, create_app
    from feredge.demo.service import DemoService

    service = DemoService({"int8": tiny_models["int8"]}, workers=1, decode_timeout_s=0.05)
    with BackgroundServer(create_app(service)) as running:
        files = {"file": ("big.png", png(np.zeros((6000, 6000), np.uint8)), "image/png")}
        response = httpx.post(f"{running.url}/predict", files=files, timeout=30)
        assert response.status_code == 400 and "to decode; refused" in response.json()["error"]
        assert httpx.get(f"{running.url}/health", timeout=5).status_code == 200
    service.decoders.close()


def test_int8_ties_are_shown_as_ties() -> None:
    from feredge.edge.recognizer import Face

    scores = {"angry": 0.0078, "happy": 0.41, "neutral": 0.41, "sad": 0.0078, "fear": 0.0078, "surprise": 0.16}
    assert tied(scores) == [["happy", "neutral"], ["surprise"], ["angry", "sad", "fear"]]
    face = Face((0, 0, 10, 10), "happy", 0.41, scores)
    assert shown_label(face) == "happy = neutral"
    alone = Face((0, 0, 10, 10), "surprise", 0.5, {"surprise": 0.5, "happy": 0.3, "sad": 0.2})
    assert shown_label(alone) == "surprise" and shown_label(Face((0, 0, 1, 1), "uncertain", 0.4, scores)) == "uncertain"

    from types import SimpleNamespace

    class Timings(dict):  # read as keys or as attributes: the summary needs only the three times
        __getattr__ = dict.__getitem__

    def analysis(face: Face) -> SimpleNamespace:
        timings = Timings(detect_ms=1.0, infer_ms=1.0, total_ms=2.0)
        return SimpleNamespace(faces=[face], timings=timings, model="int8", detector="haar", threads=1)

    text = summary(analysis(face))
    assert text.startswith("**1 face:** happy = neutral") and "label order" in text
    assert "label order" not in summary(analysis(alone))


def test_the_video_tab_runs_a_clip_once_and_previews_no_unplayable_upload(demo_server) -> None:
    url, _ = demo_server
    config = httpx.get(f"{url}/config", timeout=10).json()
    components = {c["id"]: c for c in config["components"]}
    clip = next(c for c in config["components"] if c.get("props", {}).get("elem_id") == "input-video")
    assert clip["type"] == "file"  # a gr.Video would try to play an mp4v upload and fail
    (event,) = [d for d in config["dependencies"] if d.get("api_name") == "analyze_video"]
    assert [components[target[0]]["props"].get("elem_id") for target in event["targets"]] == ["analyze-video"]
    assert stat.S_ISDIR(os.stat(upload_folder()).st_mode)


def test_rest_predict_answers_an_unexpected_error_as_json_without_internals(demo_server, monkeypatch) -> None:
    url, service = demo_server

    def crash(*args, **kwargs):
        raise cv2.error("OpenCV(4.10.0) /io/opencv/modules/imgproc/src/resize.cpp:4152: error: (-215:Assertion failed)")

    monkeypatch.setattr(service, "analyze", crash)
    files = {"file": ("thin.png", png(np.full((1, 4000), 128, np.uint8)), "image/png")}
    response = httpx.post(f"{url}/predict", files=files, timeout=30)
    assert response.status_code == 500 and response.json() == {"error": api.INTERNAL_ERROR}
    assert "cpp" not in response.text and os.getcwd() not in response.text
