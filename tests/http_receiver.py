"""A real HTTP server on loopback standing in for a webhook receiver or a vendor's API, for the
outbox and log stream tests.

It records each request (method, path with its query, headers, raw body, the status it was
answered), answers the statuses queued in `statuses` (then 200), and while `blocked` is set
holds each request until `released` is set (a receiver that hangs).
"""

from __future__ import annotations

import http.server
import threading

__all__ = ["Receiver"]


class Receiver:
    def __init__(self, *, error_body: bytes = b'{"error": "boom"}'):
        receiver = self
        self.requests: list[dict] = []
        self.statuses: list[int] = []
        self.blocked = threading.Event()
        self.released = threading.Event()
        self.lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with receiver.lock:
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                              "body": body, "status": status})
                if receiver.blocked.is_set():
                    receiver.released.wait(60)
                answer = b'{"ok": true}' if status < 300 else error_body
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()
