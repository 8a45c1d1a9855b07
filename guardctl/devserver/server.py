"""The HTTPS side: a ThreadingHTTPServer on 127.0.0.1 around `Api`, plus kubeconfig writing.

HTTPS with a self-signed certificate (tls.py), because kubectl sends no bearer token to an
http:// server; the kubeconfig carries the certificate as its CA. Only 127.0.0.1 is bound.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yaml

from guardctl.devserver.api import Api
from guardctl.devserver.auth import TokenTable
from guardctl.devserver.discovery import Discovery, load_documents
from guardctl.devserver.errors import ApiError
from guardctl.devserver.messages import Request, Response, json_response
from guardctl.devserver.seed import seed as seed_store
from guardctl.devserver.store import Store
from guardctl.devserver.tls import ServerTls, self_signed
from guardctl.errors import UnsafeError

HOST = "127.0.0.1"
CONTEXT = "guardctl-dev"
MAX_BODY_BYTES = 10 * 1024 * 1024
# An idle keep-alive connection is dropped after this many seconds, so handler threads end.
IDLE_TIMEOUT_SECONDS = 30
START_TIMEOUT_SECONDS = 10
# how often a followed stream (`logs -f`) looks whether its client left or the server stops
FOLLOW_POLL_SECONDS = 0.2

RequestRecord = tuple[str, str, str]  # method, path (no query), user ("" if unauthenticated)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as client-go expects
    timeout = IDLE_TIMEOUT_SECONDS
    server: _HttpServer

    def setup(self) -> None:
        # The TLS handshake runs here, in the connection's own thread, not in the accept loop.
        self.request.settimeout(self.timeout)
        self.request.do_handshake()
        super().setup()

    def _serve(self) -> None:
        devserver = self.server.devserver
        url = urlsplit(self.path)
        headers = {name.lower(): value for name, value in self.headers.items()}
        user = devserver.api.tokens.user_for(headers.get("authorization"))
        devserver.record((self.command, url.path, user or ""))
        try:
            body = self._body(headers)
        except ApiError as error:
            self._send(json_response(error.code, error.status()))
            self.close_connection = True  # the unread body would corrupt the next request
            return
        request = Request(self.command, url.path, dict(parse_qsl(url.query)), headers, body, user)
        self._send(devserver.api.handle(request))

    def _body(self, headers: dict[str, str]) -> bytes:
        length_text = headers.get("content-length", "0")
        if not length_text.isdigit():
            raise ApiError(400, "BadRequest", "invalid Content-Length")
        length = int(length_text)
        if length > MAX_BODY_BYTES:
            raise ApiError(413, "RequestEntityTooLarge",
                           f"the request body is larger than {MAX_BODY_BYTES} bytes")
        return self.rfile.read(length)

    def _send(self, response: Response) -> None:
        if response.follow:
            self._follow(response)
            return
        self.send_response(response.code)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def _follow(self, response: Response) -> None:
        """A streamed body (chunked): what there is, then held open until the client leaves
        or the server stops (the connection is not kept for another request)."""
        self.close_connection = True
        self.send_response(response.code)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if response.body:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(response.body), response.body))
        self.request.settimeout(FOLLOW_POLL_SECONDS)
        while not self.server.devserver.stopping.is_set():
            try:
                if not self.request.recv(1):
                    return  # the client left
            except TimeoutError:
                continue
            except OSError:
                return
        with contextlib.suppress(OSError):
            self.wfile.write(b"0\r\n\r\n")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.devserver.verbose:
            super().log_message(format, *args)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, devserver: DevServer, tls: ServerTls) -> None:
        self.devserver = devserver
        super().__init__((HOST, port), _Handler)
        self.socket = tls.context.wrap_socket(self.socket, server_side=True,
                                              do_handshake_on_connect=False)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up mid-handshake are normal (kubectl timeouts, port probes).
        if self.devserver.verbose:
            super().handle_error(request, client_address)


class DevServer:
    """An in-memory Kubernetes API server for the real kubectl, on 127.0.0.1.

    >>> with DevServer() as server:                                  # doctest: +SKIP
    ...     server.write_kubeconfig("/tmp/kc")
    ...     # KUBECONFIG=/tmp/kc kubectl get pods -n dev
    """

    def __init__(self, port: int = 0, seed: bool = True, *, verbose: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        self.verbose = verbose
        self._port = port
        self._clock = clock
        self._requests: list[RequestRecord] = []
        self._requests_lock = threading.Lock()
        self.stopping = threading.Event()  # ends the streams being followed
        self._http: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._tls: ServerTls | None = None
        discovery = Discovery(load_documents())
        store = Store(clock)
        logs = seed_store(store, discovery, clock()) if seed else {}
        self.api = Api(discovery, store, TokenTable(clock), logs, clock, address="")

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> DevServer:
        """Listen on 127.0.0.1 and serve in a background thread; returns once listening."""
        if self._http is not None:
            raise RuntimeError("DevServer already started")
        self._tls = self_signed()
        self.stopping.clear()
        try:
            self._http = _HttpServer(self._port, self, self._tls)  # listening on return
        except OSError as err:
            raise _listen_error(self._port, err) from err
        self.api.address = f"{HOST}:{self._http.server_address[1]}"
        self._thread = threading.Thread(target=self._http.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name="guardctl-devserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._http is None:
            return
        self.stopping.set()
        self._http.shutdown()
        self._http.server_close()
        if self._thread is not None:
            self._thread.join(timeout=START_TIMEOUT_SECONDS)
        self._http = self._thread = None

    def __enter__(self) -> DevServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ------------------------------------------------------------------ facts

    @property
    def port(self) -> int:
        if self._http is None:
            raise RuntimeError("DevServer is not started")
        return int(self._http.server_address[1])

    @property
    def url(self) -> str:
        return f"https://{HOST}:{self.port}"

    @property
    def ca_pem(self) -> bytes:
        """The server's self-signed certificate, to trust it (`--certificate-authority`)."""
        if self._tls is None:
            raise RuntimeError("DevServer is not started")
        return self._tls.cert_pem

    @property
    def admin_token(self) -> str:
        return self.api.tokens.admin_token

    def issue_token(self, user: str, seconds: float) -> str:
        """A bearer token for `user` valid for `seconds` (negative: already expired)."""
        return self.api.tokens.issue(user, seconds)[0]

    def all_tokens(self) -> list[str]:
        """The admin token and every token this server issued."""
        return self.api.tokens.all_tokens()

    # ------------------------------------------------------------------ request log

    def record(self, entry: RequestRecord) -> None:
        with self._requests_lock:
            self._requests.append(entry)

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request served so far as (method, path, user), oldest first (a copy)."""
        with self._requests_lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._requests_lock:
            self._requests.clear()

    # ------------------------------------------------------------------ kubeconfig

    def kubeconfig(self, token: str | None = None, namespace: str | None = None
                   ) -> dict[str, Any]:
        context: dict[str, str] = {"cluster": CONTEXT, "user": CONTEXT}
        if namespace:
            context["namespace"] = namespace
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": CONTEXT, "cluster": {
                "server": self.url,
                "certificate-authority-data": base64.b64encode(self.ca_pem).decode(),
            }}],
            "users": [{"name": CONTEXT, "user": {"token": token or self.admin_token}}],
            "contexts": [{"name": CONTEXT, "context": context}],
            "current-context": CONTEXT,
        }

    def write_kubeconfig(self, path: str | os.PathLike[str], token: str | None = None,
                         namespace: str | None = None) -> Path:
        """Write a kubeconfig for this server (mode 0600: it holds a token); returns its path."""
        target = Path(path)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            os.fchmod(handle.fileno(), 0o600)  # O_CREAT's mode does not apply to old files
            yaml.safe_dump(self.kubeconfig(token, namespace), handle, sort_keys=False)
        return target


def _listen_error(port: int, err: OSError) -> UnsafeError:
    import errno

    if err.errno == errno.EADDRINUSE:
        return UnsafeError(f"{HOST}:{port} is in use: choose another --port, or 0 for any "
                           "free one")
    return UnsafeError(f"cannot listen on {HOST}:{port}: {err.strerror or err}")


def serve(port: int, kubeconfig_out: str | None,
          ready: Callable[[DevServer], None] | None = None, *, verbose: bool = False) -> None:
    """Run a DevServer in the foreground until SIGINT or SIGTERM.

    Without `kubeconfig_out` the kubeconfig goes to a private temporary folder that is
    removed on exit. Must be called from the main thread (it installs signal handlers).
    """
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with DevServer(port, verbose=verbose) as server, \
                tempfile.TemporaryDirectory(prefix="guardctl-devserver-") as tmp:
            config = server.write_kubeconfig(kubeconfig_out or Path(tmp) / "kubeconfig")
            print(f"guardctl devserver listening on {server.url}; "
                  f"kubeconfig: {config} (KUBECONFIG={config} kubectl get pods -n dev)",
                  file=sys.stdout, flush=True)
            if ready is not None:
                ready(server)
            stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
