"""rpcc for Python: the Rust engines of rpcc (validation, rendering, deploy, SSH,
keyring) for a Flask/SQLAlchemy reverse-proxy panel.

Blocking calls release the GIL while they work; one tokio runtime per process runs the
I/O (recreated after ``os.fork()``). Every error is an :class:`RpccError`.

>>> import rpcc
>>> inv = rpcc.Inventory.from_dicts(servers=[], groups=[], sites=[])
>>> inv.servers
[]
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

from . import _rpcc
from ._rpcc import (
    AuthError,
    ConfigRejected,
    DeployError,
    HostKeyError,
    KeyringError,
    PluginError,
    ReloadFailed,
    RolledBack,
    RpccError,
    TimeoutError,
    TransportError,
    ValidationError,
    Watcher,
)
from ._types import (
    CertificateOutcome,
    CertificateStatus,
    CommandResult,
    DriftReport,
    FileChange,
    FleetReport,
    LintFinding,
    ServerPlan,
    ServerReport,
    ServerStatus,
)

__version__: str = _rpcc.__version__

__all__ = [
    "AuthError",
    "CertificateOutcome",
    "CertificateStatus",
    "CommandResult",
    "ConfigRejected",
    "DeployError",
    "DriftReport",
    "Engine",
    "FileChange",
    "FleetReport",
    "HostKeyError",
    "Inventory",
    "Keyring",
    "KeyringError",
    "LintFinding",
    "Plugin",
    "PluginError",
    "ReloadFailed",
    "RolledBack",
    "RpccError",
    "ServerPlan",
    "ServerReport",
    "ServerStatus",
    "SshSession",
    "TimeoutError",
    "TransportError",
    "ValidationError",
    "Watcher",
    "render",
    "render_site",
    "run",
]

_errors_by_name: Dict[str, type] = {
    name: getattr(_rpcc, name)
    for name in (
        "RpccError",
        "ValidationError",
        "TransportError",
        "HostKeyError",
        "AuthError",
        "TimeoutError",
        "DeployError",
        "ConfigRejected",
        "ReloadFailed",
        "RolledBack",
        "KeyringError",
        "PluginError",
    )
}

PathLike = Union[str, "os.PathLike[str]"]


def _unsupported(o: object) -> Dict[str, str]:
    # Reported by validation at the field's path ("expected a string, found a table").
    return {"unsupported Python type": type(o).__name__}


class Inventory:
    """A validated inventory. Every constructor raises :class:`ValidationError` whose
    ``errors`` lists ``(path, message)`` for every problem at once."""

    __slots__ = ("_native",)

    def __init__(self, native: "_rpcc.Inventory") -> None:
        self._native = native

    @classmethod
    def from_toml(cls, path: PathLike, *, allow_plaintext: bool = False, env: Optional[str] = None) -> "Inventory":
        """Load an inventory file; ``env`` picks the ``[env.<name>]`` of one that defines
        environments (its servers, groups and keyring; required then)."""
        return cls(_rpcc.Inventory.from_toml(os.fspath(path), allow_plaintext=allow_plaintext, env=env))

    @classmethod
    def from_toml_str(cls, text: str, *, allow_plaintext: bool = False, env: Optional[str] = None) -> "Inventory":
        """Validate TOML text (``env`` as for :meth:`from_toml`)."""
        return cls(_rpcc.Inventory.from_toml_str(text, allow_plaintext=allow_plaintext, env=env))

    @classmethod
    def from_dicts(
        cls,
        servers: Sequence[Mapping[str, Any]] = (),
        groups: Sequence[Mapping[str, Any]] = (),
        sites: Sequence[Mapping[str, Any]] = (),
        *,
        allow_plaintext: bool = False,
    ) -> "Inventory":
        """What SQLAlchemy models turn into: lists of plain dicts, same fields as TOML.
        ``None`` means absent. Values of unsupported types are validation errors."""
        try:
            doc = json.dumps(
                {"servers": list(servers), "groups": list(groups), "sites": list(sites)}, default=_unsupported
            )
        except (TypeError, ValueError) as e:
            err = ValidationError(f"inventory data cannot be read: {e}")
            err.errors = [("(root)", str(e))]
            raise err from None
        return cls(_rpcc.Inventory.from_json(doc, allow_plaintext=allow_plaintext))

    def validate(self) -> "Inventory":
        """An inventory is validated when built; kept for the legacy call pattern."""
        return self

    @property
    def environment(self) -> Optional[str]:
        """The ``[env.<name>]`` it was loaded for (``None``: it defines none)."""
        return self._native.environment

    @property
    def servers(self) -> List[str]:
        return list(self._native.servers)

    @property
    def groups(self) -> List[str]:
        return list(self._native.groups)

    @property
    def sites(self) -> List[str]:
        return list(self._native.sites)

    @property
    def plaintext_secrets(self) -> List[str]:
        """Secret fields accepted as plain text (``allow_plaintext=True``)."""
        return list(self._native.plaintext_secrets)

    def sites_for_server(self, server: str) -> List[str]:
        return list(self._native.sites_for_server(server))

    def __repr__(self) -> str:
        return repr(self._native)


def render(inventory: Inventory, server: str) -> Dict[str, str]:
    """Render a server's whole configuration tree: ``{path: text}``."""
    return dict(_rpcc.render(inventory._native, server))


