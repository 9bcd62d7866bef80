"""A real HTTP server on loopback that serves test images by path (for image-URL inputs), or
canned answers to POSTs."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextmanager
def serving(
    files: dict[str, tuple[int, str, bytes]], gzipped: frozenset[str] = frozenset()
) -> Iterator[str]:
    """Serve `path -> (status, content type, body)`; the `gzipped` paths are sent gzip-encoded
    (a few KB that inflate to far more). Yields the base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, content_type, body = files.get(self.path, (404, "text/plain", b"no"))
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", body.decode())
                body = b""
            if self.path in gzipped:
                body = gzip.compress(body)
                self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            # Answered as a GET once the body is read: a stub for a service that refuses a call.
            self.rfile.read(int(self.headers.get("content-length", "0")))
            self.do_GET()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
