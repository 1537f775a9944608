"""Typed results of the engine calls. Built from the native module's JSON; `repr` shows
names, states and counts, never secrets (none cross the boundary)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple


def _opt_str(v: Any) -> Optional[str]:
    return None if v is None else str(v)


def _opt_int(v: Any) -> Optional[int]:
    return None if v is None else int(v)


@dataclass(frozen=True)
class FileChange:
    """One file that `apply` would add, change or remove."""

    path: str
    kind: str
    diff: str = field(repr=False)

    @classmethod
    def _from(cls, d: Dict[str, Any]) -> "FileChange":
        return cls(path=str(d["path"]), kind=str(d["kind"]), diff=str(d.get("diff", "")))


@dataclass(frozen=True)
class ServerPlan:
    """What `apply` would change on one server (or why it cannot tell: `error`)."""

    server: str
    current: Optional[str] = None
    next: Optional[str] = None
    changes: List[FileChange] = field(default_factory=list)
    unchanged: int = 0
    takes_over: Optional[str] = None
    error: Optional[str] = None

    @property
    def is_noop(self) -> bool:
        """Nothing would change."""
        return self.error is None and not self.changes and self.current == self.next

    @classmethod
    def _from(cls, d: Dict[str, Any]) -> "ServerPlan":
        if d.get("error") is not None:
            return cls(server=str(d["server"]), error=str(d["error"]))
        p = d["result"]
        return cls(
            server=str(d["server"]),
            current=_opt_str(p.get("current")),
            next=_opt_str(p.get("next")),
            changes=[FileChange._from(c) for c in p.get("changes", [])],
            unchanged=int(p.get("unchanged", 0)),
            takes_over=_opt_str(p.get("takes_over")),
        )


@dataclass(frozen=True)
class ServerReport:
    """How a deploy or rollback went on one server."""

    server: str
    state: str
    generation: str
    previous: Optional[str]
    detail: str
    round_trips: int = 0
    uploaded_files: int = 0
    linked_files: int = 0
    elapsed: float = 0.0
    recovered: Optional[str] = None
    error_kind: Optional[str] = None

    @property
    def ok(self) -> bool:
        """Deployed (or already up to date)."""
        return self.state in ("succeeded", "no_op")

    @classmethod
    def _from(cls, d: Dict[str, Any]) -> "ServerReport":
        return cls(
            server=str(d["server"]),
            state=str(d["state"]),
            generation=str(d.get("generation", "")),
            previous=_opt_str(d.get("previous")),
            detail=str(d.get("detail", "")),
            round_trips=int(d.get("round_trips", 0)),
            uploaded_files=int(d.get("uploaded_files", 0)),
            linked_files=int(d.get("linked_files", 0)),
            elapsed=float(d.get("elapsed", 0.0)),
            recovered=_opt_str(d.get("recovered")),
            error_kind=_opt_str(d.get("error_kind")),
        )


@dataclass(frozen=True)
class CertificateOutcome:
    """What a run did about one site's certificate: ``action`` is ``issued``,
    ``renewed``, ``generated``, ``failed`` or ``deferred``."""

    site: str
    action: str
    detail: str
    not_after: Optional[int] = None
    fingerprint: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.action != "failed"

    @classmethod
    def _from(cls, d: Dict[str, Any]) -> "CertificateOutcome":
        return cls(
            site=str(d["site"]),
            action=str(d["action"]),
            detail=str(d.get("detail", "")),
            not_after=_opt_int(d.get("not_after")),
            fingerprint=_opt_str(d.get("fingerprint")),
        )


@dataclass(frozen=True)
class ServedCertificate:
    """The certificate one server presents for a site (SNI), or why none was read."""

    server: str
    fingerprint: Optional[str] = None
    error: Optional[str] = None


@dataclass(frozen=True)
class CertificateStatus:
    """A site's stored certificate, whether it is due, and what each server serves."""

    site: str
    mode: str
    issuer: Optional[str]
    not_after: Optional[int]
    days_left: Optional[int]
    fingerprint: Optional[str]
    due: Optional[str]
    in_service: bool
    served: List[ServedCertificate] = field(default_factory=list)

    @classmethod
    def _from(cls, d: Dict[str, Any]) -> "CertificateStatus":
        stored = d.get("stored") or {}
        due = d.get("due")
        return cls(
            site=str(d["site"]),
            mode=str(d["mode"]),
            issuer=_opt_str(stored.get("issuer")),
            not_after=_opt_int(stored.get("not_after")),
            days_left=_opt_int(d.get("days_left")),
            fingerprint=_opt_str(stored.get("fingerprint")),
            due=None if due is None else str(due.get("reason")),
            in_service=bool(d.get("in_service", False)),
            served=[
                ServedCertificate(str(s["server"]), _opt_str(s.get("fingerprint")), _opt_str(s.get("error")))
                for s in d.get("served", [])
            ],
        )


