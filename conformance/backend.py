"""A tiny business backend for the conformance tests: the uplink webhook.

It runs `http.server` in a thread on 127.0.0.1 and records every uplink
request it receives (docs/webhooks.md), in arrival order. A test can hold a
request by its idempotency key (the handler waits, bounded, until the test
releases it) to keep a message unacked across a reconnect.
"""

import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Longest a held request waits for its release; below the gateway's
# webhook timeout (5 s by default), so a forgotten hold cannot make the
# gateway retry.
HOLD_SECS = 4.0
# Largest request body read.
MAX_BODY = 1 << 20


@dataclass
class Call:
    """One uplink request as the backend saw it (header values decoded)."""

    path: str
    key: str
    seq: int
    alias: str
    device: str
    route: str
    payload: bytes


class Backend:
    """The webhook server; `calls` lists what it received, in order."""

    def __init__(self, port=0):
        self.calls = []
        self.cond = threading.Condition()
        self.holds = {}  # idempotency key -> threading.Event
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = min(int(self.headers.get("Content-Length", "0")), MAX_BODY)
                payload = self.rfile.read(length)
                header = lambda name: urllib.parse.unquote(self.headers.get(name, ""))
                call = Call(
                    path=self.path,
                    key=header("Idempotency-Key"),
                    seq=int(self.headers.get("Pike-Seq", "0")),
                    alias=header("Pike-Alias"),
                    device=header("Pike-Device"),
                    route=header("Pike-Route"),
                    payload=payload,
                )
                with backend.cond:
                    backend.calls.append(call)
                    backend.cond.notify_all()
                    hold = backend.holds.get(call.key)
                if hold is not None:
                    hold.wait(HOLD_SECS)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def calls_of(self, alias):
        """The calls for one alias, in arrival order."""
        with self.cond:
            return [c for c in self.calls if c.alias == alias]

    def wait_for_key(self, key, timeout=5.0):
        """Waits (bounded) until a request with this idempotency key arrived."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not any(c.key == key for c in self.calls):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"the backend got no request with key {key}")
                self.cond.wait(left)

    def hold(self, key):
        """Requests with this key wait for `release` (at most HOLD_SECS)."""
        with self.cond:
            self.holds[key] = threading.Event()

    def release_all(self):
        """Answers every held request."""
        with self.cond:
            for event in self.holds.values():
                event.set()
            self.holds.clear()

    def stop(self):
        self.release_all()
        self.server.shutdown()
        self.server.server_close()
