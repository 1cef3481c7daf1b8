"""Uploads are decoded in worker processes with a deadline: the one way to bound a decode's CPU time.

Header checks refuse the bombs they know (pixel counts, JPEG scan counts), but a file can still make a
codec work for a long time, and a thread cannot be stopped inside OpenCV. A worker process can: a
decode that passes ``DECODE_TIMEOUT_S`` is killed with its process, the request gets a
``DecodeTimeoutError`` (an ``ImageError``, so a 400), and a fresh worker replaces it. The memory a
decode takes goes with its process too, so a bomb that fits the limits cannot leave the server's own
memory grown, and a worker's address space is capped at ``MAX_DECODE_MEMORY`` so that one decode
cannot take the device's memory either. Workers are fresh interpreters started on first use (the
server runs threads, which a fork does not copy safely, and multiprocessing's spawn would import the
caller's main script again) and take one decode at a time; there are as many as the service has workers.
"""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import sys
import threading
import weakref
from collections.abc import Iterator
from multiprocessing.connection import Connection

from feredge.edge.decode import ScaledImage, decode_image_scaled
from feredge.edge.errors import FeredgeError, ImageError

DECODE_TIMEOUT_S = 10.0
# A new worker's start (an interpreter, numpy and OpenCV) is not part of any decode's deadline.
STARTUP_TIMEOUT_S = 120.0
# A decode's own memory: a 100-megapixel image with alpha takes 400 MB; the interpreter and OpenCV ~0.5 GB.
MAX_DECODE_MEMORY = 3 * 2**30


class DecodeTimeoutError(ImageError):
    """An image took longer than the demo's decode deadline: refused as a likely decompression bomb."""


class DecoderStartError(FeredgeError, RuntimeError):
    """A decoder process did not start: the server's problem, not the image's."""


class _Worker:
    """One decoder process and the parent's ends of its two pipes."""

    def __init__(self) -> None:
        to_child, from_parent = os.pipe()[::-1]
        from_child, to_parent = os.pipe()
        code = f"import sys; from {__name__} import _serve; _serve(int(sys.argv[1]), int(sys.argv[2]))"
        # the same modules as this process: a source checkout is importable without being installed
        path = os.pathsep.join(entry for entry in sys.path if entry and os.path.isabs(entry))
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", code, str(from_parent), str(to_parent)],
                pass_fds=(from_parent, to_parent),
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONPATH": path},
            )
        finally:
            os.close(from_parent)
            os.close(to_parent)
        self.sender = Connection(to_child, readable=False)
        self.receiver = Connection(from_child, writable=False)
        self.ready = False

    def wait_ready(self) -> None:
        """Wait for the worker's first message, which it sends once it has loaded what a decode needs."""
        if self.ready:
            return
        try:
            started = self.receiver.poll(STARTUP_TIMEOUT_S) and self.receiver.recv() == ("ready", None)
        except (EOFError, OSError):
            started = False
        if not started:
            raise DecoderStartError(f"an image decoder process did not start within {STARTUP_TIMEOUT_S:g} s")
        self.ready = True

    def stop(self) -> None:
        self.sender.close()
        self.receiver.close()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(5)


class DecoderPool:
    """``pool.decode(data, name)``: ``decode_image_scaled`` in one of up to ``size`` worker processes,
    refused with ``DecodeTimeoutError`` after ``timeout_s`` seconds."""

    def __init__(self, size: int, timeout_s: float = DECODE_TIMEOUT_S) -> None:
        self.size, self.timeout_s = size, timeout_s
        self._idle: queue.LifoQueue[_Worker] = queue.LifoQueue()
        self._made = 0
        self._lock = threading.Lock()
        self._workers: set[_Worker] = set()
        self._finalizer = weakref.finalize(self, _stop_all, self._workers)

    def decode(self, data: bytes, name: str) -> ScaledImage:
        """The decoded image, or the ``ImageError`` the decode raised in its worker."""
        with self._borrow() as worker:
            try:
                worker.wait_ready()
                worker.sender.send((data, name))
                if not worker.receiver.poll(self.timeout_s):
                    self._retire(worker)
                    raise DecodeTimeoutError(
                        f"{name}: took longer than {self.timeout_s:g} s to decode; refused (a decompression bomb?)"
                    )
                status, value = worker.receiver.recv()
            except (EOFError, OSError) as exc:  # the worker died (out of memory, a crash)
                self._retire(worker)
                raise ImageError(f"{name}: the image decoder failed on this file") from exc
            except DecoderStartError:
                self._retire(worker)
                raise
        if status == "error":
            raise ImageError(value)
        return value

    def warm(self) -> None:
        """Start every worker now (they load in the background), so no request waits for one to start."""
        while (worker := self._grow()) is not None:
            self._idle.put(worker)

    def close(self) -> None:
        """Stop every worker (each also ends by itself when this process ends and its pipe closes)."""
        self._finalizer()

    @contextlib.contextmanager
    def _borrow(self) -> Iterator[_Worker]:
        worker = self._take()
        try:
            yield worker
        finally:
            if worker in self._workers:
                self._idle.put(worker)

    def _take(self) -> _Worker:
        while True:
            with contextlib.suppress(queue.Empty):
                return self._idle.get_nowait()
            worker = self._grow()
            if worker is not None:
                return worker
            with contextlib.suppress(queue.Empty):  # a retired worker frees a place without coming back
                return self._idle.get(timeout=0.5)

    def _grow(self) -> _Worker | None:
        """A new worker, or None when there are ``size`` already."""
        with self._lock:
            if self._made >= self.size:
                return None
            self._made += 1
        try:
            worker = _Worker()
        except BaseException:
            with self._lock:
                self._made -= 1
            raise
        self._workers.add(worker)
        return worker

    def _retire(self, worker: _Worker) -> None:
        """Kill a worker that overran or died, and start its replacement loading now."""
        self._workers.discard(worker)
        worker.stop()
        with self._lock:
            self._made -= 1
        with contextlib.suppress(OSError):  # no process to spare now: the next caller tries again
            self.warm()


def _stop_all(workers: set[_Worker]) -> None:
    for worker in list(workers):
        worker.stop()
    workers.clear()


def _serve(read_fd: int, write_fd: int) -> None:
    """A worker's loop: (bytes, name) in, ("ok", ScaledImage) or ("error", message) out, until the pipe closes."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MAX_DECODE_MEMORY, MAX_DECODE_MEMORY))
    receiver, sender = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    sender.send(("ready", None))
    while True:
        try:
            data, name = receiver.recv()
        except (EOFError, OSError):
            return
        try:
            answer = ("ok", decode_image_scaled(data, name))
        except FeredgeError as exc:
            answer = ("error", str(exc))
        except Exception:  # a codec's own error: the file's fault, in this project's words
            answer = ("error", f"{name}: not a readable image (the decoder failed on it)")
        sender.send(answer)
