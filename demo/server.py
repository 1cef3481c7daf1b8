"""One FastAPI app (REST routes, then the Gradio UI at ``/``) served by uvicorn in a background thread.

The socket is bound before uvicorn starts, so a busy port is a clear ``ServerError`` instead of a log
line in a dying thread, and port 0 gives a free port whose number is known up front (tests, load test).

Slow or idle clients are bounded: a connection must send its request head within ``HEADER_TIMEOUT_S``
of connecting (or of its previous response), an idle keep-alive connection is closed after
``KEEP_ALIVE_S``, and past ``MAX_CONNECTIONS`` open connections uvicorn answers 503 at once. Request
bodies are bounded by the routes themselves (the REST upload's size cap and stall timeout); a reverse
proxy in front adds its own limits (docs/deploy.md).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from feredge.demo.api import router
from feredge.demo.service import DemoService
from feredge.demo.uploads import UploadGuard
from feredge.edge.errors import FeredgeError

HEADER_TIMEOUT_S = 10.0
KEEP_ALIVE_S = 5
# Open connections (a browser tab holds a few); each may carry an upload of up to the upload cap.
MAX_CONNECTIONS = 100


class ServerError(FeredgeError, RuntimeError):
    """The demo server cannot listen on its address or did not start."""


def create_app(service: DemoService) -> FastAPI:
    """REST routes first, then Gradio mounted at ``/`` (a mount at ``/`` catches every other path)."""
    from feredge.demo.app import mount_ui

    # No /docs: Swagger UI loads its scripts from a CDN an offline device cannot reach.
    app = FastAPI(title="feredge demo", docs_url=None, redoc_url=None)
    app.include_router(router(service))
    app.add_middleware(UploadGuard)
    return mount_ui(app, service)


class HeaderTimeoutH11(H11Protocol):
    """uvicorn's h11 protocol with a deadline for the request head, which uvicorn does not have: a
    client that connects and sends nothing, or trickles its headers, is dropped after
    ``HEADER_TIMEOUT_S`` instead of holding the connection for as long as it likes."""

    header_timeout_s = HEADER_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)
        self._arm_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()

    def _header_timeout(self) -> None:
        # their_state leaves IDLE once a whole request head has arrived
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


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
        config = uvicorn.Config(
            app,
            http=HeaderTimeoutH11,
            log_level="warning",
            timeout_graceful_shutdown=2,
            timeout_keep_alive=KEEP_ALIVE_S,
            limit_concurrency=MAX_CONNECTIONS,
        )
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
