"""A small legacy-style reverse-proxy panel (Flask + SQLAlchemy) whose engine calls go
through ``RPCC_ENGINES`` so each can move from the legacy Python implementation to rpcc
on its own::

    RPCC_ENGINES = {"render": "rust", "deploy": "legacy", "ssh": "rust", "crypto": "legacy"}

Every route needs a login (a session after ``/login``, the password hashed with
werkzeug's scrypt) or ``Authorization: Bearer $PANEL_ADMIN_TOKEN``; every POST, PUT,
PATCH and DELETE made with a session carries the session's CSRF token (the hidden
``csrf_token`` field of the forms, or an ``X-CSRF-Token`` header for JSON); JSON bodies
need ``Content-Type: application/json``; GET requests never write to the database.

Run: ``PANEL_ADMIN_PASSWORD=… FLASK_APP=panel:create_app flask run`` (see README.md in
this folder).
"""

from __future__ import annotations

import datetime as dt
import hmac
import os
import secrets
import tomllib
from pathlib import Path
from typing import Any, Dict, List, NoReturn, Optional, Tuple
from urllib.parse import urlsplit

from flask import Flask, Response, abort, flash, g, jsonify, redirect, render_template, request, session, url_for
from sqlalchemy import JSON, Column, DateTime, ForeignKey, Integer, String, Table, Text, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker
from werkzeug.security import check_password_hash, generate_password_hash

import legacy
import rpcc
import rpcc.flask


class Base(DeclarativeBase):
    pass


group_servers = Table(
    "group_servers",
    Base.metadata,
    Column("group_id", ForeignKey("domain_group.id"), primary_key=True),
    Column("server_id", ForeignKey("server.id"), primary_key=True),
)


class Server(Base):
    __tablename__ = "server"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer, default=22)
    user: Mapped[str] = mapped_column(String(64))
    host_key: Mapped[str] = mapped_column(String(255))
    key_file: Mapped[Optional[str]] = mapped_column(String(1024), nullable=True)
    # Encrypted: a Fernet token (legacy crypto) or an rpcc:v1 envelope (rust crypto).
    ssh_password: Mapped[Optional[str]] = mapped_column(Text, nullable=True)
    nginx: Mapped[Dict[str, Any]] = mapped_column(JSON, default=dict)


class DomainGroup(Base):
    __tablename__ = "domain_group"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    servers: Mapped[List[Server]] = relationship(secondary=group_servers)


class Domain(Base):
    __tablename__ = "domain"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(253), unique=True)
    backend: Mapped[str] = mapped_column(String(255))
    # "off", "self_signed" or "acme" (certificates need the rust deploy engine).
    tls: Mapped[str] = mapped_column(String(16), default="off")
    group_id: Mapped[int] = mapped_column(ForeignKey("domain_group.id"))
    group: Mapped[DomainGroup] = relationship()


class ProxyConfig(Base):
    __tablename__ = "proxy_config"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domain.id"))
    server_id: Mapped[int] = mapped_column(ForeignKey("server.id"))
    config: Mapped[str] = mapped_column(Text)
    generated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=dt.datetime.utcnow)


class ServerLog(Base):
    __tablename__ = "server_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    server: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=dt.datetime.utcnow)


class User(Base):
    """A panel login. The password is stored as a werkzeug hash (scrypt), never in clear.
    ``session_version`` is copied into each session at login; raising it (logout, a new
    password from the configuration) ends every session of the user at once."""

    __tablename__ = "panel_user"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    session_version: Mapped[int] = mapped_column(Integer, default=1)


DEFAULT_ENGINES = {"render": "legacy", "deploy": "legacy", "ssh": "legacy", "crypto": "legacy"}


def _db(app: Flask) -> "sessionmaker[Session]":
    return app.extensions["panel_db"]  # type: ignore[no-any-return]


def _engines(app: Flask) -> Dict[str, str]:
    return {**DEFAULT_ENGINES, **app.config.get("RPCC_ENGINES", {})}