@dataclass(frozen=True)
class FleetReport:
    """The outcome of `Engine.apply`: one report per server, the certificates obtained,
    and the second rollout that put new certificates in service (``tls_phase``)."""

    servers: List[ServerReport]
    stopped: Optional[str] = None
    rolled_back: List[ServerReport] = field(default_factory=list)
    failed: bool = False
    certificates: List[CertificateOutcome] = field(default_factory=list)
    tls_phase: List[ServerReport] = field(default_factory=list)
    notification_failures: List[str] = field(default_factory=list)
    """Notifiers that did not take the outcome (``[monitor] notify_deploys``), with why."""

    def __getitem__(self, server: str) -> ServerReport:
        for r in self.servers:
            if r.server == server:
                return r
        raise KeyError(server)

    def raise_for_failures(self) -> None:
        """Raise the exception of the first failed server (`ConfigRejected`,
        `ReloadFailed`, `RolledBack`, a `TransportError` …), if any."""
        from . import _errors_by_name

        for r in self.servers:
            if r.ok:
                continue
            if r.state == "rolled_back":
                raise _errors_by_name["RolledBack"](f"{r.server}: {r.detail}")
            name = r.error_kind or "DeployError"
            raise _errors_by_name.get(name, _errors_by_name["DeployError"])(f"{r.server}: {r.state}: {r.detail}")

    @classmethod
    def _from(cls, d: Dict[str, Any]) -> "FleetReport":
        return cls(
            servers=[ServerReport._from(r) for r in d.get("servers", [])],
            stopped=_opt_str(d.get("stopped")),
            rolled_back=[ServerReport._from(r) for r in d.get("rolled_back", [])],
            failed=bool(d.get("failed", False)),
            certificates=[CertificateOutcome._from(c) for c in d.get("certificates", [])],
            tls_phase=[ServerReport._from(r) for r in d.get("tls_phase", [])],
            notification_failures=[str(f) for f in d.get("notification_failures", [])],
        )


@dataclass(frozen=True)
class ServerStatus:
    """A server's live generation, last deployment and lock."""

    server: str
    current: Optional[str]
    committed: Optional[str]
    generations: List[str]
    last_state: Optional[str] = None
    last_actor: Optional[str] = None
    locked_by: Optional[str] = None
    error: Optional[str] = None

    @classmethod
    def _from(cls, d: Dict[str, Any]) -> "ServerStatus":
        last = d.get("last") or {}
        lock = d.get("lock")
        return cls(
            server=str(d["server"]),
            current=_opt_str(d.get("current")),
            committed=_opt_str(d.get("committed")),
            generations=[str(g) for g in d.get("generations", [])],
            last_state=_opt_str(last.get("state")),
            last_actor=_opt_str(last.get("actor")),
            locked_by=_opt_str(lock[0]) if lock else None,
            error=_opt_str(d.get("error")),
        )


@dataclass(frozen=True)
class DriftReport:
    """Hand edits of a server's live files against the recorded generation."""

    server: str
    state: str
    live: Optional[str] = None
    recorded: Optional[str] = None
    modified: List[str] = field(default_factory=list)
    added: List[str] = field(default_factory=list)
    removed: List[str] = field(default_factory=list)
    error: Optional[str] = None

    @property
    def drifted(self) -> bool:
        return self.state == "drifted"

    @classmethod
    def _from(cls, d: Dict[str, Any]) -> "DriftReport":
        if d.get("error") is not None:
            return cls(server=str(d["server"]), state="error", error=str(d["error"]))
        d = d["result"]
        detail: Dict[str, Any] = d.get("drift") or {}
        state = detail.get("state", "unknown")
        return cls(
            server=str(d["server"]),
            state=str(state),
            live=_opt_str(d.get("live")),
            recorded=_opt_str(d.get("recorded")),
            modified=[str(p) for p in detail.get("modified", [])],
            added=[str(p) for p in detail.get("added", [])],
            removed=[str(p) for p in detail.get("removed", [])],
        )


@dataclass(frozen=True)
class CommandResult:
    """A finished remote command."""

    exit_code: Optional[int]
    signal: Optional[str]
    stdout: bytes = field(repr=False)
    stderr: bytes = field(repr=False)
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @classmethod
    def _from(cls, t: Tuple[Optional[int], Optional[str], bytes, bytes, bool]) -> "CommandResult":
        return cls(exit_code=t[0], signal=t[1], stdout=bytes(t[2]), stderr=bytes(t[3]), truncated=bool(t[4]))


@dataclass(frozen=True)
class LintFinding:
    """A lint plugin's finding over a rendered configuration."""

    file: str
    line: int
    severity: str
    message: str
