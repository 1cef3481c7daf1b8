"""Only files that Gradio itself received may reach a handler: the Gradio API's file records name a
server path, and a client can write any path there.

``gr.mount_gradio_app`` leaves the Blocks "not launched", and Gradio then skips its own
upload-folder check and copies whatever path a request names into its cache (a FIFO blocks its
event loop there). ``UploadGuard`` therefore checks every file record in a Gradio API request before
Gradio sees it, and the handlers check again when they open the file (``read_uploaded``), so a
request can name only a regular file inside Gradio's upload folder, symlinks resolved. Every refusal
gives the same message, whether the path exists or not.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

from feredge.demo.service import DemoRequestError, UploadTooLargeError
from feredge.edge.errors import FeredgeError

# A Gradio API call names its inputs in a small JSON body; files go through /gradio_api/upload.
MAX_API_BODY_BYTES = 1024 * 1024
REFUSED = "not a file uploaded to this demo: upload the file first (gradio_client's handle_file does)"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class UploadPathError(DemoRequestError):
    """A Gradio API request names a file that is not one of the demo's uploads."""


def upload_folder() -> Path:
    """Gradio's upload and cache folder, resolved (Gradio's own rule, read at each call: tests set it)."""
    from gradio.utils import get_upload_folder

    return Path(get_upload_folder()).resolve()


def uploaded_file(path: Any, folder: Path | None = None) -> Path:
    """The resolved ``path`` if it is a regular file inside Gradio's upload folder, else ``UploadPathError``.

    Resolving first means ``..`` and symlinks are judged by where they lead; ``stat`` (never ``open``)
    means a FIFO or a device is refused without being touched.
    """
    if not isinstance(path, str) or not path or "\0" in path:
        raise UploadPathError(REFUSED)
    folder = folder or upload_folder()
    real = Path(os.path.realpath(path))
    try:
        inside = real.is_relative_to(folder) and real != folder
        regular = inside and stat.S_ISREG(real.stat().st_mode)
    except (OSError, ValueError):
        regular = False
    if not regular:
        raise UploadPathError(REFUSED)
    return real


def read_uploaded(path: Any, max_bytes: int, name: str) -> bytes:
    """The bytes of an uploaded file (see ``uploaded_file``), at most ``max_bytes``.

    Opened without following a last symlink and without blocking, then checked to be a regular file
    on the open descriptor, so a file swapped for a FIFO after the check is refused, not waited on.
    """
    real = uploaded_file(path)
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        raise UploadPathError(REFUSED) from None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise UploadPathError(REFUSED)
        if info.st_size > max_bytes:
            raise UploadTooLargeError(f"{name}: larger than the {max_bytes / 2**20:g} MB upload limit")
        return file.read(max_bytes + 1)


def file_paths(value: Any) -> Iterator[Any]:
    """Every ``path`` of a dict anywhere in a decoded JSON body: Gradio takes such dicts for files."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "path" in item:
                yield item["path"]
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


class UploadGuard:
    """ASGI middleware: a POST whose JSON body names a file that ``uploaded_file`` refuses is answered
    400 ``{"error": REFUSED}`` before Gradio reads, copies or opens anything. Every route is covered,
    since Gradio answers its API under several paths (``/gradio_api/call/NAME``, ``/gradio_api/queue/join``,
    ``/gradio_api/run/NAME``, ...).

    Multipart bodies (``/gradio_api/upload``, the REST ``/predict``) carry files, not paths, and pass
    unread; other POST bodies are read up to ``MAX_API_BODY_BYTES`` (413 past it), checked, then
    replayed to the app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or _is_multipart(scope):
            await self.app(scope, receive, send)
            return
        body, messages = b"", []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if len(body) > MAX_API_BODY_BYTES:
                await _answer(send, 413, f"a Gradio API request body is limited to {MAX_API_BODY_BYTES // 1024} KB")
                return
            if not message.get("more_body", False):
                break
        try:
            _check_body(body)
        except FeredgeError as exc:
            await _answer(send, 400, str(exc))
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


def _is_multipart(scope: Scope) -> bool:
    headers = dict(scope.get("headers") or [])
    return headers.get(b"content-type", b"").lower().startswith(b"multipart/")


def _check_body(body: bytes) -> None:
    try:
        value = json.loads(body) if body.strip() else None
    except (ValueError, RecursionError):
        return  # not JSON: Gradio refuses it itself, and names no file
    folder = upload_folder()
    for path in file_paths(value):
        uploaded_file(path, folder)


async def _answer(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
