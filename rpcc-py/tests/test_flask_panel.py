"""The example panel driven by Flask's test client: against the real fleet in each engine
mode (all legacy, mixed, all rust), and its security: a login (or the bearer token) on
every route, CSRF tokens on every state-changing request, JSON only as JSON, and GET
requests that never write."""

from __future__ import annotations

import json
import re
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple
from urllib.parse import parse_qs, urlsplit

import pytest

from conftest import Fleet, get

pytest.importorskip("flask")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flask_panel"
sys.path.insert(0, str(EXAMPLE))

import panel  # noqa: E402  (examples/flask_panel/panel.py)

MODES: Dict[str, Dict[str, str]] = {
    "legacy": {"render": "legacy", "deploy": "legacy", "ssh": "legacy", "crypto": "legacy"},
    "mixed": {"render": "rust", "deploy": "legacy", "ssh": "rust", "crypto": "legacy"},
    "rust": {"render": "rust", "deploy": "rust", "ssh": "rust", "crypto": "rust"},
}
PASSWORD = "correct horse battery staple 42"
TOKEN = "test-admin-token-7f3a"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}

# An inventory on documentation addresses, for the tests that need rows but no servers.
OFFLINE_INVENTORY = """
[[servers]]
name = "edge-1"
host = "203.0.113.10"
user = "deploy"
host_key = "ssh-ed25519 SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s"
auth = { agent = true }
nginx = { layout = "debian", root = "/etc/nginx", reload = "systemctl reload nginx", version = "1.22.1" }

[[groups]]
name = "all"
servers = ["edge-1"]

[[sites]]
domain = "app.demo.example"
group = "all"
upstream = { backends = ["127.0.0.1:9"] }
"""


@pytest.fixture(autouse=True)
def _no_panel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The panel reads PANEL_* from the environment: these tests set what they need."""
    for name in ("PANEL_ADMIN_USER", "PANEL_ADMIN_PASSWORD", "PANEL_ADMIN_TOKEN", "PANEL_SECRET_KEY", "PANEL_COOKIE_SECURE"):
        monkeypatch.delenv(name, raising=False)


def make_app(tmp_path: Path, mode: str = "legacy", **extra: Any) -> Any:
    config: Dict[str, Any] = {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/panel.db",
        "RPCC_STATE": f"sqlite:///{tmp_path}/state.db",
        "RPCC_ENGINES": MODES[mode],
        "PANEL_SECRET_KEY_FILE": str(tmp_path / "keys"),
        "PANEL_LEGACY_FERNET_KEY": "ZmVybmV0LWxlZ2FjeS1rZXktZm9yLXRoZS10ZXN0cyE=",
        "PANEL_ADMIN_PASSWORD": PASSWORD,
        "PANEL_ADMIN_TOKEN": TOKEN,
    }
    config.update(extra)
    return panel.create_app(config)


def offline_app(tmp_path: Path, **extra: Any) -> Any:
    app = make_app(tmp_path, **extra)
    inventory = tmp_path / "inventory.toml"
    inventory.write_text(OFFLINE_INVENTORY)
    panel.import_fleet(app, inventory)
    return app


def form_csrf(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, html
    return m.group(1)


def login(client: Any, password: str = PASSWORD, username: str = "admin", next_: str = "/") -> Any:
    """Sign in through the login form (its CSRF token included); the response."""
    page = client.get(f"/login?next={next_}")
    assert page.status_code == 200
    return client.post(
        "/login",
        data={"username": username, "password": password, "next": next_, "csrf_token": form_csrf(page.get_data(as_text=True))},
    )


def logged_in(client: Any) -> Dict[str, str]:
    """Sign in; the headers a script of this session sends with its JSON requests."""
    r = login(client)
    assert r.status_code == 302, r.get_data(as_text=True)
    info = client.get("/api/session").get_json()
    assert info["user"] == "admin" and info["via"] == "session" and info["csrf_token"]
    return {"X-CSRF-Token": info["csrf_token"]}


def routes(app: Any) -> List[Tuple[str, str, str]]:
    """(endpoint, method, URL) of every route, `x` for each URL argument."""
    out = []
    for rule in app.url_map.iter_rules():
        url = rule.build({arg: "x" for arg in rule.arguments})[1]
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            out.append((rule.endpoint, method, url))
    return out


def snapshot(path: Path) -> Dict[str, List[str]]:
    """Every row of every table of a SQLite file (opened read-only)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {t: sorted(map(repr, db.execute(f'SELECT * FROM "{t}"'))) for t in tables}
    finally:
        db.close()