def render_site(inventory: Inventory, server: str, domain: str) -> str:
    """The configuration of one site as ``server`` serves it (legacy "generate config")."""
    return str(_rpcc.render_site(inventory._native, server, domain))


ProgressCallback = Callable[[Dict[str, Any]], None]


class Engine:
    """Plan, apply, roll back, status and drift for one inventory and its state.

    ``state`` is ``"sqlite:///path/to/state.db"`` (or a plain path), or
    ``"postgres://user@host/db"`` to share locks, history and secrets with other control
    planes. Sealed secrets in the
    inventory open with the keyring from ``key_file`` / ``RPCC_KEY_FILE`` / ``RPCC_KEYS``.
    """

    __slots__ = ("_native", "inventory")

    def __init__(
        self,
        inventory: Inventory,
        state: PathLike = "sqlite:///.rpcc/state.db",
        *,
        key_file: Optional[PathLike] = None,
        actor: Optional[str] = None,
    ) -> None:
        # SQLAlchemy's convention: sqlite:///relative.db, sqlite:////absolute.db;
        # postgres:// (or postgresql://) URLs are passed on as they are.
        path = os.fspath(state)
        if path.startswith("sqlite:///"):
            path = path[len("sqlite:///") :]
        elif "://" in path and not path.startswith(("postgres://", "postgresql://")):
            scheme = path.split("://", 1)[0]
            raise ValidationError(
                f"state {scheme}://…: not supported (use sqlite:///path, a file path, or postgres://user@host/db)"
            )
        self.inventory = inventory
        self._native = _rpcc.Engine(
            inventory._native, path, key_file=None if key_file is None else os.fspath(key_file), actor=actor
        )

    def plan(self, *, servers: Optional[List[str]] = None, groups: Optional[List[str]] = None) -> List[ServerPlan]:
        return [ServerPlan._from(d) for d in json.loads(self._native.plan(servers=servers, groups=groups))]

    def apply(
        self,
        *,
        servers: Optional[List[str]] = None,
        groups: Optional[List[str]] = None,
        strategy: Optional[str] = None,
        batch: Optional[int] = None,
        concurrency: Optional[int] = None,
        max_failed: Optional[int] = None,
        rollback_on_failure: Optional[bool] = None,
        keep: Optional[int] = None,
        probe: bool = True,
        on_progress: Optional[ProgressCallback] = None,
        certificates: bool = True,
    ) -> FleetReport:
        """Deploy; ``strategy`` is ``"all"`` or ``"canary"`` (default: the groups').
        With ``certificates`` (default), due self-signed certificates are generated and
        due ACME ones obtained, then deployed in a second rollout (``tls_phase``)."""
        raw = self._native.apply(
            servers=servers,
            groups=groups,
            strategy=strategy,
            batch=batch,
            concurrency=concurrency,
            max_failed=max_failed,
            rollback_on_failure=rollback_on_failure,
            keep=keep,
            probe=probe,
            on_progress=on_progress,
            certificates=certificates,
        )
        return FleetReport._from(json.loads(raw))

    def issue_certificates(
        self, *, servers: Optional[List[str]] = None, groups: Optional[List[str]] = None, probe: bool = True
    ) -> FleetReport:
        """`apply` with certificates: deploy (a site without its first certificate
        serves the ACME challenge only), obtain what is due, deploy again;
        ``report.certificates`` says what happened to each site."""
        return self.apply(servers=servers, groups=groups, probe=probe, certificates=True)

    def renew(
        self,
        *,
        days: Optional[int] = None,
        force: bool = False,
        servers: Optional[List[str]] = None,
        groups: Optional[List[str]] = None,
        probe: bool = True,
    ) -> FleetReport:
        """Renew what expires within ``days`` (default ``[acme] renew_days``), or every
        ACME and self-signed certificate with ``force``, and deploy them to the servers
        of those sites only; nothing is deployed when nothing is due."""
        raw = self._native.renew(servers=servers, groups=groups, days=days, force=force, probe=probe)
        return FleetReport._from(json.loads(raw))

    def certificates(
        self, *, servers: Optional[List[str]] = None, groups: Optional[List[str]] = None, days: Optional[int] = None
    ) -> List[CertificateStatus]:
        """Per ACME or self-signed site: stored certificate, days left, whether it is
        due, and the fingerprint each server presents over HTTPS (SNI)."""
        raw = self._native.certificates(servers=servers, groups=groups, days=days)
        return [CertificateStatus._from(d) for d in json.loads(raw)]

    def check(self) -> Dict[str, Any]:
        """One monitoring round (Glances metrics, every site on every serving server,
        DNS, check plugins), as ``rpcc check --json`` prints it, plus ``failed``."""
        result: Dict[str, Any] = json.loads(self._native.check())
        return result

    def watch(self) -> Watcher:
        """Start ``rpcc watch`` in this process: rounds on ``[monitor] interval``, metric
        samples, alerts to the audit log and the notifiers, certificate renewal. Runs on
        a thread of its own until ``stop()``, the end of a ``with`` block, or the
        watcher being dropped; set-up errors (rules, notifiers, Glances passwords, the
        state) raise here. The GIL is not held while it runs."""
        return self._native.watch()

    def audit(self) -> List[Dict[str, Any]]:
        """The audit log, oldest first: ``seq``, ``event`` (actor, action, server,
        outcome, detail …), ``prev_hash``, ``hash``."""
        records: List[Dict[str, Any]] = json.loads(self._native.audit())
        return records

    def notify(self, text: str, *, groups: Optional[List[str]] = None) -> List[str]:
        """Send ``text`` to the inventory's notifiers routed to ``groups`` (every
        unrouted notifier when none); returns the notifiers that failed, with why."""
        return list(self._native.notify(text, groups=groups))

    def rollback(self, server: str, to: Optional[str] = None) -> ServerReport:
        """Activate generation ``to`` (default: the previous one); raises on failure."""
        report = ServerReport._from(json.loads(self._native.rollback(server, to=to)))
        if not report.ok:
            name = report.error_kind or "DeployError"
            raise _errors_by_name.get(name, DeployError)(f"{server}: {report.state}: {report.detail}")
        return report

    def status(self, *, servers: Optional[List[str]] = None, groups: Optional[List[str]] = None) -> List[ServerStatus]:
        return [ServerStatus._from(d) for d in json.loads(self._native.status(servers=servers, groups=groups))]

    def drift(self, *, servers: Optional[List[str]] = None, groups: Optional[List[str]] = None) -> List[DriftReport]:
        return [DriftReport._from(d) for d in json.loads(self._native.drift(servers=servers, groups=groups))]

    # asyncio twins: the blocking call in a worker thread (it releases the GIL).
    async def plan_async(self, **kw: Any) -> List[ServerPlan]:
        return await asyncio.to_thread(lambda: self.plan(**kw))

    async def apply_async(self, **kw: Any) -> FleetReport:
        return await asyncio.to_thread(lambda: self.apply(**kw))

    async def rollback_async(self, server: str, to: Optional[str] = None) -> ServerReport:
        return await asyncio.to_thread(self.rollback, server, to)

    async def status_async(self, **kw: Any) -> List[ServerStatus]:
        return await asyncio.to_thread(lambda: self.status(**kw))

    async def drift_async(self, **kw: Any) -> List[DriftReport]:
        return await asyncio.to_thread(lambda: self.drift(**kw))

    def __repr__(self) -> str:
        return repr(self._native)