def _keyring(app: Flask) -> rpcc.Keyring:
    path = app.config["PANEL_SECRET_KEY_FILE"]
    if not os.path.exists(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(rpcc.Keyring.generate_entry() + "\n")
    return rpcc.Keyring.load(path)


# ------------------------------------------------------------------ engine switch


def encrypt_password(app: Flask, server_name: str, value: str) -> str:
    if _engines(app)["crypto"] == "rust":
        return _keyring(app).encrypt(f"server/{server_name}/password", value)
    return legacy.fernet_encrypt(app.config["PANEL_LEGACY_FERNET_KEY"], value)


def decrypt_password(app: Flask, server: Server) -> Optional[str]:
    if not server.ssh_password:
        return None
    if server.ssh_password.startswith("rpcc:"):
        return _keyring(app).decrypt(f"server/{server.name}/password", server.ssh_password)
    return legacy.fernet_decrypt(app.config["PANEL_LEGACY_FERNET_KEY"], server.ssh_password)


def inventory_from_db(app: Flask, db: Session) -> rpcc.Inventory:
    """What the models turn into for rpcc: plain dicts, same fields as a TOML inventory."""
    servers = db.scalars(select(Server).order_by(Server.id)).all()
    groups = db.scalars(select(DomainGroup).order_by(DomainGroup.id)).all()
    domains = db.scalars(select(Domain).order_by(Domain.id)).all()
    keyring = _keyring(app) if _engines(app)["crypto"] == "rust" else None

    def auth(s: Server) -> Dict[str, Any]:
        if s.key_file:
            return {"key_file": s.key_file}
        if s.ssh_password and keyring is not None:
            pw = s.ssh_password
            if not pw.startswith("rpcc:"):  # migrate a legacy token on the way
                pw = keyring.import_fernet(pw, app.config["PANEL_LEGACY_FERNET_KEY"], f"server/{s.name}/password")
            return {"password": pw}
        return {"agent": True}

    return rpcc.Inventory.from_dicts(
        servers=[
            {"name": s.name, "host": s.host, "port": s.port, "user": s.user, "host_key": s.host_key,
             "auth": auth(s), "nginx": s.nginx}
            for s in servers
        ],
        groups=[{"name": g.name, "servers": [s.name for s in g.servers]} for g in groups],
        sites=[
            {"domain": d.name, "group": d.group.name, "upstream": {"backends": [d.backend]},
             "tls": {"mode": d.tls or "off"}, "health_path": "/healthz"}
            for d in domains
        ],
    )


def render_domain(app: Flask, db: Session, domain: Domain, server: Server) -> str:
    if _engines(app)["render"] == "rust":
        return rpcc.render_site(inventory_from_db(app, db), server.name, domain.name)
    return legacy.render_site(domain, server)


def log(db: Session, server: str, message: str) -> None:
    db.add(ServerLog(server=server, message=message))


# ------------------------------------------------------------------ authentication and CSRF

MIN_PASSWORD_LENGTH = 12
MIN_TOKEN_LENGTH = 16
MIN_SECRET_KEY_LENGTH = 32
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Reachable without a login (the login form itself; its POST still needs the CSRF token).
PUBLIC_ENDPOINTS = frozenset({"login"})
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


class PanelConfigError(RuntimeError):
    """The panel refuses to start: what is missing or too weak, and how to set it."""


class PanelError(Exception):
    """A request the panel refuses: HTTP status, message and field errors."""

    def __init__(self, status: int, message: str, errors: Optional[List[List[str]]] = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or []


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    return value not in ("0", "false", "no", "off")


def _json_error(status: int, message: str) -> NoReturn:
    response = jsonify({"error": message})
    response.status_code = status
    abort(response)


def _json_body(optional: bool = False) -> Dict[str, Any]:
    """The request's JSON object. Only ``Content-Type: application/json`` is read (415
    otherwise: a cross-site form can send text/plain without a preflight); a body that is
    not a JSON object is a 400. ``optional``: an empty body is ``{}``."""
    if optional and not request.get_data(cache=True):
        return {}
    if not request.is_json:
        _json_error(415, "the body must be JSON (Content-Type: application/json)")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        _json_error(400, "the body must be a JSON object")
    return body


def _bearer_token() -> Optional[str]:
    """The token of an ``Authorization: Bearer …`` header (``""`` when empty), or None
    when the request has no bearer credentials."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip()


def _token_ok(app: Flask, token: str) -> bool:
    expected = str(app.config.get("PANEL_ADMIN_TOKEN") or "")
    return bool(expected) and bool(token) and hmac.compare_digest(token.encode(), expected.encode())


def _session_user(app: Flask) -> Optional[User]:
    """The user of the session cookie, if it is still valid (the user exists and its
    session version has not moved since the login)."""
    uid, version = session.get("uid"), session.get("ver")
    if not isinstance(uid, int) or not isinstance(version, int):
        return None
    with _db(app)() as db:
        user = db.get(User, uid)
    if user is None or user.session_version != version:
        session.pop("uid", None)
        session.pop("ver", None)
        return None
    return user


def csrf_token() -> str:
    """This session's CSRF token (created on first use; a new one at each login)."""
    token = session.get("csrf")
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def _csrf_ok() -> bool:
    expected = session.get("csrf")
    given = request.headers.get("X-CSRF-Token")
    if given is None and request.mimetype in FORM_TYPES:
        given = request.form.get("csrf_token")
    if not isinstance(expected, str) or not expected or not given:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def _safe_next(target: Optional[str]) -> str:
    """A local path to go to after the login; anything else (another site, ``//host``,
    backslashes or control characters that browsers rewrite) becomes ``/``."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or any(ord(c) < 0x21 for c in target):
        return "/"
    parts = urlsplit(target)
    return "/" if parts.scheme or parts.netloc else target


def _ensure_admin(app: Flask, factory: "sessionmaker[Session]") -> None:
    """Create the administrator from ``PANEL_ADMIN_PASSWORD`` (or give it that password if
    it changed, which ends its sessions). Without a configured password, an administrator
    must already exist in the database; there is never a default password."""
    username = str(app.config.get("PANEL_ADMIN_USER") or "admin")
    # Hashed here and dropped from the configuration: nothing later needs the clear text.
    password = str(app.config.pop("PANEL_ADMIN_PASSWORD", "") or "")
    with factory() as db:
        user = db.scalars(select(User).where(User.username == username)).first()
        if password:
            if len(password) < MIN_PASSWORD_LENGTH:
                raise PanelConfigError(
                    f"PANEL_ADMIN_PASSWORD is too short: use at least {MIN_PASSWORD_LENGTH} characters"
                )
            if user is None:
                db.add(User(username=username, password_hash=generate_password_hash(password), session_version=1))
            elif not check_password_hash(user.password_hash, password):
                user.password_hash = generate_password_hash(password)
                user.session_version += 1
            db.commit()
        elif user is None:
            raise PanelConfigError(
                f"no administrator: set PANEL_ADMIN_PASSWORD (at least {MIN_PASSWORD_LENGTH} characters) "
                f"to create the user {username!r} (name from PANEL_ADMIN_USER); the panel has no default password"
            )


def _configure_security(app: Flask) -> None:
    secret = app.config.get("SECRET_KEY")
    if not secret:
        # Sessions then last as long as this process: set PANEL_SECRET_KEY to keep them
        # across restarts or share them between workers.
        app.config["SECRET_KEY"] = os.urandom(32)
    elif len(secret) < MIN_SECRET_KEY_LENGTH:
        raise PanelConfigError(
            f"PANEL_SECRET_KEY is too short: use at least {MIN_SECRET_KEY_LENGTH} characters, e.g. "
            "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    token = str(app.config.get("PANEL_ADMIN_TOKEN") or "")
    if token and len(token) < MIN_TOKEN_LENGTH:
        raise PanelConfigError(f"PANEL_ADMIN_TOKEN is too short: use at least {MIN_TOKEN_LENGTH} characters")
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    if app.config.get("SESSION_COOKIE_SAMESITE") not in ("Lax", "Strict"):
        app.config["SESSION_COOKIE_SAMESITE"] = "Lax"


# ------------------------------------------------------------------ actions (API and forms)


def _add_domain(app: Flask, body: Dict[str, Any]) -> str:
    with _db(app)() as db:
        group = db.scalars(select(DomainGroup).where(DomainGroup.name == str(body.get("group", "")))).first()
        if group is None:
            raise PanelError(400, "unknown group", [["group", "is not a group"]])
        name = str(body.get("name", ""))
        if db.scalars(select(Domain).where(Domain.name == name)).first() is not None:
            raise PanelError(409, "the domain exists", [["name", "already exists"]])
        tls = str(body.get("tls") or "off")
        if tls != "off" and _engines(app)["deploy"] != "rust":
            raise PanelError(400, "certificates need the rust deploy engine", [["tls", tls]])
        domain = Domain(name=name, backend=str(body.get("backend", "")), tls=tls, group=group)
        db.add(domain)
        db.flush()
        # Validate the whole desired state before anything is stored.
        try:
            inventory_from_db(app, db)
        except rpcc.ValidationError:
            db.rollback()
            raise
        db.commit()
        return domain.name


def _deploy_group(app: Flask, name: str) -> Tuple[bool, Dict[str, str]]:
    with _db(app)() as db:
        group = db.scalars(select(DomainGroup).where(DomainGroup.name == name)).first()
        if group is None:
            raise PanelError(404, "unknown group")
        results: Dict[str, str]
        if _engines(app)["deploy"] == "rust":
            engine = app.extensions["rpcc"].engine_for(inventory_from_db(app, db))
            report = engine.apply(groups=[name])
            results = {r.server: r.state for r in report.servers}
            ok = not report.failed
        else:
            domains = db.scalars(select(Domain).where(Domain.group_id == group.id)).all()
            results = legacy.deploy_group(
                list(group.servers),
                list(domains),
                lambda d, s: render_domain(app, db, d, s),
                lambda s: decrypt_password(app, s),
            )
            ok = all(v == "ok" for v in results.values())
        for server, outcome in results.items():
            log(db, server, f"deploy of group {name}: {outcome}")
        db.commit()
        return ok, results


def _domain_and_server(db: Session, name: str) -> Tuple[Domain, Server]:
    domain = db.scalars(select(Domain).where(Domain.name == name)).first()
    if domain is None:
        raise PanelError(404, "unknown domain")
    if not domain.group.servers:
        raise PanelError(409, f"group {domain.group.name} has no servers")
    return domain, domain.group.servers[0]


# ------------------------------------------------------------------ app


def create_app(config: Optional[Dict[str, Any]] = None) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SQLALCHEMY_DATABASE_URI="sqlite:///panel.db",
        RPCC_STATE="sqlite:///.rpcc/state.db",
        PANEL_SECRET_KEY_FILE=os.environ.get("RPCC_KEY_FILE", "panel-keys"),
        PANEL_LEGACY_FERNET_KEY=os.environ.get("PANEL_LEGACY_FERNET_KEY", ""),
        PANEL_ADMIN_TOKEN=os.environ.get("PANEL_ADMIN_TOKEN", ""),
        PANEL_ADMIN_USER=os.environ.get("PANEL_ADMIN_USER", "admin"),
        PANEL_ADMIN_PASSWORD=os.environ.get("PANEL_ADMIN_PASSWORD", ""),
        SECRET_KEY=os.environ.get("PANEL_SECRET_KEY") or None,
        SESSION_COOKIE_NAME="panel_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # Off only for plain-HTTP development away from localhost: PANEL_COOKIE_SECURE=0.
        SESSION_COOKIE_SECURE=_env_flag("PANEL_COOKIE_SECURE", True),
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=12),
        MAX_CONTENT_LENGTH=1 << 20,
    )
    app.config.update(config or {})
    _configure_security(app)
    if _engines(app)["crypto"] == "rust":
        # One keyring for the panel and the engine: it also seals certificate keys.
        _keyring(app)
        app.config.setdefault("RPCC_KEY_FILE", app.config["PANEL_SECRET_KEY_FILE"])
    engine = create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
    Base.metadata.create_all(engine)
    factory = sessionmaker(engine, expire_on_commit=False)
    app.extensions["panel_db"] = factory
    _ensure_admin(app, factory)
    # Checked against for unknown user names, so that a login takes as long either way.
    dummy_hash = generate_password_hash(secrets.token_urlsafe(16))
    ext = rpcc.flask.init_app(app)
    # Create (or migrate) rpcc's state now, not on the first GET /api/status.
    ext.engine_for(rpcc.Inventory.from_dicts()).status()
    app.jinja_env.globals["csrf_token"] = csrf_token

    @app.before_request
    def authenticate() -> Any:
        g.user = None
        g.user_id = None
        g.via = None
        api = request.path.startswith("/api/")
        token = _bearer_token()
        if token is not None:
            if not _token_ok(app, token):
                return jsonify({"error": "invalid bearer token"}), 401, {"WWW-Authenticate": 'Bearer error="invalid_token"'}
            # No ambient credentials (a browser never adds this header by itself): no CSRF check.
            g.user, g.via = "token", "token"
            return None
        user = _session_user(app)
        if user is not None:
            g.user, g.user_id, g.via = user.username, user.id, "session"
        if g.user is None and request.endpoint not in PUBLIC_ENDPOINTS:
            if api:
                return jsonify({"error": "authentication required"}), 401, {"WWW-Authenticate": "Bearer"}
            target = request.full_path.rstrip("?") if request.method == "GET" else None
            return redirect(url_for("login", next=_safe_next(target)))
        if request.method in UNSAFE_METHODS and not _csrf_ok():
            if api:
                return jsonify({"error": "missing or wrong CSRF token (send the X-CSRF-Token header)"}), 403
            return "Missing or wrong CSRF token: reload the page and try again.", 403, {"Content-Type": "text/plain"}
        return None

    @app.after_request
    def security_headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; form-action 'self'")
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.errorhandler(PanelError)
    def refused(e: PanelError) -> Any:
        return jsonify({"error": e.message, "errors": e.errors}), e.status

    @app.errorhandler(rpcc.ValidationError)
    def invalid(e: rpcc.ValidationError) -> Any:
        return jsonify({"error": str(e).splitlines()[0], "errors": [list(p) for p in e.errors]}), 400

    @app.errorhandler(rpcc.RpccError)
    def failed(e: rpcc.RpccError) -> Any:
        return jsonify({"error": str(e), "type": type(e).__name__}), 502

    # ---------------------------------------------------------------- HTML

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        target = _safe_next(request.values.get("next"))
        if request.method == "GET":
            if g.via == "session":
                return redirect(target)
            return render_template("login.html", next=target, error=None)
        username = request.form.get("username", "")
        password = request.form.get("password", "")
        with _db(app)() as db:
            user = db.scalars(select(User).where(User.username == username)).first()
        # A hash is checked for unknown names too: the time taken does not tell which exist.
        valid = check_password_hash(user.password_hash if user is not None else dummy_hash, password)
        if user is None or not valid:
            return render_template("login.html", next=target, error="Wrong user name or password."), 401
        session.clear()  # nothing from before the login (its CSRF token included) carries over
        session.permanent = True
        session["uid"], session["ver"] = user.id, user.session_version
        session["csrf"] = secrets.token_urlsafe(32)
        return redirect(target)

    @app.post("/logout")
    def logout() -> Any:
        if g.via == "session":
            # Ends every session of the user, copies of this cookie included.
            with _db(app)() as db:
                user = db.get(User, g.user_id)
                if user is not None:
                    user.session_version += 1
                    db.commit()
        session.clear()
        return redirect(url_for("login"))

    @app.get("/")
    def index() -> Any:
        with _db(app)() as db:
            return render_template(
                "index.html",
                user=g.user,
                engines=_engines(app),
                servers=db.scalars(select(Server).order_by(Server.id)).all(),
                groups=db.scalars(select(DomainGroup).order_by(DomainGroup.id)).all(),
                domains=db.scalars(select(Domain).order_by(Domain.id)).all(),
                logs=db.scalars(select(ServerLog).order_by(ServerLog.id.desc()).limit(20)).all(),
            )

    @app.post("/domains")
    def add_domain_form() -> Any:
        form = {k: request.form.get(k, "") for k in ("name", "group", "backend", "tls")}
        try:
            flash(f"Domain {_add_domain(app, form)} added.", "info")
        except PanelError as e:
            flash(f"Domain not added: {e.message}.", "error")
        except rpcc.ValidationError as e:
            flash(f"Domain not added: {str(e).splitlines()[0]}", "error")
        return redirect(url_for("index"))

    @app.post("/groups/<name>/deploy")
    def deploy_group_form(name: str) -> Any:
        try:
            ok, results = _deploy_group(app, name)
        except PanelError as e:
            flash(f"Deploy of {name}: {e.message}.", "error")
        except rpcc.RpccError as e:
            flash(f"Deploy of {name} failed: {e}", "error")
        else:
            outcome = ", ".join(f"{server}: {state}" for server, state in results.items()) or "no servers"
            flash(f"Deploy of {name}: {outcome}", "info" if ok else "error")
        return redirect(url_for("index"))

    # ---------------------------------------------------------------- JSON API

    @app.get("/api/session")
    def session_info() -> Any:
        """Who is calling, and the CSRF token a session's scripts send as X-CSRF-Token."""
        return jsonify({"user": g.user, "via": g.via, "csrf_token": csrf_token() if g.via == "session" else None})

    @app.get("/api/servers")
    def servers() -> Any:
        with _db(app)() as db:
            rows = db.scalars(select(Server).order_by(Server.id)).all()
            return jsonify([{"name": s.name, "host": s.host, "port": s.port} for s in rows])

    @app.get("/api/domains")
    def domains() -> Any:
        with _db(app)() as db:
            rows = db.scalars(select(Domain).order_by(Domain.id)).all()
            return jsonify([{"name": d.name, "group": d.group.name, "backend": d.backend} for d in rows])

    @app.post("/api/domains")
    def add_domain() -> Any:
        return jsonify({"name": _add_domain(app, _json_body())}), 201

    @app.get("/api/domains/<name>/config")
    def domain_config(name: str) -> Any:
        """The domain's config as it would be generated now (read only: nothing is stored)."""
        with _db(app)() as db:
            domain, server = _domain_and_server(db, name)
            return jsonify({"domain": name, "server": server.name, "config": render_domain(app, db, domain, server)})

    @app.post("/api/domains/<name>/config")
    def store_domain_config(name: str) -> Any:
        """Generate the domain's config and record it as a ``ProxyConfig``."""
        with _db(app)() as db:
            domain, server = _domain_and_server(db, name)
            text = render_domain(app, db, domain, server)
            stored = ProxyConfig(domain_id=domain.id, server_id=server.id, config=text)
            db.add(stored)
            db.commit()
            return jsonify({"domain": name, "server": server.name, "config": text, "id": stored.id}), 201

    @app.post("/api/groups/<name>/deploy")
    def deploy_group(name: str) -> Any:
        ok, results = _deploy_group(app, name)
        return jsonify({"ok": ok, "servers": results})

    @app.post("/api/servers/<name>/exec")
    def exec_command(name: str) -> Any:
        # Running commands on servers is for administrators only: the bearer token that
        # matches PANEL_ADMIN_TOKEN (checked in constant time by `authenticate`), a
        # session login is not enough. Without a token configured the route is off.
        if not app.config.get("PANEL_ADMIN_TOKEN"):
            return jsonify({"error": "command execution is disabled (set PANEL_ADMIN_TOKEN)"}), 403
        if g.via != "token":
            return jsonify({"error": "administrator token required"}), 401, {"WWW-Authenticate": "Bearer"}
        raw = _json_body().get("argv")
        if not isinstance(raw, list) or not raw:
            raise PanelError(400, "argv must be a non-empty list", [["argv", "is not a non-empty list"]])
        argv = [str(a) for a in raw]
        with _db(app)() as db:
            server = db.scalars(select(Server).where(Server.name == name)).first()
            if server is None:
                raise PanelError(404, "unknown server")
            if _engines(app)["ssh"] == "rust":
                r = rpcc.run(inventory_from_db(app, db), name, argv)
                code, out, err = r.exit_code, r.stdout, r.stderr
            else:
                code, out, err = legacy.execute_command(server, argv, decrypt_password(app, server))
            log(db, name, f"exec {argv[:1]} -> {code}")
            db.commit()
            return jsonify({"exit_code": code, "stdout": out.decode(errors="replace"), "stderr": err.decode(errors="replace")})

    @app.get("/api/status")
    def status() -> Any:
        with _db(app)() as db:
            engine = app.extensions["rpcc"].engine_for(inventory_from_db(app, db))
            return jsonify([{"server": s.server, "generation": s.current, "last": s.last_state, "error": s.error}
                            for s in engine.status()])

    @app.get("/api/certs")
    def certs() -> Any:
        with _db(app)() as db:
            engine = app.extensions["rpcc"].engine_for(inventory_from_db(app, db))
            return jsonify([
                {"site": c.site, "mode": c.mode, "issuer": c.issuer, "not_after": c.not_after,
                 "days_left": c.days_left, "due": c.due, "in_service": c.in_service}
                for c in engine.certificates()
            ])

    @app.post("/api/certs/renew")
    def renew_certs() -> Any:
        body = _json_body(optional=True)
        days = body.get("days")
        with _db(app)() as db:
            engine = app.extensions["rpcc"].engine_for(inventory_from_db(app, db))
            report = engine.renew(days=None if days is None else int(days), force=bool(body.get("force", False)))
            for c in report.certificates:
                log(db, c.site, f"certificate {c.action}: {c.detail}")
            db.commit()
            return jsonify({
                "ok": not report.failed,
                "certificates": [{"site": c.site, "action": c.action, "detail": c.detail} for c in report.certificates],
                "servers": {r.server: r.state for r in report.servers},
            })

    @app.get("/api/logs")
    def logs() -> Any:
        with _db(app)() as db:
            rows = db.scalars(select(ServerLog).order_by(ServerLog.id.desc()).limit(100)).all()
            return jsonify([{"server": r.server, "message": r.message, "at": r.at.isoformat()} for r in rows])

    return app


def import_fleet(app: Flask, inventory: Path) -> None:
    """Fill the panel's tables from an rpcc inventory (servers, groups, domains)."""
    data = tomllib.loads(Path(inventory).read_text())
    with _db(app)() as db:
        by_name: Dict[str, Server] = {}
        for s in data.get("servers", []):
            server = Server(
                name=s["name"], host=s["host"], port=s.get("port", 22), user=s["user"], host_key=s["host_key"],
                key_file=s["auth"].get("key_file"), nginx=s.get("nginx", {}),
            )
            by_name[server.name] = server
            db.add(server)
        groups: Dict[str, DomainGroup] = {}
        for g in data.get("groups", []):
            groups[g["name"]] = DomainGroup(name=g["name"], servers=[by_name[n] for n in g["servers"]])
            db.add(groups[g["name"]])
        for site in data.get("sites", []):
            db.add(Domain(name=site["domain"], backend=site["upstream"]["backends"][0], group=groups[site["group"]]))
        db.commit()
