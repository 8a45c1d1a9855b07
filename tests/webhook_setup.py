"""Helpers for the approval webhook tests: a real HTTP receiver on 127.0.0.1 (a server thread
of the test process), approver keys made by openssl, and the config that names the webhook."""

from __future__ import annotations

import base64
import http.server
import json
import os
import queue
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

WAIT = 30.0


class Delivery(NamedTuple):
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, object]:
        data = json.loads(self.body)
        assert isinstance(data, dict)
        return data


class Receiver(NamedTuple):
    url: str
    deliveries: queue.Queue[Delivery]
    status: list[int]  # the status the receiver answers with (a test may change it)

    def next(self, timeout: float = WAIT) -> Delivery:
        return self.deliveries.get(timeout=timeout)


@contextmanager
def receiver() -> Iterator[Receiver]:
    """An HTTP server on 127.0.0.1 that keeps every POST it gets."""
    got: queue.Queue[Delivery] = queue.Queue()
    status = [200]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            size = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(size)
            got.put(Delivery(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(status[0])
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Receiver(f"http://127.0.0.1:{server.server_address[1]}/hook", got, status)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def secret_file(folder: Path) -> tuple[Path, str]:
    """A Standard Webhooks secret (`whsec_` and base64 of 24 random bytes) in a 0600 file."""
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    path = folder / "webhook.secret"
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return path, secret


def keypair(folder: Path, name: str) -> tuple[Path, Path]:
    """An Ed25519 key pair made by openssl: (private key PEM, public key PEM)."""
    private, public = folder / f"{name}.key", folder / f"{name}.pub"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(private)],
                   check=True, capture_output=True, timeout=60)
    subprocess.run(["openssl", "pkey", "-in", str(private), "-pubout", "-out", str(public)],
                   check=True, capture_output=True, timeout=60)
    return private, public


def webhook_config(url: str, secret: Path, fmt: str = "standard") -> str:
    return f"approvals:\n  webhook:\n    url: {url}\n    secret_file: {secret}\n    format: {fmt}\n"