class SshSession:
    """One pooled SSH connection to a server (host key pinned in the inventory),
    replacing the legacy ``execute_command``."""

    __slots__ = ("_native", "server")

    def __init__(self, inventory: Inventory, server: str, *, key_file: Optional[PathLike] = None) -> None:
        self.server = server
        self._native = _rpcc.SshSession(
            inventory._native, server, key_file=None if key_file is None else os.fspath(key_file)
        )

    def run(self, argv: Sequence[str], *, timeout: float = 60.0, stdin: Optional[bytes] = None) -> CommandResult:
        """Run ``argv`` (no shell: each element is one argument)."""
        return CommandResult._from(self._native.run(list(argv), timeout=timeout, stdin=stdin))

    async def run_async(self, argv: Sequence[str], *, timeout: float = 60.0) -> CommandResult:
        return await asyncio.to_thread(lambda: self.run(argv, timeout=timeout))

    def __repr__(self) -> str:
        return f"SshSession({self.server!r})"


def run(inventory: Inventory, server: str, argv: Sequence[str], *, timeout: float = 60.0) -> CommandResult:
    """One command on one server."""
    return CommandResult._from(_rpcc.run_command(inventory._native, server, list(argv), timeout=timeout))


class Keyring:
    """Seal and open secrets (``rpcc:v1`` envelopes) and import legacy Fernet tokens."""

    __slots__ = ("_native",)

    def __init__(self, native: "_rpcc.Keyring") -> None:
        self._native = native

    @classmethod
    def load(cls, key_file: Optional[PathLike] = None) -> "Keyring":
        """``RPCC_KEYS``, or ``key_file`` / ``RPCC_KEY_FILE`` (must be 0600)."""
        return cls(_rpcc.Keyring.load(None if key_file is None else os.fspath(key_file)))

    @classmethod
    def from_keys(cls, keys: str) -> "Keyring":
        """From ``id:base64url`` entries (newest last)."""
        return cls(_rpcc.Keyring.from_keys(keys))

    @staticmethod
    def generate_entry(key_id: Optional[str] = None) -> str:
        """A new ``id:base64url`` key entry: key material, keep it secret."""
        return str(_rpcc.Keyring.generate_entry(key_id))

    @property
    def active_key_id(self) -> Optional[str]:
        return self._native.active_key_id

    def encrypt(self, record: str, value: str) -> str:
        return str(self._native.encrypt(record, value))

    def decrypt(self, record: str, envelope: str) -> str:
        return str(self._native.decrypt(record, envelope))

    def rotate(self, record: str, envelope: str) -> str:
        """Re-seal under the newest key (verified)."""
        return str(self._native.rotate(record, envelope))

    def import_fernet(self, token: str, legacy_key: str, record: str) -> str:
        """A legacy Fernet token (the Flask panel's) re-sealed as an envelope."""
        return str(self._native.import_fernet(record, token, legacy_key))

    def __repr__(self) -> str:
        return repr(self._native)


