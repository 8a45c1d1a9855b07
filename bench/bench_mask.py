"""Throughput and peak memory of the streaming masker on a `get secrets -A -o yaml`-like stream.

Run: python bench/bench_mask.py [MEGABYTES]   (default 50). Prints results; asserts nothing.
The goal is at least 20 MB/s with memory bounded by the masker's caps, not by the stream.
"""

from __future__ import annotations

import base64
import json
import os
import random
import sys
import time
import tracemalloc
from collections.abc import Iterator

from guardctl.masking.detectors import default_detectors
from guardctl.masking.mask import Masker

CHUNK = 64 * 1024
_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def _b64(rng: random.Random, size: int) -> str:
    return base64.b64encode(rng.randbytes(size)).decode()


def _data(rng: random.Random, kind: int) -> dict[str, str]:
    """The data of one Secret: Opaque, TLS, service-account token or dockerconfigjson."""
    if kind == 0:
        word = "".join(rng.choice(_ALPHABET) for _ in range(20))
        return {"password": base64.b64encode(word.encode()).decode(), "username": "YWRtaW4="}
    if kind == 1:
        return {"tls.crt": _b64(rng, 1200), "tls.key": _b64(rng, 1700)}
    if kind == 2:
        return {"ca.crt": _b64(rng, 1100), "namespace": "ZGVmYXVsdA==", "token": _b64(rng, 700)}
    auth = {"auths": {"registry.example.com": {"auth": _b64(rng, 30)}}}
    return {".dockerconfigjson": base64.b64encode(json.dumps(auth).encode()).decode()}


def _item(rng: random.Random, index: int) -> str:
    kind = index % 4
    data = _data(rng, kind)
    lines = ["- apiVersion: v1", "  data:"]
    lines += [f"    {key}: {value}" for key, value in data.items()]
    lines += ["  kind: Secret", "  metadata:"]
    if kind == 0:
        applied = {
            "apiVersion": "v1",
            "data": data,
            "kind": "Secret",
            "metadata": {"name": f"app-{index}", "namespace": "default"},
        }
        lines += [
            "    annotations:",
            "      kubectl.kubernetes.io/last-applied-configuration: |",
            "        " + json.dumps(applied, separators=(",", ":")),
        ]
    lines += [
        '    creationTimestamp: "2024-05-01T10:00:00Z"',
        f"    name: app-{index}",
        f"    namespace: ns-{index % 17}",
        f'    resourceVersion: "{1000 + index}"',
        f"    uid: 6f1c2d3e-4b5a-4c7d-8e9f-{index:012d}",
        "  type: "
        + [
            "Opaque",
            "kubernetes.io/tls",
            "kubernetes.io/service-account-token",
            "kubernetes.io/dockerconfigjson",
        ][kind],
    ]
    return "\n".join(lines) + "\n"


def stream(megabytes: int) -> Iterator[bytes]:
    """CHUNK-sized pieces of a List of Secrets, about `megabytes` MB in all."""
    rng = random.Random(1)
    budget = megabytes * 1_000_000
    pending = b"apiVersion: v1\nitems:\n"
    index = 0
    while budget > 0:
        while len(pending) < CHUNK:
            pending += _item(rng, index).encode()
            index += 1
        chunk, pending = pending[:CHUNK], pending[CHUNK:]
        budget -= len(chunk)
        yield chunk
    yield pending + b'kind: List\nmetadata:\n  resourceVersion: ""\n'


def main(megabytes: int) -> None:
    chunks = list(stream(megabytes))
    total = sum(len(c) for c in chunks)
    detectors = default_detectors()
    masker = Masker(detectors, literals=["not-in-this-stream-literal"])
    most_held = 0
    # the machine may be busy with other work: the number means little without this
    load = " ".join(f"{n:.2f}" for n in os.getloadavg())
    started = time.perf_counter()
    for chunk in chunks:
        masker.feed(chunk)
        most_held = max(most_held, masker.buffered)
    masker.flush()
    seconds = time.perf_counter() - started

    # a second pass under tracemalloc (slower); the chunks were allocated before it starts
    tracemalloc.start()
    masker = Masker(detectors)
    for chunk in chunks:
        masker.feed(chunk)
    masker.flush()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    print(f"input:          {total / 1e6:.1f} MB in {len(chunks)} chunks of {CHUNK} bytes")
    print(f"time:           {seconds:.2f} s (load average before: {load})")
    print(f"throughput:     {total / 1e6 / seconds:.1f} MB/s (goal: 20 MB/s)")
    print(f"most held back: {most_held} characters")
    print(f"peak memory:    {peak / 1e6:.2f} MB allocated while masking (tracemalloc)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50)
