"""Validation, rendering and the keyring from Python (no servers needed)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, Dict, List

import pytest

import rpcc

CANARY = "canary-PyRepr-83kq"


def server(**kw: Any) -> Dict[str, Any]:
    base: Dict[str, Any] = {"name": "edge-1", "host": "203.0.113.10", "user": "deploy", "auth": {"agent": True}}
    base.update(kw)
    return base


SITES: List[Dict[str, Any]] = [
    {"domain": "app.example.com", "group": "eu", "upstream": {"backends": ["10.0.0.5:8080"]}, "tls": {"mode": "off"}}
]


def test_dicts_validate_and_errors_carry_every_path() -> None:
    inv = rpcc.Inventory.from_dicts(servers=[server()], groups=[{"name": "eu", "servers": ["edge-1"]}], sites=SITES)
    assert inv.servers == ["edge-1"] and inv.sites == ["app.example.com"]
    assert inv.validate() is inv

    with pytest.raises(rpcc.ValidationError) as e:
        rpcc.Inventory.from_dicts(
            servers=[server(host=7), server(name="edge-2", port="22")],
            groups=[{"name": "eu", "servers": ["edge-1", "nope"]}],
            sites=[{"domain": "bad;name", "group": "eu"}],
        )
    paths = [p for p, _ in e.value.errors]
    for p in ["servers[0].host", "servers[1].port", "groups[0].servers[1]", "sites[0].domain"]:
        assert p in paths, paths
    assert isinstance(e.value, rpcc.RpccError)


def test_wrong_python_types_are_validation_errors_not_type_errors() -> None:
    class Model:
        pass

    with pytest.raises(rpcc.ValidationError) as e:
        rpcc.Inventory.from_dicts(servers=[server(host=Model(), port=object())])
    paths = [p for p, _ in e.value.errors]
    assert "servers[0].host" in paths and "servers[0].port" in paths
    with pytest.raises(rpcc.ValidationError):
        rpcc.Inventory.from_dicts(servers=[server(auth={"password": b"bytes"})])
    with pytest.raises(rpcc.ValidationError):
        rpcc.Inventory.from_dicts(servers=[{"name": "x"}])  # missing fields


def test_plain_text_secrets_are_refused_unless_allowed() -> None:
    with pytest.raises(rpcc.ValidationError) as e:
        rpcc.Inventory.from_dicts(servers=[server(auth={"password": CANARY})])
    assert ("servers[0].auth.password" in [p for p, _ in e.value.errors])
    assert CANARY not in str(e.value) and CANARY not in repr(e.value)
    inv = rpcc.Inventory.from_dicts(servers=[server(auth={"password": CANARY})], allow_plaintext=True)
    assert inv.plaintext_secrets == ["servers[0].auth.password"]
    assert CANARY not in repr(inv)


def test_render_matches_the_cli_byte_for_byte(tmp_path: Path, rpcc_cli: str) -> None:
    toml = tmp_path / "inv.toml"
    toml.write_text(
        '[[servers]]\nname = "edge-1"\nhost = "203.0.113.10"\nuser = "deploy"\nauth = { agent = true }\n\n'
        '[[groups]]\nname = "eu"\nservers = ["edge-1"]\n\n'
        '[[sites]]\ndomain = "app.example.com"\ngroup = "eu"\nupstream = { backends = ["10.0.0.5:8080"] }\n'
        'tls = { mode = "off" }\nwebsocket = true\n'
    )
    inv = rpcc.Inventory.from_toml(toml)
    files = rpcc.render(inv, "edge-1")
    out = tmp_path / "out"
    subprocess.run([rpcc_cli, "render", str(toml), "--out", str(out)], check=True, capture_output=True)
    cli_files = {
        str(p.relative_to(out / "edge-1")): p.read_text()
        for p in (out / "edge-1").rglob("*")
        if p.is_file() and p.name != "manifest.json"
    }
    assert files == cli_files
    site = rpcc.render_site(inv, "edge-1", "APP.example.com")
    assert site == files["sites/app.example.com.conf"] and "proxy_pass" in site
    with pytest.raises(rpcc.ValidationError):
        rpcc.render_site(inv, "edge-1", "other.example.com")
    with pytest.raises(rpcc.ValidationError):
        rpcc.render(inv, "edge-9")


def test_keyring_round_trip_tamper_and_legacy_fernet() -> None:
    from cryptography.fernet import Fernet

    entry = rpcc.Keyring.generate_entry("k1")
    ring = rpcc.Keyring.from_keys(entry)
    env = ring.encrypt("server/edge-1/password", CANARY)
    assert env.startswith("rpcc:v1:k1:")
    assert ring.decrypt("server/edge-1/password", env) == CANARY
    with pytest.raises(rpcc.KeyringError) as e:
        ring.decrypt("server/edge-2/password", env)
    assert "different record" in str(e.value) and CANARY not in str(e.value)
    newer = rpcc.Keyring.from_keys(entry + "," + rpcc.Keyring.generate_entry("k2"))
    rotated = newer.rotate("server/edge-1/password", env)
    assert rotated.startswith("rpcc:v1:k2:") and newer.decrypt("server/edge-1/password", rotated) == CANARY
    legacy_key = Fernet.generate_key()
    token = Fernet(legacy_key).encrypt(CANARY.encode()).decode()
    imported = ring.import_fernet(token, legacy_key.decode(), "server/old/password")
    assert ring.decrypt("server/old/password", imported) == CANARY
    for obj in (ring, newer, e.value):
        assert CANARY not in repr(obj) and CANARY not in str(obj)
    assert entry.split(":")[1] not in repr(ring)
    with pytest.raises(rpcc.KeyringError):
        rpcc.Keyring.from_keys("k1:not-base64!")


def test_environments_are_chosen_at_load() -> None:
    text = """
[[sites]]
domain = "app.example.com"
group = "edge"
upstream = { backends = ["10.0.0.5:8080"] }

[env.staging]
[[env.staging.servers]]
name = "stg-1"
host = "203.0.113.10"
user = "deploy"
auth = { agent = true }
[[env.staging.groups]]
name = "edge"
servers = ["stg-1"]

[env.production]
[[env.production.servers]]
name = "prod-1"
host = "203.0.113.20"
user = "deploy"
auth = { agent = true }
[[env.production.groups]]
name = "edge"
servers = ["prod-1"]
"""
    staging = rpcc.Inventory.from_toml_str(text, env="staging")
    assert staging.environment == "staging" and staging.servers == ["stg-1"]
    assert rpcc.Inventory.from_toml_str(text, env="production").servers == ["prod-1"]
    with pytest.raises(rpcc.ValidationError) as e:
        rpcc.Inventory.from_toml_str(text)
    assert any("choose one with --env" in message for _, message in e.value.errors), e.value.errors
