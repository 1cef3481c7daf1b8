"""One FastAPI app (REST routes, then the Gradio UI at ``/``) served by uvicorn in a background thread.

The socket is bound before uvicorn starts, so a busy port is a clear ``ServerError`` instead of a log
line in a dying thread, and port 0 gives a free port whose number is known up front (tests, load test).
"""

from __future__ import annotations

import socket
import threading
import time

import uvicorn
from fastapi import FastAPI

from feredge.demo.api import router
from feredge.demo.service import DemoService
from feredge.edge.errors import FeredgeError


class ServerError(FeredgeError, RuntimeError):
    """The demo server cannot listen on its address or did not start."""


def create_app(service: DemoService) -> FastAPI:
    """REST routes first, then Gradio mounted at ``/`` (a mount at ``/`` catches every other path)."""
    from feredge.demo.app import mount_ui

    # No /docs: Swagger UI loads its scripts from a CDN an offline device cannot reach.
    app = FastAPI(title="feredge demo", docs_url=None, redoc_url=None)
    app.include_router(router(service))
    return mount_ui(app, service)


class BackgroundServer:
    """``with BackgroundServer(app, host, port) as server:`` serves ``app`` until the block ends."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        self._socket = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._socket.bind((host, port))
        except (OSError, OverflowError) as exc:  # OverflowError: a port outside 0-65535
            self._socket.close()
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise ServerError(f"cannot listen on {host}:{port}: {reason}") from exc
        self.host = host
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="feredge-demo", daemon=True
        )

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        """Start serving; returns once requests are answered (Gradio's queue included)."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ServerError(f"the demo server on {self.url} did not start")
            time.sleep(0.05)

    def wait(self) -> None:
        """Block until the server stops; short joins keep Ctrl-C responsive."""
        while self._thread.is_alive():
            self._thread.join(0.5)

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(10)
        self._socket.close()

    def __enter__(self) -> BackgroundServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
