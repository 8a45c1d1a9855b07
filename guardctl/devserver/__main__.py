"""`python -m guardctl.devserver [--port N] [--kubeconfig-out FILE] [--verbose]`."""

from __future__ import annotations

import argparse

from guardctl.devserver.server import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m guardctl.devserver",
                                     description="In-memory Kubernetes API server for kubectl.")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument("--kubeconfig-out", metavar="FILE", help="write a kubeconfig here")
    parser.add_argument("--verbose", action="store_true", help="log every request on stderr")
    args = parser.parse_args(argv)
    serve(args.port, args.kubeconfig_out, verbose=args.verbose)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
