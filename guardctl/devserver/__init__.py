"""An embedded in-memory Kubernetes API server that the real kubectl can talk to.

For end-to-end tests, `guardctl demo` and trying guardctl without a cluster:

    with DevServer() as server:
        server.write_kubeconfig(path)
"""

from __future__ import annotations

from guardctl.devserver.server import DevServer, serve

__all__ = ["DevServer", "serve"]
