"""Throughput and peak memory of the streaming masker on every kind of output a user has.

Run: python bench/bench_mask.py [MEGABYTES]   (default 20 per input). Prints results;
asserts nothing. The inputs, each about MEGABYTES: `get pods -A -o yaml`, the same as JSON,
application logs, a `get secrets -A -o yaml` list, and `get --raw` of a Secret list (one
line of JSON). The goal: at least 50 MB/s on each, peak memory within 20 MiB.
"""

from __future__ import annotations

import base64
import json
import os
import random
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator

from guardctl.masking.detectors import default_detectors
from guardctl.masking.mask import Masker, masker_for

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


def _sized(megabytes: int, seed: int, item: Callable[[random.Random, int], str]) -> Iterator[str]:
    """`item(rng, index)` for index 0, 1, ... until about `megabytes` MB were made."""
    rng = random.Random(seed)
    size, index = 0, 0
    while size < megabytes * 1_000_000:
        text = item(rng, index)
        size += len(text)
        index += 1
        yield text


def _secret_list(megabytes: int) -> Iterator[str]:
    yield "apiVersion: v1\nitems:\n"
    yield from _sized(megabytes, 1, _item)
    yield 'kind: List\nmetadata:\n  resourceVersion: ""\n'


def _pod(rng: random.Random, index: int) -> dict[str, object]:
    digest = rng.randbytes(32).hex()
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "annotations": {"checksum/config": rng.randbytes(32).hex()},
            "creationTimestamp": "2026-12-07T09:00:00Z",
            "labels": {"app": f"web-{index % 40}", "pod-template-hash": "7d4b9c8f6d"},
            "name": f"web-{index}-7d4b9c8f6d-x2k9p",
            "namespace": f"ns-{index % 17}",
            "uid": f"6f1c2d3e-4b5a-4c7d-8e9f-{index:012d}",
        },
        "spec": {
            "containers": [{
                "env": [{"name": "LOG_LEVEL", "value": "info"},
                        {"name": "DB_HOST", "value": "db.shop.svc"},
                        {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {
                            "key": "password", "name": "db"}}}],
                "image": f"registry.example.com/shop/web@sha256:{digest}",
                "name": "web",
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "resources": {"limits": {"cpu": "500m", "memory": "512Mi"}},
                "volumeMounts": [{"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                                  "name": "kube-api-access", "readOnly": True}],
            }],
            "nodeName": f"worker-{index % 9}",
            "serviceAccountName": "web",
        },
        "status": {"phase": "Running", "podIP": f"10.244.{index % 250}.{index % 200 + 2}",
                   "startTime": "2026-12-07T09:00:05Z"},
    }


def _yaml_lines(node: object, indent: int = 0) -> Iterator[str]:
    """kubectl-like YAML for plain dicts and lists (no YAML emitter: it would be the bench)."""
    pad = " " * indent
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, (dict, list)) and value:
                yield f"{pad}{key}:\n"
                yield from _yaml_lines(value, indent + (2 if isinstance(value, dict) else 0))
            else:
                yield f"{pad}{key}: {json.dumps(value) if isinstance(value, bool) else value}\n"
    elif isinstance(node, list):
        for item in node:
            lines = list(_yaml_lines(item, indent + 2))
            if lines:
                lines[0] = f"{pad}- " + lines[0][indent + 2 :]
            yield from lines


def _pods_yaml(megabytes: int) -> Iterator[str]:
    yield "apiVersion: v1\nitems:\n"
    yield from _sized(megabytes, 2, lambda rng, i: "".join(_yaml_lines([_pod(rng, i)])))
    yield "kind: List\n"


def _pods_json(megabytes: int) -> Iterator[str]:
    yield '{\n    "apiVersion": "v1",\n    "items": [\n'
    yield from _sized(
        megabytes, 3, lambda rng, i: ("" if i == 0 else ",\n") + json.dumps(_pod(rng, i), indent=4)
    )
    yield '\n    ],\n    "kind": "List"\n}\n'


def _log_line(rng: random.Random, index: int) -> str:
    return (
        f"2026-12-07T09:{index // 60 % 60:02d}:{index % 60:02d}.{index % 1000:03d}Z INFO "
        f"request_id={rng.randbytes(16).hex()} method=GET path=/api/v1/orders/{index} "
        f"status=200 duration_ms={rng.randint(1, 900)} user=u{rng.randint(1, 5000)} "
        f"trace_id={rng.randbytes(16).hex()}\n"
    )


def _logs(megabytes: int) -> Iterator[str]:
    return _sized(megabytes, 4, _log_line)


def _raw_secret(rng: random.Random, index: int) -> str:
    data = {k: base64.b64encode(v.encode()).decode() for k, v in _data(rng, index % 4).items()}
    item = json.dumps({"apiVersion": "v1", "data": data, "kind": "Secret",
                       "metadata": {"name": f"app-{index}", "namespace": "default"}},
                      separators=(",", ":"))
    return ("" if index == 0 else ",") + item


def _raw_secret_list(megabytes: int) -> Iterator[str]:
    yield '{"apiVersion":"v1","items":['
    yield from _sized(megabytes, 5, _raw_secret)
    yield '],"kind":"SecretList"}\n'


INPUTS: dict[str, tuple[list[str], Callable[[int], Iterator[str]]]] = {
    "pods, YAML": (["get", "pods", "-A", "-o", "yaml"], _pods_yaml),
    "pods, JSON": (["get", "pods", "-A", "-o", "json"], _pods_json),
    "logs": (["logs", "deploy/web"], _logs),
    "Secret list, YAML": (["get", "secrets", "-A", "-o", "yaml"], _secret_list),
    "Secret list, one JSON line": (["get", "--raw", "/api/v1/secrets"], _raw_secret_list),
}


def chunks(pieces: Iterator[str]) -> list[bytes]:
    """The text in CHUNK-sized pieces, as kubectl's output arrives."""
    data = "".join(pieces).encode()
    return [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]


def run(argv: list[str], data: list[bytes]) -> tuple[float, int, int]:
    """Seconds to mask `data`, most characters held back, peak bytes allocated."""
    masker: Masker = masker_for(argv, default_detectors(), literals=["not-in-this-stream"])
    most_held = 0
    started = time.perf_counter()
    for chunk in data:
        masker.feed(chunk)
        most_held = max(most_held, masker.buffered)
    masker.flush()
    seconds = time.perf_counter() - started
    # a second pass under tracemalloc (slower); the chunks were allocated before it starts
    tracemalloc.start()
    masker = masker_for(argv, default_detectors())
    for chunk in data:
        masker.feed(chunk)
    masker.flush()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return seconds, most_held, peak


def main(megabytes: int) -> None:
    # the machine may be busy with other work: the numbers mean little without this
    print(f"load average before: {' '.join(f'{n:.2f}' for n in os.getloadavg())}")
    print(f"{'input':28} {'MB':>6} {'MB/s':>7} {'held back':>10} {'peak MiB':>9}")
    for name, (argv, make) in INPUTS.items():
        data = chunks(make(megabytes))
        total = sum(len(c) for c in data)
        seconds, held, peak = run(argv, data)
        print(f"{name:28} {total / 1e6:6.1f} {total / 1e6 / seconds:7.1f} {held:10} "
              f"{peak / 2**20:9.2f}")
    print("goal: 50 MB/s on each, peak memory within 20 MiB")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
