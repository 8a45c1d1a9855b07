"""Optional parts: `guardctl mcp` without the `mcp` extra says what to install, in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_mcp_without_its_extra_says_what_to_install(tmp_path: Path) -> None:
    # an interpreter where `import mcp` fails: a module of that name that refuses to load
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\n"
        "class _NoMCP:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'mcp' or name.startswith('mcp.'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, _NoMCP())\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "guardctl", "mcp"], capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL, env={"PYTHONPATH": str(blocker), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 13
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "pip install 'guardctl[mcp]'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_command_line_imports_no_mcp() -> None:
    code = ("import sys, guardctl.cli, guardctl.running.invoke, guardctl.app;"
            " print(any(m == 'mcp' or m.startswith('mcp.') for m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.stdout == "False\n", proc.stderr
