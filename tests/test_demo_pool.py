"""The demo's recognizer pool, a quiet client hang-up and threads=0 (issue #12, items 11-13)."""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx", reason="the demo extra; the edge-only job does not install it")
FastAPI = pytest.importorskip("fastapi", reason="the demo extra; the edge-only job does not install it").FastAPI

from feredge.demo.api import router  # noqa: E402
from feredge.demo.service import DemoRequestError, DemoService, RecognizerPool  # noqa: E402
from feredge.edge.errors import OptionError  # noqa: E402
from feredge.edge.recognizer import EmotionRecognizer  # noqa: E402


@pytest.fixture(scope="module")
def service(tiny_models: dict[str, Path]) -> DemoService:
    return DemoService({"int8": tiny_models["int8"]}, workers=2)


def test_pool_never_lends_one_recognizer_twice_and_makes_at_most_its_size() -> None:
    made, in_use, clashes = [], set(), []
    guard = threading.Lock()

    def make() -> object:
        made.append(object())
        return made[-1]

    pool = RecognizerPool(make, size=3)

    def use(_: int) -> None:
        with pool.borrow() as item:
            with guard:
                clashes.append(id(item) in in_use)
                in_use.add(id(item))
            sum(range(2000))
            with guard:
                in_use.discard(id(item))

    with ThreadPoolExecutor(8) as workers:
        list(workers.map(use, range(400)))
    assert not any(clashes)
    assert 1 <= len(made) <= 3 and pool.made == len(made)


def test_pool_grows_only_when_every_recognizer_is_busy_and_a_failed_make_frees_its_place() -> None:
    calls = []

    def make() -> object:
        calls.append(1)
        if len(calls) == 2:
            raise OSError("cannot load")
        return object()

    pool = RecognizerPool(make, size=2)
    with pool.borrow() as first:
        pass
    with pool.borrow() as again:
        assert again is first  # idle one reused, nothing new made
    with pool.borrow(), pytest.raises(OSError), pool.borrow():
        pass
    assert pool.made == 1
    with pool.borrow() as one, pool.borrow() as two:
        assert one is not two
    assert pool.made == 2


def test_service_lends_distinct_recognizers_up_to_workers(service: DemoService) -> None:
    key = ("int8", service.default_detector, service.default_threads)
    chosen = ("int8", service.default_detector, service.default_threads)
    with service.recognizer(*chosen) as one, service.recognizer("int8") as two:
        assert isinstance(one, EmotionRecognizer) and one is not two
    assert service.pool_sizes()[key] == 2
    with service.recognizer() as again:
        assert again in (one, two)
    assert service.pool_sizes()[key] == 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"model": "nope"}, "unknown model 'nope'"),
        ({"detector": "mtcnn"}, "unknown detector 'mtcnn'"),
        ({"threads": 0}, "threads must be between 1 and"),
    ],
)
def test_service_recognizer_refuses_unknown_choices(service: DemoService, options: dict, message: str) -> None:
    with pytest.raises(DemoRequestError, match=message), service.recognizer(**options):
        pass


def test_workers_below_one_is_refused(tiny_models: dict[str, Path]) -> None:
    with pytest.raises(OptionError, match="workers must be >= 1"):
        DemoService({"int8": tiny_models["int8"]}, workers=0)


def test_health_reports_workers_and_threads_zero_is_a_400(service: DemoService, face_drawer) -> None:
    import cv2

    app = FastAPI()
    app.include_router(router(service))
    data = cv2.imencode(".png", face_drawer())[1].tobytes()

    async def call() -> tuple[httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://demo") as client:
            health = await client.get("/health")
            zero = await client.post("/predict", files={"file": ("a.png", data)}, params={"threads": "0"})
            return health, zero

    health, zero = asyncio.run(call())
    assert health.json()["workers"] == 2
    assert zero.status_code == 400 and zero.json()["error"].startswith("threads must be between 1 and")


def test_a_client_that_hangs_up_mid_upload_is_dropped_without_a_traceback(
    service: DemoService, caplog: pytest.LogCaptureFixture
) -> None:
    app = FastAPI()
    app.include_router(router(service))
    messages = iter(
        [
            {
                "type": "http.request",
                "body": b'--cut\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n\r\n\x89PNG',
                "more_body": True,
            },
            {"type": "http.disconnect"},
        ]
    )
    sent = []

    async def receive() -> dict:
        return next(messages, {"type": "http.disconnect"})

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/predict",
        "raw_path": b"/predict",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"multipart/form-data; boundary=cut")],
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 5000),
    }
    with caplog.at_level(logging.DEBUG):
        asyncio.run(app(scope, receive, send))  # raised ClientDisconnect before the fix
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert "disconnected" in caplog.text
    assert sent[0]["type"] == "http.response.start"
