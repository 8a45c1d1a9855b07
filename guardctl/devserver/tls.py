"""A throwaway self-signed certificate for 127.0.0.1, made with the `openssl` CLI.

TLS is not optional: kubectl (client-go's clientcmd) only sends a kubeconfig's bearer token
when the server URL is https, so a plain-http devserver could not tell users apart.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from guardctl.errors import UnsafeError

OPENSSL_TIMEOUT_SECONDS = 30


class TlsError(UnsafeError):
    """The certificate could not be made (no `openssl`, or it failed): one line, exit 13."""


@dataclass(frozen=True)
class ServerTls:
    context: ssl.SSLContext
    cert_pem: bytes  # the kubeconfig's certificate-authority-data (it is its own CA)


def self_signed() -> ServerTls:
    """A fresh EC P-256 key and certificate for IP 127.0.0.1, valid for two days.

    The key never outlives this call on disk: it is loaded into the SSL context and the
    temporary folder is removed.
    """
    with tempfile.TemporaryDirectory(prefix="guardctl-devserver-tls-") as tmp:
        key, cert = write_self_signed(Path(tmp))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        return ServerTls(context, cert.read_bytes())


def write_self_signed(folder: Path) -> tuple[Path, Path]:
    """(key.pem, cert.pem) in `folder`: a fresh EC P-256 key and a certificate for IP
    127.0.0.1, valid for two days, that is its own CA (a client trusts it by itself)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise TlsError("the devserver needs the `openssl` command to make its TLS certificate, "
                       "and none is on PATH: install it (`apt install openssl`)")
    key, cert = folder / "key.pem", folder / "cert.pem"
    argv = [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out", str(cert),
            "-days", "2", "-subj", "/CN=guardctl-devserver",
            "-addext", "subjectAltName=IP:127.0.0.1"]
    result = subprocess.run(argv, capture_output=True, timeout=OPENSSL_TIMEOUT_SECONDS,
                            check=False)
    if result.returncode != 0:
        said = result.stderr.decode(errors="replace").strip().splitlines()
        raise TlsError(f"openssl could not make the devserver's TLS certificate: "
                       f"{said[-1] if said else f'exit {result.returncode}'}")
    return key, cert
