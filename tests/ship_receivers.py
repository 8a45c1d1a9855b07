"""Receivers on 127.0.0.1 for the shipping tests: syslog (UDP, a Unix datagram socket) and
OTLP/HTTP logs, decoded with opentelemetry-proto (test helpers)."""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

# <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] BOM MSG (RFC 5424)
SYSLOG_LINE = re.compile(
    r'<(?P<pri>\d{1,3})>1 (?P<time>\S+) (?P<host>\S+) (?P<app>\S+) (?P<procid>\S+) '
    r'(?P<msgid>\S+) \[meta sequenceId="(?P<seq>\d+)"\] \ufeff(?P<msg>.*)', re.DOTALL
)


def syslog_fields(datagram: bytes) -> dict[str, str]:
    match = SYSLOG_LINE.fullmatch(datagram.decode("utf-8"))
    assert match is not None, datagram
    return match.groupdict()


def receive_all(sock: socket.socket, count: int, seconds: float = 10.0) -> list[bytes]:
    """`count` datagrams (fewer when none comes for `seconds`)."""
    sock.settimeout(seconds)
    got: list[bytes] = []
    try:
        while len(got) < count:
            got.append(sock.recv(1 << 16))
    except TimeoutError:
        pass
    return got


def nothing_more(sock: socket.socket) -> bool:
    sock.settimeout(0.3)
    try:
        sock.recv(1 << 16)
    except TimeoutError:
        return True
    return False


@contextmanager
def udp_receiver() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock
    finally:
        sock.close()


@contextmanager
def unix_receiver(path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    try:
        yield sock
    finally:
        sock.close()


def any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind) if kind else None


class OtlpReceiver:
    """An OTLP/HTTP logs endpoint: every log record of every request, decoded."""

    def __init__(self, port: int = 0) -> None:
        self.records: list[dict[str, Any]] = []
        self.requests = 0
        self.resources: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportLogsServiceRequest()
                request.ParseFromString(body)
                receiver.requests += 1
                for resource_logs in request.resource_logs:
                    resource = {a.key: any_value(a.value)
                                for a in resource_logs.resource.attributes}
                    receiver.resources.append(resource)
                    for scope_logs in resource_logs.scope_logs:
                        for log in scope_logs.log_records:
                            receiver.records.append({
                                "body": any_value(log.body),
                                "time": log.time_unix_nano,
                                "attributes": {a.key: any_value(a.value) for a in log.attributes},
                            })
                answer = ExportLogsServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/logs"

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(r["body"]) for r in self.records]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@contextmanager
def otlp_receiver(port: int = 0) -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver(port)
    try:
        yield receiver
    finally:
        receiver.stop()
