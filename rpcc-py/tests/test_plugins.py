"""rpcc.Plugin: load WASM plugins from Python (built by scripts/test-python into
$RPCC_WASM_PLUGINS), run each kind, and see hostile ones fail with PluginError."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import rpcc

INVENTORY = """
[[servers]]
name = "edge-1"
host = "203.0.113.10"
user = "deploy"
auth = { agent = true }

[[groups]]
name = "eu"
servers = ["edge-1"]

[[sites]]
domain = "app.example.com"
group = "eu"
upstream = { backends = ["10.0.0.5:8080"] }
"""


def wasm(name: str) -> Path:
    d = os.environ.get("RPCC_WASM_PLUGINS")
    if not d or not (Path(d) / f"{name}.wasm").exists():
        pytest.skip("WASM plugins not built (scripts/test-python builds them)")
    return Path(d) / f"{name}.wasm"


def test_template_plugin_renders_into_the_site() -> None:
    inv = rpcc.Inventory.from_toml_str(INVENTORY)
    p = rpcc.Plugin.load(wasm("maintenance_page"), config={"enabled": "true", "retry_after": "30"})
    assert (p.name, p.version, p.kind, p.capabilities) == ("maintenance-page", "0.1.0", "template", [])
    assert len(p.sha256) == 64
    text = p.render_site(inv, "edge-1", "app.example.com")
    assert "error_page 503 @maintenance;" in text and "add_header Retry-After 30 always;" in text
    assert "maintenance-page" in repr(p)


def test_lint_plugin_returns_typed_findings() -> None:
    inv = rpcc.Inventory.from_toml_str(INVENTORY)
    findings = rpcc.Plugin.load(wasm("security_headers")).lint(inv, "edge-1")
    assert findings and all(isinstance(f, rpcc.LintFinding) for f in findings)
    assert {f.severity for f in findings} == {"warning"}
    assert findings[0].file == "sites/app.example.com.conf" and findings[0].line > 0


def test_hostile_and_ungranted_plugins_raise_plugin_error() -> None:
    inv = rpcc.Inventory.from_toml_str(INVENTORY)
    with pytest.raises(rpcc.PluginError, match="not granted"):
        rpcc.Plugin.load(wasm("expected_status"))
    assert rpcc.Plugin.load(wasm("expected_status"), grant=["http-get", "clock"]).kind == "check"
    with pytest.raises(rpcc.PluginError, match="wasi:filesystem"):
        rpcc.Plugin.load(wasm("fs_reader"))
    with pytest.raises(rpcc.PluginError, match='"include" is not allowed'):
        rpcc.Plugin.load(wasm("hostile"), config={"mode": "include"}).render_site(inv, "edge-1", "app.example.com")
    with pytest.raises(rpcc.PluginError, match="fuel"):
        rpcc.Plugin.load(wasm("hostile"), config={"mode": "loop"}).render_site(inv, "edge-1", "app.example.com")
    with pytest.raises(rpcc.ValidationError):
        rpcc.Plugin.load(wasm("hostile"), grant=["network"])