# ------------------------------------------------------------------ engines against the fleet


@pytest.mark.parametrize("mode", list(MODES))
def test_panel_adds_a_domain_deploys_the_group_and_shows_status(fleet: Fleet, tmp_path: Path, mode: str) -> None:
    app = make_app(tmp_path, mode)
    client = app.test_client()
    panel.import_fleet(app, fleet.inventory)
    csrf = logged_in(client)
    servers = client.get("/api/servers").get_json()
    assert [s["name"] for s in servers] == ["s0", "s1"]

    r = client.post("/api/domains", json={"name": "new.demo.example", "group": "all", "backend": "127.0.0.1:9"}, headers=csrf)
    assert r.status_code == 201, r.get_json()
    bad = client.post("/api/domains", json={"name": "bad;name", "group": "all", "backend": "127.0.0.1:9"}, headers=csrf)
    assert bad.status_code == 400 and bad.get_json()["errors"]

    config = client.get("/api/domains/new.demo.example/config").get_json()
    assert "server_name new.demo.example" in config["config"]
    stored = client.post("/api/domains/new.demo.example/config", headers=csrf)
    assert stored.status_code == 201 and stored.get_json()["config"] == config["config"]

    r = client.post("/api/groups/all/deploy", headers=csrf)
    body = r.get_json()
    assert r.status_code == 200 and body["ok"], body
    # The legacy engine signals nginx and returns at once: for a moment old and new
    # workers both answer. rpcc returns only once the new config serves. Wait for five
    # answers in a row from the new config, so both are judged on the outcome.
    for name, (_, http) in fleet.ports.items():
        deadline, streak = time.monotonic() + 5, 0
        while streak < 5 and time.monotonic() < deadline:
            streak = streak + 1 if get(http, "new.demo.example")[0] == 200 else 0
            time.sleep(0.02)
        assert streak == 5, f"{name} does not serve the new domain"

    # Commands on servers need the administrator token: a session login is not enough.
    assert client.post("/api/servers/s0/exec", json={"argv": ["id", "-un"]}, headers=csrf).status_code == 401
    wrong = {"Authorization": "Bearer not-the-token"}
    assert client.post("/api/servers/s0/exec", json={"argv": ["id", "-un"]}, headers=wrong).status_code == 401
    r = client.post("/api/servers/s0/exec", json={"argv": ["id", "-un"]}, headers=BEARER)
    assert r.status_code == 200 and r.get_json()["exit_code"] == 0
    st = client.get("/api/status").get_json()
    assert {s["server"] for s in st} == {"s0", "s1"}
    logs = client.get("/api/logs").get_json()
    assert any("deploy" in entry["message"] for entry in logs)


def test_panel_certificates_section(fleet: Fleet, tmp_path: Path) -> None:
    app = make_app(tmp_path, "rust", PANEL_ADMIN_TOKEN="")
    client = app.test_client()
    panel.import_fleet(app, fleet.inventory)
    csrf = logged_in(client)
    r = client.post(
        "/api/domains",
        json={"name": "secure.demo.example", "group": "all", "backend": "127.0.0.1:9", "tls": "self_signed"},
        headers=csrf,
    )
    assert r.status_code == 201, r.get_json()
    assert client.post("/api/groups/all/deploy", headers=csrf).get_json()["ok"]
    certs = client.get("/api/certs").get_json()
    assert [(c["site"], c["mode"], c["in_service"], c["due"]) for c in certs] == [
        ("secure.demo.example", "self_signed", True, None)
    ], certs
    renewed = client.post("/api/certs/renew", json={"force": True}, headers=csrf).get_json()
    assert renewed["ok"] and renewed["certificates"][0]["action"] == "generated", renewed
    assert set(renewed["servers"].values()) == {"succeeded"}, renewed
    logs = client.get("/api/logs").get_json()
    assert any(e["server"] == "secure.demo.example" and "generated" in e["message"] for e in logs)
    # Without PANEL_ADMIN_TOKEN command execution is off, even for a signed-in user.
    assert client.post("/api/servers/s0/exec", json={"argv": ["id"]}, headers=csrf).status_code == 403


