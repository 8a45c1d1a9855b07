"""The OTLP sink: each record an OpenTelemetry log record, sent over OTLP/HTTP (protobuf) by
the OpenTelemetry SDK's exporter (`pip install 'guardctl[otel]'`).

```yaml
ship:
  otlp:
    endpoint: 'https://otel.example:4318/v1/logs'   # the logs signal's full URL
    headers: {x-team: platform}                     # optional, sent with each request
    certificate-file: /etc/ssl/otel-ca.pem          # optional, for https
    timeout: 10                                     # seconds per batch, retries included
```

A log record's body is the record's line exactly as in audit.jsonl (so its hash can be
checked), its time the record's time, and its attributes the record's fields, each under
`guardctl.` (nested ones dotted: `guardctl.cast.file`; lists of words as string arrays),
plus `enduser.id`: the agent the broker ran the command for, else the account that ran
it. The resource says `service.name: guardctl` and the host. A batch is one export request;
a receiver can drop records it got twice by `guardctl.log` and `guardctl.seq`.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Mapping, Sequence
from typing import Any

from guardctl import __version__
from guardctl.shipping.backlog import nanoseconds
from guardctl.shipping.base import Entry, ShipContext, ShipError

KEYS = ("endpoint", "headers", "certificate-file", "timeout")
EXTRA = "pip install 'guardctl[otel]'"
_LOGGERS = "opentelemetry"


def make(settings: Mapping[str, Any]) -> OtlpSink:
    unknown = sorted(set(settings) - set(KEYS))
    if unknown:
        raise ShipError(f"unknown key {unknown[0]!r}: the keys are {', '.join(KEYS)}")
    endpoint = settings.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
        raise ShipError("endpoint must be the logs URL of an OTLP/HTTP receiver, e.g. "
                        "endpoint: 'http://127.0.0.1:4318/v1/logs'")
    headers = settings.get("headers", {})
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise ShipError("headers must map header names to strings, e.g. headers: {x-team: a}")
    certificate = settings.get("certificate-file")
    if certificate is not None and not isinstance(certificate, str):
        raise ShipError("certificate-file must be the path of a CA file (PEM)")
    timeout = settings.get("timeout", 10)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ShipError("timeout must be a number of seconds, e.g. timeout: 10")
    return OtlpSink(endpoint, dict(headers), certificate, float(timeout))


def attributes(record: Mapping[str, Any], prefix: str = "guardctl.") -> dict[str, Any]:
    """The record's fields as OpenTelemetry attributes (no nulls, no nested mappings)."""
    found: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if value is None:
            continue
        if isinstance(value, dict):
            found.update(attributes(value, f"{name}."))
        elif isinstance(value, list):
            found[name] = ([str(v) for v in value] if all(isinstance(v, str) for v in value)
                           else json.dumps(value, sort_keys=True))
        elif isinstance(value, (str, int, float, bool)):
            found[name] = value
        else:
            found[name] = json.dumps(value)
    return found


class _Failures(logging.Handler):
    """Keeps the exporter's last complaint: the reason a batch failed, for the one line."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.last = ""

    def emit(self, record: logging.LogRecord) -> None:
        if not self.last:  # the first says why (a refused connection, a status); the rest,
            # that the exporter gave up
            self.last = (record.getMessage().splitlines() or [""])[0]


class OtlpSink:
    name = "otlp"

    def __init__(self, endpoint: str, headers: dict[str, str], certificate: str | None,
                 timeout: float) -> None:
        try:
            from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
            from opentelemetry.sdk._logs import LoggerProvider
            from opentelemetry.sdk._logs.export import (
                LogRecordExporter,
                LogRecordExportResult,
                SimpleLogRecordProcessor,
            )
            from opentelemetry.sdk.resources import Resource
        except ImportError:
            raise ShipError(f"the OpenTelemetry SDK is not installed: {EXTRA}") from None
        self._endpoint = endpoint
        self._failures = _Failures()
        quiet = logging.getLogger(_LOGGERS)
        quiet.addHandler(self._failures)
        quiet.propagate = False  # the reason goes into our one line, never a traceback
        self._exporter = OTLPLogExporter(
            endpoint=endpoint, headers=headers, timeout=timeout, certificate_file=certificate
        )
        self._success = LogRecordExportResult.SUCCESS
        collected: list[Any] = []
        self._collected = collected

        class Collect(LogRecordExporter):
            """Takes the SDK's finished records, to send them as one request."""

            def export(self, batch: Sequence[Any]) -> Any:
                collected.extend(batch)
                return LogRecordExportResult.SUCCESS

            def shutdown(self) -> None:
                pass

            def force_flush(self, timeout_millis: int = 0) -> bool:
                return True

        resource = Resource.create({"service.name": "guardctl", "service.version": __version__,
                                    "host.name": socket.gethostname()})
        self._provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
        self._provider.add_log_record_processor(SimpleLogRecordProcessor(Collect()))
        self._logger = self._provider.get_logger("guardctl.audit", __version__)

    def send(self, entries: Sequence[Entry], ctx: ShipContext) -> None:
        del ctx  # records only
        from opentelemetry._logs import SeverityNumber

        self._collected.clear()
        for entry in entries:
            record = entry.record
            who = record.get("agent") or record.get("user")
            self._logger.emit(
                timestamp=nanoseconds(record.get("time")),
                severity_number=SeverityNumber.INFO,
                severity_text="INFO",
                body=entry.line.decode("utf-8", "replace"),
                attributes={**attributes(record), **({"enduser.id": who} if who else {})},
                event_name=f"guardctl.audit.{record.get('status', 'record')}",
            )
        if len(self._collected) != len(entries):
            raise ShipError(f"the OpenTelemetry SDK took {len(self._collected)} of "
                            f"{len(entries)} records")
        self._failures.last = ""
        result = self._exporter.export(list(self._collected))
        self._collected.clear()
        if result != self._success:
            reason = self._failures.last or "the receiver did not accept the batch"
            raise ShipError(f"cannot send to {self._endpoint}: {reason}")

    def close(self) -> None:
        self._exporter.shutdown()  # type: ignore[no-untyped-call]
        self._provider.shutdown()
        logging.getLogger(_LOGGERS).removeHandler(self._failures)
