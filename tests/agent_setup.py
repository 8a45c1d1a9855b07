"""The environment of an agent whose guardctl lives in a folder of its own: state, config,
cache, keyring (a plaintext file keyring) and runtime folder there, kubectl's own
kubeconfig out of reach, nobody answering approvals. Shared by the end-to-end fixtures."""

from __future__ import annotations

import os
from pathlib import Path

from guardctl.config import load_config
from guardctl.running.tokencache import KernelCache, description, kernel_keyring


def agent_environ(root: Path) -> dict[str, str]:
    """The environment, with a 0700 runtime folder made under `root`."""
    runtime = root / "run"
    runtime.mkdir(mode=0o700)
    return {
        **os.environ,
        "GUARDCTL_HOME": str(root / "home"),
        "GUARDCTL_CONFIG": str(root / "config.yaml"),
        "XDG_DATA_HOME": str(root / "data"),
        "XDG_CACHE_HOME": str(root / "cache"),
        "XDG_RUNTIME_DIR": str(runtime),
        "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
        "KUBECONFIG": str(root / "nonexistent"),  # the agent's own kubeconfig is not used
        "NO_COLOR": "1",
        "GUARDCTL_APPROVAL_TIMEOUT": "2",  # nobody answers unless a test says so
    }


def drop_kernel_token(environ: dict[str, str]) -> None:
    """Forget the agent token cached in the kernel keyring for this environment's config
    (kernel keys outlive a test until their timeout, and count against the uid's quota)."""
    keys = kernel_keyring()
    config_path = Path(environ["GUARDCTL_CONFIG"])
    config = load_config(config_path)
    if keys is not None and config is not None:
        KernelCache(keys, description(config_path, config), config.server,
                    config.service_account).drop()