def test_the_html_forms_add_a_domain_and_deploy_with_their_csrf_field(fleet: Fleet, tmp_path: Path) -> None:
    app = make_app(tmp_path, "mixed")
    client = app.test_client()
    panel.import_fleet(app, fleet.inventory)
    assert login(client).status_code == 302
    page = client.get("/").get_data(as_text=True)
    assert "s0" in page and "Deploy" in page
    token = form_csrf(page)
    r = client.post("/domains", data={"name": "form.demo.example", "group": "all", "backend": "127.0.0.1:9",
                                      "tls": "off", "csrf_token": token})
    assert r.status_code == 302 and r.headers["Location"] == "/"
    r = client.post("/groups/all/deploy", data={"csrf_token": token})
    assert r.status_code == 302
    page = client.get("/").get_data(as_text=True)
    assert "Domain form.demo.example added." in page and "Deploy of all: s0: ok, s1: ok" in page, page
    deadline = time.monotonic() + 5
    while get(fleet.ports["s0"][1], "form.demo.example")[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert get(fleet.ports["s0"][1], "form.demo.example")[0] == 200


@pytest.mark.parametrize("mode", ["legacy", "rust"])
def test_get_requests_do_not_change_the_databases(fleet: Fleet, tmp_path: Path, mode: str) -> None:
    app = make_app(tmp_path, mode)
    client = app.test_client()
    panel.import_fleet(app, fleet.inventory)
    csrf = logged_in(client)
    r = client.post("/api/domains", json={"name": "get.demo.example", "group": "all", "backend": "127.0.0.1:9"}, headers=csrf)
    assert r.status_code == 201, r.get_json()
    assert client.post("/api/groups/all/deploy", headers=csrf).get_json()["ok"]
    client.post("/api/servers/s0/exec", json={"argv": ["true"]}, headers=BEARER)

    before = snapshot(tmp_path / "panel.db"), snapshot(tmp_path / "state.db")
    assert before[0]["server_log"] and before[0]["domain"], before
    seen = []
    for endpoint, method, url in routes(app):
        if method != "GET" or endpoint == "static":
            continue
        url = url.replace("/x/", "/get.demo.example/")
        for headers in ({}, BEARER):
            r = client.get(url, headers=headers)
            assert r.status_code in (200, 302), (url, r.status_code, r.get_data(as_text=True))
        seen.append(endpoint)
    assert {"index", "login", "domain_config", "status", "certs", "logs", "servers", "domains"} <= set(seen)
    after = snapshot(tmp_path / "panel.db"), snapshot(tmp_path / "state.db")
    assert after == before


# ------------------------------------------------------------------ authentication


def test_every_route_refuses_anonymous_requests(tmp_path: Path) -> None:
    app = offline_app(tmp_path)
    client = app.test_client()
    checked = []
    for endpoint, method, url in routes(app):
        if endpoint in ("login", "static"):
            continue
        body: Dict[str, Any] = {"json": {"name": "x.demo.example", "group": "all", "backend": "127.0.0.1:9"}}
        r = client.open(url, method=method, **(body if method in UNSAFE else {}))
        if url.startswith("/api/"):
            assert r.status_code == 401, (method, url, r.status_code)
            assert r.get_json()["error"] == "authentication required"
        else:
            assert r.status_code == 302, (method, url, r.status_code)
            assert r.headers["Location"].startswith("/login"), (method, url, r.headers["Location"])
        checked.append((endpoint, method))
    # Every route of the panel was tried (not an empty or partial map).
    assert {e for e, _ in checked} >= {
        "index", "logout", "add_domain_form", "deploy_group_form", "session_info", "servers", "domains",
        "add_domain", "domain_config", "store_domain_config", "deploy_group", "exec_command", "status",
        "certs", "renew_certs", "logs",
    }, checked
    # Unknown paths too, and nothing was stored.
    assert client.get("/api/nothing").status_code == 401
    assert client.get("/nothing").status_code == 302
    assert [d["name"] for d in client.get("/api/domains", headers=BEARER).get_json()] == ["app.demo.example"]


def test_login_refuses_a_wrong_password_and_sets_a_safe_cookie(tmp_path: Path) -> None:
    app = offline_app(tmp_path)
    client = app.test_client()
    for username, password in (("admin", "not the password"), ("admin", ""), ("nobody", PASSWORD), ("admin", "admin")):
        r = login(client, password=password, username=username)
        assert r.status_code == 401 and "Wrong user name or password." in r.get_data(as_text=True)
        assert client.get("/api/servers").status_code == 401
    # The login form needs its CSRF token too (no login CSRF).
    assert client.post("/login", data={"username": "admin", "password": PASSWORD}).status_code == 403
    assert client.get("/api/servers").status_code == 401

    r = login(client, next_="/api/servers")
    assert r.status_code == 302 and r.headers["Location"] == "/api/servers"
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith("panel_session=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" in cookie
    assert client.get("/api/servers").get_json() == [{"name": "edge-1", "host": "203.0.113.10", "port": 22}]
    # After a login, only local paths: no open redirect.
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example", "/\t/evil.example"):
        other = app.test_client()
        assert login(other, next_=target).headers["Location"] == "/", target
    # The anonymous redirect keeps where the user was going.
    location = urlsplit(app.test_client().get("/?a=1").headers["Location"])
    assert location.path == "/login" and parse_qs(location.query) == {"next": ["/?a=1"]}


def test_logout_ends_the_session_and_its_copies(tmp_path: Path) -> None:
    app = offline_app(tmp_path)
    client = app.test_client()
    csrf = logged_in(client)
    stolen = client.get_cookie("panel_session").value
    assert client.post("/logout").status_code == 403  # CSRF token needed here too
    r = client.post("/logout", headers=csrf)
    assert r.status_code == 302 and r.headers["Location"] == "/login"
    assert client.get("/api/servers").status_code == 401
    client.set_cookie("panel_session", stolen)
    assert client.get("/api/servers").status_code == 401
    # A new login works again.
    logged_in(client)
    assert client.get("/api/servers").status_code == 200


def test_the_panel_refuses_to_start_without_an_administrator_password(tmp_path: Path) -> None:
    with pytest.raises(panel.PanelConfigError, match="PANEL_ADMIN_PASSWORD"):
        make_app(tmp_path, PANEL_ADMIN_PASSWORD="")
    with pytest.raises(panel.PanelConfigError, match="too short"):
        make_app(tmp_path, PANEL_ADMIN_PASSWORD="short")
    with pytest.raises(panel.PanelConfigError, match="PANEL_ADMIN_TOKEN is too short"):
        make_app(tmp_path, PANEL_ADMIN_TOKEN="abc")
    with pytest.raises(panel.PanelConfigError, match="PANEL_SECRET_KEY is too short"):
        make_app(tmp_path, SECRET_KEY="dev")
    # Created once from the configuration, the administrator stays (hashed, never in
    # clear) and the password may leave the environment.
    app = make_app(tmp_path)
    assert "PANEL_ADMIN_PASSWORD" not in app.config
    rows = sqlite3.connect(tmp_path / "panel.db").execute("SELECT username, password_hash FROM panel_user").fetchall()
    assert len(rows) == 1 and rows[0][0] == "admin" and PASSWORD not in rows[0][1] and rows[0][1].startswith("scrypt:")
    again = make_app(tmp_path, PANEL_ADMIN_PASSWORD="")
    assert login(again.test_client()).status_code == 302
    # A new configured password replaces the old one and ends the sessions made with it.
    client = again.test_client()
    logged_in(client)
    assert client.get("/api/servers").status_code == 200
    cookie = client.get_cookie("panel_session").value
    changed = make_app(tmp_path, PANEL_ADMIN_PASSWORD="another long password 7", SECRET_KEY=again.config["SECRET_KEY"])
    replay = changed.test_client()
    replay.set_cookie("panel_session", cookie)
    assert replay.get("/api/servers").status_code == 401
    assert login(changed.test_client()).status_code == 401
    assert login(changed.test_client(), password="another long password 7").status_code == 302


# ------------------------------------------------------------------ CSRF and JSON bodies


def test_posts_with_a_session_need_the_csrf_token(tmp_path: Path) -> None:
    app = offline_app(tmp_path)
    client = app.test_client()
    csrf = logged_in(client)
    domain = {"name": "new.demo.example", "group": "all", "backend": "127.0.0.1:9"}
    for headers in ({}, {"X-CSRF-Token": "wrong"}, {"X-CSRF-Token": ""}):
        r = client.post("/api/domains", json=domain, headers=headers)
        assert r.status_code == 403 and "CSRF" in r.get_json()["error"], headers
    # PUT/PATCH/DELETE are checked before routing: refused without the token, and only
    # then found not to exist.
    for method in ("PUT", "PATCH", "DELETE"):
        assert client.open("/api/domains", method=method, json=domain).status_code == 403
        assert client.open("/api/domains", method=method, json=domain, headers=csrf).status_code == 405
    assert [d["name"] for d in client.get("/api/domains").get_json()] == ["app.demo.example"]
    r = client.post("/api/domains", json=domain, headers=csrf)
    assert r.status_code == 201, r.get_json()
    assert [d["name"] for d in client.get("/api/domains").get_json()] == ["app.demo.example", "new.demo.example"]

    # Forms: the hidden field.
    form = {"name": "form.demo.example", "group": "all", "backend": "127.0.0.1:9", "tls": "off"}
    assert client.post("/domains", data=form).status_code == 403
    assert client.post("/domains", data={**form, "csrf_token": "wrong"}).status_code == 403
    assert client.post("/groups/all/deploy", data={}).status_code == 403
    token = form_csrf(client.get("/").get_data(as_text=True))
    assert token == csrf["X-CSRF-Token"]
    assert client.post("/domains", data={**form, "csrf_token": token}).status_code == 302
    assert "form.demo.example" in [d["name"] for d in client.get("/api/domains").get_json()]
    # The token is per session: another login has another one, and the old one is refused.
    other = app.test_client()
    assert logged_in(other) != csrf
    assert other.post("/api/domains", json={**domain, "name": "x.demo.example"}, headers=csrf).status_code == 403


def test_json_posts_need_the_json_content_type(tmp_path: Path) -> None:
    app = offline_app(tmp_path)
    client = app.test_client()
    csrf = logged_in(client)
    text = json.dumps({"name": "new.demo.example", "group": "all", "backend": "127.0.0.1:9"})
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        for headers in (csrf, BEARER):
            r = client.post("/api/domains", data=text, content_type=content_type, headers=headers)
            assert r.status_code == 415, (content_type, r.status_code)
            assert "application/json" in r.get_json()["error"]
    r = client.post("/api/servers/edge-1/exec", data='{"argv": ["id"]}', content_type="text/plain", headers=BEARER)
    assert r.status_code == 415
    r = client.post("/api/certs/renew", data='{"force": true}', content_type="text/plain", headers=csrf)
    assert r.status_code == 415
    assert client.post("/api/domains", data="{not json", content_type="application/json", headers=csrf).status_code == 400
    assert client.post("/api/domains", data="[1, 2]", content_type="application/json", headers=csrf).status_code == 400
    assert [d["name"] for d in client.get("/api/domains").get_json()] == ["app.demo.example"]
    r = client.post("/api/domains", data=text, content_type="application/json", headers=csrf)
    assert r.status_code == 201, r.get_json()


# ------------------------------------------------------------------ bearer token


def test_the_bearer_token_works_without_csrf_and_a_wrong_one_is_refused(tmp_path: Path) -> None:
    app = offline_app(tmp_path)
    client = app.test_client()
    assert client.get("/api/servers", headers=BEARER).status_code == 200
    assert client.get("/api/session", headers=BEARER).get_json() == {"user": "token", "via": "token", "csrf_token": None}
    # No ambient credentials with a bearer token: no CSRF token needed, and no cookie set.
    r = client.post("/api/domains", json={"name": "tok.demo.example", "group": "all", "backend": "127.0.0.1:9"},
                    headers=BEARER)
    assert r.status_code == 201, r.get_json()
    assert "Set-Cookie" not in r.headers
    assert client.post("/api/domains/tok.demo.example/config", headers=BEARER).status_code == 201

    for header in (f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Bearer ", "Bearer", f"bearer {TOKEN.upper()}"):
        for method, url in (("GET", "/api/servers"), ("POST", "/api/groups/all/deploy"), ("GET", "/")):
            r = client.open(url, method=method, headers={"Authorization": header})
            assert r.status_code == 401, (header, url, r.status_code)
            assert TOKEN not in r.get_data(as_text=True)
    # A wrong token is refused even beside a valid session (it does not fall back).
    csrf = logged_in(client)
    wrong = {**csrf, "Authorization": "Bearer not-the-token"}
    assert client.get("/api/servers", headers=wrong).status_code == 401
    assert client.get("/api/servers", headers=csrf).status_code == 200

    # Without a configured token, no bearer token is accepted.
    (tmp_path / "off").mkdir()
    off = offline_app(tmp_path / "off", PANEL_ADMIN_TOKEN="")
    assert off.test_client().get("/api/servers", headers=BEARER).status_code == 401
    assert off.test_client().get("/api/servers", headers={"Authorization": "Bearer "}).status_code == 401


def test_responses_carry_security_headers(tmp_path: Path) -> None:
    app = offline_app(tmp_path)
    client = app.test_client()
    for r in (client.get("/login"), client.get("/api/servers"), client.get("/api/servers", headers=BEARER)):
        assert r.headers["X-Frame-Options"] == "DENY"
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
        assert r.headers["Cache-Control"] == "no-store"
