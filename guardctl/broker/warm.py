"""What the fork server and the broker both build once, before they fork their workers: the
detectors' compiled patterns, the masker's tables and keyword scans, the policy, bashlex's
parser tables and yaml (through `LINES`)."""

from __future__ import annotations

# lines decided once before the fork: a plain pipeline (the fast path), a substitution
# (tree-sitter-bash, and bashlex, which its first line loads for the lines it declines) and a
# heredoc manifest (yaml: every worker that reads a manifest would import it)
LINES = (
    "kubectl get pods | head -n $(echo 3)",
    "kubectl apply -f - <<EOF\nkind: Pod\napiVersion: v1\nEOF",
)


def build() -> None:
    """Compile the detectors, mask a stream, and decide `LINES` with the policy."""
    from guardctl import app
    from guardctl.env import Environment
    from guardctl.masking import detectors, mask
    from guardctl.running import lifeline

    lifeline.capable_setpriv()  # read once here, not by every worker that starts kubectl
    found = detectors.default_detectors()
    for detector in found.values():
        detector.pattern  # noqa: B018 - compiles and keeps it
    # a stream of two chunks: the second is read with the end of the first (multi-line
    # detectors), with tables built on first use: here, not in every worker
    masker = mask.masker_for(["get", "pods"], found, ["warm-literal-0123456789"])
    for chunk in (b"warm: token=0123456789abcdef0123\n", b"password: x\n"):
        masker.feed(chunk)
    masker.flush()
    # the native scans (the lines the structure rules act on, ...), which a long output builds
    mask.native_scans(found, detectors.default_rules().structure)
    try:
        checker = app.Checker.load(Environment())
        for line in LINES:
            checker.check(line)
    except Exception:  # noqa: BLE001 - a broken rules setup is each worker's to report
        pass
