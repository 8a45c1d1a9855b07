"""Audit logs built the way the app builds them, on clocks of their own (test helpers)."""

from __future__ import annotations

from pathlib import Path

from guardctl.model import Action, CommandDecision, Decision, RuleHit
from guardctl.recording import audit, recorder, verify


class Ticker:
    """A clock that moves one second per reading."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def decision(action: Action = Action.ALLOW, rule: str | None = None) -> Decision:
    hits = (RuleHit(rule, action, "because"),) if rule else ()
    return Decision(action, "because", (CommandDecision(("kubectl", "get", "pods"), action, hits),))


def ticking_log(home: Path) -> audit.AuditLog:
    return audit.AuditLog(
        audit.log_path(home), clock=Ticker(1_700_000_000.0), monotonic=Ticker(0.0)
    )


def invoke(
    home: Path, log: audit.AuditLog, session: str, output: bytes,
    made: Decision | None = None, *, ticking_cast: bool = False,
) -> None:
    """One invocation the way the app does it: lock the cast, start, record, finish
    (`ticking_cast`: the cast on clocks of its own too, so it comes out the same byte for
    byte)."""
    clocks = {"clock": Ticker(1_700_000_000.0), "monotonic": Ticker(0.0)} if ticking_cast else {}
    with recorder.open_recording(home, session, **clocks) as rec:  # type: ignore[arg-type]
        handle = log.start(
            session=session, argv=["kubectl", "get", "pods"], line="kubectl get pods",
            decision=made or decision(), cast=rec.start_ref(), user="u", cwd="/w",
        )
        rec.marker("decision: allow")
        rec.output(output)
        log.finish(handle, 0, cast=rec.finish())


def verify_home(home: Path) -> verify.VerifyResult:
    return verify.verify(audit.log_path(home), recorder.cast_dir(home))