class Plugin:
    """A WASM plugin (``template``, ``check`` or ``lint``) loaded as rpcc loads it: no
    filesystem, network or clock beyond what ``grant`` allows; fuel, memory, time and
    output limits on every call. Failures raise :class:`PluginError`."""

    __slots__ = ("_native",)

    def __init__(self, native: "_rpcc.Plugin") -> None:
        self._native = native

    @classmethod
    def load(
        cls,
        path: PathLike,
        *,
        grant: Sequence[str] = (),
        config: Optional[Mapping[str, str]] = None,
        allow: Optional[Sequence[str]] = None,
    ) -> "Plugin":
        """Load ``path`` granting ``grant`` (``"http-get"``, ``"clock"``), passing
        ``config`` with every site; ``allow`` lists the directives a template plugin may
        emit (rpcc's default set when ``None``)."""
        return cls(
            _rpcc.Plugin.load(
                os.fspath(path),
                grant=list(grant),
                config=dict(config or {}),
                allow=None if allow is None else list(allow),
            )
        )

    @property
    def name(self) -> str:
        return self._native.name

    @property
    def version(self) -> str:
        return self._native.version

    @property
    def description(self) -> str:
        return self._native.description

    @property
    def kind(self) -> str:
        """``template``, ``check`` or ``lint``."""
        return self._native.kind

    @property
    def capabilities(self) -> List[str]:
        return list(self._native.capabilities)

    @property
    def sha256(self) -> str:
        return self._native.sha256

    def render_site(self, inventory: Inventory, server: str, domain: str) -> str:
        """A template plugin: the site's configuration on ``server`` with its fragments."""
        return str(self._native.render_site(inventory._native, server, domain))

    def lint(self, inventory: Inventory, server: str) -> List[LintFinding]:
        """A lint plugin: its findings over ``server``'s rendered configuration."""
        return [LintFinding(**f) for f in json.loads(self._native.lint_json(inventory._native, server))]

    def __repr__(self) -> str:
        return repr(self._native)
