"""The example panel driven by Flask's test client against the real fleet, in each
engine mode (all legacy, mixed, all rust)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Dict

import pytest

from conftest import Fleet, get

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flask_panel"
sys.path.insert(0, str(EXAMPLE))

MODES: Dict[str, Dict[str, str]] = {
    "legacy": {"render": "legacy", "deploy": "legacy", "ssh": "legacy", "crypto": "legacy"},
    "mixed": {"render": "rust", "deploy": "legacy", "ssh": "rust", "crypto": "legacy"},
    "rust": {"render": "rust", "deploy": "rust", "ssh": "rust", "crypto": "rust"},
}


@pytest.mark.parametrize("mode", list(MODES))
def test_panel_adds_a_domain_deploys_the_group_and_shows_status(fleet: Fleet, tmp_path: Path, mode: str) -> None:
    pytest.importorskip("flask")
    import panel  # examples/flask_panel/panel.py

    app = panel.create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/panel.db",
            "RPCC_STATE": f"sqlite:///{tmp_path}/state.db",
            "RPCC_ENGINES": MODES[mode],
            "PANEL_SECRET_KEY_FILE": str(tmp_path / "keys"),
            "PANEL_LEGACY_FERNET_KEY": "ZmVybmV0LWxlZ2FjeS1rZXktZm9yLXRoZS10ZXN0cyE=",
            "PANEL_ADMIN_TOKEN": "test-admin-token-7f3a",
        }
    )
    client = app.test_client()
    panel.import_fleet(app, fleet.inventory)
    servers = client.get("/api/servers").get_json()
    assert [s["name"] for s in servers] == ["s0", "s1"]

    r = client.post("/api/domains", json={"name": "new.demo.example", "group": "all", "backend": "127.0.0.1:9"})
    assert r.status_code == 201, r.get_json()
    bad = client.post("/api/domains", json={"name": "bad;name", "group": "all", "backend": "127.0.0.1:9"})
    assert bad.status_code == 400 and bad.get_json()["errors"]

    config = client.get("/api/domains/new.demo.example/config").get_json()
    assert "server_name new.demo.example" in config["config"]

    r = client.post("/api/groups/all/deploy")
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

    # Commands on servers need the administrator token.
    assert client.post("/api/servers/s0/exec", json={"argv": ["id", "-un"]}).status_code == 401
    wrong = {"Authorization": "Bearer not-the-token"}
    assert client.post("/api/servers/s0/exec", json={"argv": ["id", "-un"]}, headers=wrong).status_code == 401
    admin = {"Authorization": "Bearer test-admin-token-7f3a"}
    r = client.post("/api/servers/s0/exec", json={"argv": ["id", "-un"]}, headers=admin)
    assert r.status_code == 200 and r.get_json()["exit_code"] == 0
    st = client.get("/api/status").get_json()
    assert {s["server"] for s in st} == {"s0", "s1"}
    logs = client.get("/api/logs").get_json()
    assert any("deploy" in entry["message"] for entry in logs)


def test_panel_certificates_section(fleet: Fleet, tmp_path: Path) -> None:
    pytest.importorskip("flask")
    import panel  # examples/flask_panel/panel.py

    app = panel.create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/panel.db",
            "RPCC_STATE": f"sqlite:///{tmp_path}/state.db",
            "RPCC_ENGINES": MODES["rust"],
            "PANEL_SECRET_KEY_FILE": str(tmp_path / "keys"),
            "PANEL_LEGACY_FERNET_KEY": "ZmVybmV0LWxlZ2FjeS1rZXktZm9yLXRoZS10ZXN0cyE=",
        }
    )
    client = app.test_client()
    panel.import_fleet(app, fleet.inventory)
    r = client.post(
        "/api/domains", json={"name": "secure.demo.example", "group": "all", "backend": "127.0.0.1:9", "tls": "self_signed"}
    )
    assert r.status_code == 201, r.get_json()
    assert client.post("/api/groups/all/deploy").get_json()["ok"]
    certs = client.get("/api/certs").get_json()
    assert [(c["site"], c["mode"], c["in_service"], c["due"]) for c in certs] == [
        ("secure.demo.example", "self_signed", True, None)
    ], certs
    renewed = client.post("/api/certs/renew", json={"force": True}).get_json()
    assert renewed["ok"] and renewed["certificates"][0]["action"] == "generated", renewed
    assert set(renewed["servers"].values()) == {"succeeded"}, renewed
    logs = client.get("/api/logs").get_json()
    assert any(e["server"] == "secure.demo.example" and "generated" in e["message"] for e in logs)
