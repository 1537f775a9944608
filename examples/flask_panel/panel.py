"""A small legacy-style reverse-proxy panel (Flask + SQLAlchemy) whose engine calls go
through ``RPCC_ENGINES`` so each can move from the legacy Python implementation to rpcc
on its own::

    RPCC_ENGINES = {"render": "rust", "deploy": "legacy", "ssh": "rust", "crypto": "legacy"}

Run: ``FLASK_APP=panel:create_app flask run`` (see README.md in this folder).
"""

from __future__ import annotations

import datetime as dt
import hmac
import os
import tomllib
from pathlib import Path
from typing import Any, Dict, List, Optional

from flask import Flask, jsonify, request
from sqlalchemy import JSON, Column, DateTime, ForeignKey, Integer, String, Table, Text, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

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


# ------------------------------------------------------------------ app


def _require_admin(app: Flask) -> Optional[Any]:
    """``None`` for an authenticated administrator, else the error response."""
    expected = app.config.get("PANEL_ADMIN_TOKEN") or ""
    if not expected:
        return jsonify({"error": "command execution is disabled (set PANEL_ADMIN_TOKEN)"}), 403
    given = request.headers.get("Authorization", "")
    token = given[len("Bearer "):] if given.startswith("Bearer ") else ""
    if not token or not hmac.compare_digest(token.encode(), expected.encode()):
        return jsonify({"error": "administrator token required"}), 401, {"WWW-Authenticate": "Bearer"}
    return None


def create_app(config: Optional[Dict[str, Any]] = None) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SQLALCHEMY_DATABASE_URI="sqlite:///panel.db",
        RPCC_STATE="sqlite:///.rpcc/state.db",
        PANEL_SECRET_KEY_FILE=os.environ.get("RPCC_KEY_FILE", "panel-keys"),
        PANEL_LEGACY_FERNET_KEY=os.environ.get("PANEL_LEGACY_FERNET_KEY", ""),
        PANEL_ADMIN_TOKEN=os.environ.get("PANEL_ADMIN_TOKEN", ""),
    )
    app.config.update(config or {})
    if _engines(app)["crypto"] == "rust":
        # One keyring for the panel and the engine: it also seals certificate keys.
        _keyring(app)
        app.config.setdefault("RPCC_KEY_FILE", app.config["PANEL_SECRET_KEY_FILE"])
    engine = create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
    Base.metadata.create_all(engine)
    app.extensions["panel_db"] = sessionmaker(engine, expire_on_commit=False)
    rpcc.flask.init_app(app)

    @app.errorhandler(rpcc.ValidationError)
    def invalid(e: rpcc.ValidationError) -> Any:
        return jsonify({"error": str(e).splitlines()[0], "errors": [list(p) for p in e.errors]}), 400

    @app.errorhandler(rpcc.RpccError)
    def failed(e: rpcc.RpccError) -> Any:
        return jsonify({"error": str(e), "type": type(e).__name__}), 502

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
        body = request.get_json(force=True)
        with _db(app)() as db:
            group = db.scalars(select(DomainGroup).where(DomainGroup.name == body.get("group"))).first()
            if group is None:
                return jsonify({"error": "unknown group", "errors": [["group", "is not a group"]]}), 400
            tls = str(body.get("tls", "off"))
            if tls != "off" and _engines(app)["deploy"] != "rust":
                return jsonify({"error": "certificates need the rust deploy engine", "errors": [["tls", tls]]}), 400
            domain = Domain(name=str(body.get("name", "")), backend=str(body.get("backend", "")), tls=tls, group=group)
            db.add(domain)
            db.flush()
            # Validate the whole desired state before anything is stored.
            try:
                inventory_from_db(app, db)
            except rpcc.ValidationError:
                db.rollback()
                raise
            db.commit()
            return jsonify({"name": domain.name}), 201

    @app.get("/api/domains/<name>/config")
    def domain_config(name: str) -> Any:
        with _db(app)() as db:
            domain = db.scalars(select(Domain).where(Domain.name == name)).one()
            server = domain.group.servers[0]
            text = render_domain(app, db, domain, server)
            db.add(ProxyConfig(domain_id=domain.id, server_id=server.id, config=text))
            db.commit()
            return jsonify({"domain": name, "server": server.name, "config": text})

    @app.post("/api/groups/<name>/deploy")
    def deploy_group(name: str) -> Any:
        with _db(app)() as db:
            group = db.scalars(select(DomainGroup).where(DomainGroup.name == name)).one()
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
            return jsonify({"ok": ok, "servers": results})

    @app.post("/api/servers/<name>/exec")
    def exec_command(name: str) -> Any:
        # Running commands on servers is for administrators only: a bearer token that
        # matches PANEL_ADMIN_TOKEN (compared in constant time). Without one configured
        # the route is off.
        denied = _require_admin(app)
        if denied is not None:
            return denied
        argv = [str(a) for a in request.get_json(force=True).get("argv", [])]
        with _db(app)() as db:
            server = db.scalars(select(Server).where(Server.name == name)).one()
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
        body = request.get_json(silent=True) or {}
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
