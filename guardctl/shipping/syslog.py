"""The syslog sink: each record one RFC 5424 message, to UDP, TCP or a Unix socket (stdlib).

```yaml
ship:
  syslog:
    address: 'udp://HOST:514'   # or tcp://HOST:PORT, or unix:/dev/log
    facility: authpriv          # the default; any RFC 5424 facility name (local0 ... local7)
    app-name: guardctl          # the default
    timeout: 10                 # seconds for a TCP connection or send
```

A message is `<PRI>1 TIME HOST APP - STATUS [meta sequenceId="SEQ"] BOM LINE`: the record's
own time, the host's name, its status ("started", "completed", "pruned") as MSGID, its seq in
the registered `meta` SD element, and the record's line exactly as in audit.jsonl, so a
receiver can check the record's hash and drop a record it got twice (by `log` and `seq`).

Over TCP messages are framed by octet counting (RFC 6587); a Unix socket takes one datagram
per message (a stream socket: one line each). UDP cannot tell that nobody received: a record
sent while the receiver is down is lost there (it stays in the local log); use TCP or OTLP
where every record must arrive. A datagram longer than UDP_MAX is cut there (RFC 5424 6.1).
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from guardctl.shipping.base import Entry, ShipContext, ShipError

FACILITIES = {
    name: code for code, name in enumerate((
        "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
        "authpriv", "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2",
        "local3", "local4", "local5", "local6", "local7",
    ))
}
INFO = 6
UDP_MAX = 65000
KEYS = ("address", "facility", "app-name", "timeout")
ADDRESS_FIX = "give udp://HOST:PORT, tcp://HOST:PORT or unix:/PATH"
BOM = "\ufeff"


def _address(text: object) -> tuple[str, Any]:
    """(scheme, socket address) of `address`; ShipError says the forms."""
    if not isinstance(text, str):
        raise ShipError(f"address must be a string: {ADDRESS_FIX}")
    parts = urlsplit(text)
    if parts.scheme == "unix" and parts.path.startswith("/"):
        return "unix", parts.path
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme in ("udp", "tcp") and parts.hostname and port:
        return parts.scheme, (parts.hostname, port)
    raise ShipError(f"address {text!r} is not one syslog can use: {ADDRESS_FIX}")


def make(settings: Mapping[str, Any]) -> SyslogSink:
    unknown = sorted(set(settings) - set(KEYS))
    if unknown:
        raise ShipError(f"unknown key {unknown[0]!r}: the keys are {', '.join(KEYS)}")
    if "address" not in settings:
        raise ShipError(f"missing key 'address': {ADDRESS_FIX}")
    scheme, where = _address(settings["address"])
    facility = settings.get("facility", "authpriv")
    if facility not in FACILITIES:
        raise ShipError(f"facility {facility!r} is not a syslog facility such as authpriv, "
                        "auth or local0")
    app = settings.get("app-name", "guardctl")
    if not isinstance(app, str) or not app.isascii() or not app.isprintable() or " " in app \
            or not 0 < len(app) <= 48:
        raise ShipError("app-name must be 1-48 printable ASCII characters without spaces")
    timeout = settings.get("timeout", 10)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ShipError("timeout must be a number of seconds, e.g. timeout: 10")
    return SyslogSink(scheme, where, FACILITIES[facility] * 8 + INFO, app, float(timeout))


def message(entry: Entry, pri: int, host: str, app: str) -> bytes:
    """The RFC 5424 message for one record."""
    status = entry.record.get("status")
    msgid = status if isinstance(status, str) and status.isalpha() else "-"
    when = entry.record.get("time")
    stamp = when if isinstance(when, str) and " " not in when else "-"
    # sequenceId is 1..2147483647 (RFC 5424 7.3.1)
    sequence = (entry.seq - 1) % 2147483647 + 1
    head = f"<{pri}>1 {stamp} {host} {app} - {msgid} [meta sequenceId=\"{sequence}\"] {BOM}"
    return head.encode("utf-8") + entry.line


class SyslogSink:
    name = "syslog"

    def __init__(self, scheme: str, where: Any, pri: int, app: str, timeout: float) -> None:
        self._scheme = scheme
        self._where = where
        self._pri = pri
        self._app = app
        self._timeout = timeout
        self._host = socket.gethostname().split(" ")[0][:255] or "-"

    def send(self, entries: Sequence[Entry], ctx: ShipContext) -> None:
        del ctx  # records only
        messages = [message(e, self._pri, self._host, self._app) for e in entries]
        try:
            with self._connect() as sock:
                if self._scheme == "tcp":
                    sock.sendall(b"".join(b"%d %s" % (len(m), m) for m in messages))
                elif sock.type == socket.SOCK_STREAM:
                    sock.sendall(b"".join(m + b"\n" for m in messages))
                else:
                    for data in messages:
                        sock.send(data[:UDP_MAX] if self._scheme == "udp" else data)
        except OSError as err:
            raise ShipError(f"cannot send to {self._describe()}: {err.strerror or err}") from None

    def _connect(self) -> socket.socket:
        if self._scheme == "tcp":
            return socket.create_connection(self._where, timeout=self._timeout)
        if self._scheme == "udp":
            host, port = self._where
            family, kind, proto, _, address = socket.getaddrinfo(
                host, port, type=socket.SOCK_DGRAM
            )[0]
            sock = socket.socket(family, kind, proto)
            sock.connect(address)
            return sock
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):  # /dev/log is either
            sock = socket.socket(socket.AF_UNIX, kind)
            sock.settimeout(self._timeout)
            try:
                sock.connect(self._where)
            except OSError as err:
                sock.close()
                if err.errno == errno.EPROTOTYPE:  # the socket is the other kind
                    continue
                raise
            return sock
        raise OSError(f"{self._where} is neither a datagram nor a stream socket")

    def _describe(self) -> str:
        if self._scheme == "unix":
            return f"unix:{self._where}"
        return f"{self._scheme}://{self._where[0]}:{self._where[1]}"

    def close(self) -> None:
        """Nothing held between batches: each send connects anew."""
