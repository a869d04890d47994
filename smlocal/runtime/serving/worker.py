"""The serving worker: runs INSIDE a job sandbox as ``python -m smlocal.runtime.serving.worker``.

It loads the model from ``/opt/ml/model`` with the handler the host chose
(``SMLOCAL_SERVING_HANDLER``, see :mod:`smlocal.runtime.serving.plan`) and then serves the SageMaker
container contract over HTTP/1.1 (keep-alive, one thread per connection) on the Unix domain socket
``SMLOCAL_SERVING_SOCKET`` -- a path under /opt/ml, so the host reaches it through the job folder
even when the sandbox has no network:

* ``GET /ping`` -> 200 (the socket only exists once the model is loaded);
* ``POST /invocations`` with Content-Type / Accept -> the prediction;
* ``GET /execution-parameters`` -> what batch transform may ask (404 when the image has none).

smlocal's framework images serve the same way on TCP (``smlocal_container.serve`` calls
:func:`run` with :func:`serve_tcp`).

If the model cannot be loaded, the worker prints the traceback and a last line starting with
:data:`LOAD_ERROR_MARKER`, and exits 1: the host reports that line as the reason.
"""

from __future__ import annotations

import http.server
import os
import signal
import socketserver
import sys
import threading
import traceback
from collections.abc import Callable

from smlocal.runtime.serving import handlers, plan

LOAD_ERROR_MARKER = "smlocal-serving: model server failed to start: "
READY_MARKER = "smlocal-serving: ready"
_REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 404: "Not Found", 406: "Not Acceptable",
            415: "Unsupported Media Type", 500: "Internal Server Error", 503: "Service Unavailable"}


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """The worker on a Unix domain socket (the process backend's sandbox); closing removes it."""

    daemon_threads = True
    handler: handlers.Handler

    def server_close(self) -> None:
        super().server_close()
        if os.path.exists(self.server_address):
            os.unlink(self.server_address)


class TCPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """The worker on a TCP port (smlocal's framework images: ``SAGEMAKER_BIND_TO_PORT``)."""

    daemon_threads = True
    allow_reuse_address = True
    handler: handlers.Handler


Server = UnixServer | TCPServer


class RequestHandler(http.server.BaseHTTPRequestHandler):
    """The SageMaker container contract (``/ping``, ``/invocations``, ``/execution-parameters``)
    over the server's :class:`~smlocal.runtime.serving.handlers.Handler`."""

    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, format, *args) -> None:  # noqa: A002 - quiet: the host logs what matters
        pass

    def address_string(self) -> str:
        return "local"

    def _send(self, status: int, body: bytes = b"", content_type: str | None = None) -> None:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}", f"Content-Length: {len(body)}"]
        if content_type:
            lines.append(f"Content-Type: {content_type}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head + body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path == "/ping":
            self._send(200)
        elif self.path == "/execution-parameters":
            response = self.server.handler.execution_parameters()
            if response is None:
                self._send(404, b"Not Found", "text/plain")
            else:
                self._send(response.status, response.body, response.content_type)
        else:
            self._send(404, b"Not Found", "text/plain")

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path != "/invocations":
            self._send(404, b"Not Found", "text/plain")
            return
        content_type = self.headers.get("ContentType") or self.headers.get("Content-Type")
        accept = self.headers.get("Accept")
        try:
            response = self.server.handler.invoke(body, content_type, accept)
        except Exception:  # noqa: BLE001 - a handler bug must not kill the connection silently
            traceback.print_exc()
            self._send(500, b"smlocal serving worker error", "text/plain")
            return
        self._send(response.status, response.body, response.content_type)


def serve(socket_path: str, handler: handlers.Handler) -> UnixServer:
    """Binds the socket (replacing a stale one) and returns the server, not yet serving."""
    if os.path.exists(socket_path):
        os.unlink(socket_path)
    server = UnixServer(socket_path, RequestHandler)
    server.handler = handler
    return server


def serve_tcp(port: int, handler: handlers.Handler, host: str = "0.0.0.0") -> TCPServer:
    """Binds ``host:port`` and returns the server, not yet serving."""
    server = TCPServer((host, port), RequestHandler)
    server.handler = handler
    return server


def run(load: Callable[[], handlers.Handler], bind: Callable[[handlers.Handler], Server]) -> int:
    """Loads the handler, binds its listener and serves until SIGTERM/SIGINT.

    Args:
        load: Returns the model's handler; whatever it raises is reported as the last stderr line,
            starting with :data:`LOAD_ERROR_MARKER`.
        bind: Returns the listener (:func:`serve` or :func:`serve_tcp`) for the loaded handler.

    Returns:
        The exit code: 1 when the model could not be loaded, else 0 once stopped.
    """
    try:
        handler = load()
    except BaseException as exc:  # noqa: BLE001 - report why, whatever it is (SystemExit included)
        traceback.print_exc()
        detail = f"{type(exc).__name__}: {exc}".strip().replace("\n", " ")
        print(LOAD_ERROR_MARKER + detail, file=sys.stderr, flush=True)
        return 1
    server = bind(handler)

    def shutdown(signum, frame) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    print(READY_MARKER, flush=True)
    try:
        server.serve_forever(poll_interval=0.05)
    finally:
        server.server_close()
    return 0


def main() -> int:
    """Entry of ``python -m smlocal.runtime.serving.worker``: the socket from ``SMLOCAL_SERVING_SOCKET``."""
    socket_path = os.environ.get(plan.ENV_SOCKET, plan.SANDBOX_SOCKET)
    return run(lambda: handlers.load_handler(os.environ), lambda handler: serve(socket_path, handler))


if __name__ == "__main__":
    sys.exit(main())
