"""``POST /predict`` and ``GET /health``: plain REST beside the Gradio UI, for scripts and curl.

    curl -F file=@face.jpg "http://127.0.0.1:7860/predict?detector=haar&threads=2"

``model``, ``detector`` and ``threads`` are optional, as query parameters or form fields. Errors are
JSON ``{"error": message}``: 400 for a missing field, a malformed form (one cut before its closing
boundary too), non-image, corrupt image or unknown model/detector/threads, 408 for an upload that
stalls for ``UPLOAD_STALL_S``, 413 for an upload over the size cap, whether the request says its
length or is sent in chunks (the body is counted as it arrives and reading stops at the cap). The form is
parsed by hand rather than with FastAPI parameters so that a missing field is a 400 with one
message, like every other bad input. A client that hangs up mid-upload is not an error of the
server: it is dropped quietly (a debug log line), not with a traceback. Anything unexpected is a 500
with a fixed message; its traceback goes to the server's log, never to the client.

At most ``service.workers`` requests are analyzed at once; the others wait in the event loop with
only their upload in memory, instead of each holding a thread and a decoded image.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from python_multipart.multipart import parse_options_header
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from feredge.demo.service import DemoRequestError, DemoService, UploadTooLargeError
from feredge.edge.errors import FeredgeError, ImageError

# Multipart boundaries and headers around the file; a body beyond cap + this is refused unread.
_FORM_OVERHEAD = 64 * 1024
_OPTIONS = ("model", "detector", "threads", "prior_tau")
# Longest wait for the next piece of an upload's body: a client that stops sending is let go.
UPLOAD_STALL_S = 30.0
INTERNAL_ERROR = "the demo failed on this request (an internal error, logged on the server)"

log = logging.getLogger(__name__)

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


class UploadStalledError(DemoRequestError):
    """The client stopped sending its upload's body for ``UPLOAD_STALL_S``."""


def error_status(exc: FeredgeError) -> int:
    """HTTP status for a demo error: the client's fault is 4xx, a server-side model problem 500."""
    if isinstance(exc, UploadTooLargeError):
        return 413
    if isinstance(exc, UploadStalledError):
        return 408
    if isinstance(exc, DemoRequestError | ImageError):
        return 400
    return 500


def router(service: DemoService) -> APIRouter:
    """Routes bound to ``service``; include them before mounting Gradio at ``/``."""
    routes = APIRouter()
    limiter = anyio.CapacityLimiter(service.workers)

    @routes.get("/health")
    async def health() -> dict:
        """Liveness, the choices ``/predict`` accepts, and how many requests it runs at once; answered on
        the event loop itself, not after a turn in the thread pool the analyses share."""
        return {
            "status": "ok",
            "models": list(service.models),
            "detectors": list(service.detectors),
            "workers": service.workers,
        }

    @routes.post("/predict")
    async def predict(request: Request) -> JSONResponse:
        """Multipart ``file`` (an image); optional ``model``, ``detector``, ``threads`` and ``prior_tau`` as
        query or form fields."""
        try:
            data, name, fields = await _read_upload(request, service.max_upload_bytes)
            threads = _threads(fields.get("threads"))
            choices = fields.get("model"), fields.get("detector"), threads
            analyze = functools.partial(service.analyze, data, *choices, name=name, prior_tau=fields.get("prior_tau"))
            analysis = await anyio.to_thread.run_sync(analyze, limiter=limiter)
        except FeredgeError as exc:
            return JSONResponse({"error": str(exc)}, status_code=error_status(exc))
        except ClientDisconnect:  # nobody is left to answer
            log.debug("POST /predict: the client disconnected during the upload")
            return Response(status_code=400)
        except Exception:  # a bug or a library's own error: logged, answered without its internals
            log.exception("POST /predict failed")
            return JSONResponse({"error": INTERNAL_ERROR}, status_code=500)
        return JSONResponse(analysis.to_dict())

    return routes


def _threads(value: str | None) -> int | None:
    if value is None or not value.strip():
        return None
    try:
        return int(value)
    except ValueError:
        raise DemoRequestError(f"threads must be a whole number, got {value!r}") from None


class BodyWatch:
    """``receive`` for the form parser that raises ``UploadTooLargeError`` once the body passes ``limit``
    bytes (so a chunked body is read no further), ``UploadStalledError`` when the next piece takes
    longer than ``UPLOAD_STALL_S``, and notes whether the form's closing ``--BOUNDARY--`` arrived: a body
    cut before it parses as a form without its file, which is not what went wrong."""

    def __init__(self, receive: Receive, limit: int, max_bytes: int, boundary: bytes | None) -> None:
        self._receive, self.limit, self.max_bytes = receive, limit, max_bytes
        self._closing = b"--" + boundary + b"--" if boundary else None
        self._tail = b""
        self.received = 0
        self.closed = False

    async def receive(self) -> MutableMapping[str, Any]:
        with anyio.move_on_after(UPLOAD_STALL_S) as scope:
            message = await self._receive()
        if scope.cancelled_caught:
            raise UploadStalledError(f"the upload stalled: nothing arrived for {UPLOAD_STALL_S:g} s")
        if message["type"] == "http.request":
            body = message.get("body", b"")
            self.received += len(body)
            if self.received > self.limit:
                raise UploadTooLargeError(
                    f"request of more than {self.received / 2**20:.1f} MB: larger than the "
                    f"{self.max_bytes / 2**20:g} MB upload limit"
                )
            if self._closing is not None and not self.closed:
                window = self._tail + body
                self.closed = self._closing in window
                self._tail = window[-len(self._closing) :]
        return message


def _boundary(content_type: str) -> bytes | None:
    kind, options = parse_options_header(content_type)
    return options.get(b"boundary") or None if kind == b"multipart/form-data" else None


async def _read_upload(request: Request, max_bytes: int) -> tuple[bytes, str, dict[str, str]]:
    """(file bytes, file name, option fields); the body is read up to ``max_bytes`` plus the form's overhead."""
    limit = max_bytes + _FORM_OVERHEAD
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise UploadTooLargeError(
            f"request of {int(length) / 2**20:.1f} MB: larger than the {max_bytes / 2**20:g} MB upload limit"
        )
    fields = {key: request.query_params[key] for key in _OPTIONS if key in request.query_params}
    boundary = _boundary(request.headers.get("content-type", ""))
    watch = BodyWatch(request.receive, limit, max_bytes, boundary)
    capped = Request(request.scope, watch.receive)
    try:
        async with capped.form(max_files=1, max_fields=10) as form:
            upload = form.get("file")
            fields.update({key: str(form[key]) for key in _OPTIONS if key in form})
            if boundary is not None and not watch.closed:
                raise DemoRequestError(
                    "malformed multipart form: the body ends before its closing boundary (was the upload cut off?)"
                )
            if upload is None:
                raise DemoRequestError("missing multipart field 'file' (send the image as -F file=@image.jpg)")
            if not isinstance(upload, UploadFile):
                raise DemoRequestError("field 'file' must be a file upload, not text")
            data = await upload.read(max_bytes + 1)
            name = upload.filename or "upload"
    except HTTPException as exc:
        raise DemoRequestError(f"malformed multipart form: {exc.detail}") from exc
    return data, name, fields
