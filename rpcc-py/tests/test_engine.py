"""Deploy, rollback, status, drift and SSH through Python against a real loopback fleet
(rpcc-testkit's sshd + nginx): exception types, the GIL, fork safety, repr hygiene."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest

import rpcc
from conftest import Fleet, get

CANARY = "canary-PyEngine-x81"


def engine(fleet: Fleet, name: str = "inventory.toml") -> rpcc.Engine:
    inv = rpcc.Inventory.from_toml(fleet.dir / name)
    return rpcc.Engine(inv, f"sqlite:///{fleet.dir}/state.db")


def test_plan_apply_status_drift_rollback(fleet: Fleet) -> None:
    e = engine(fleet)
    plans = e.plan()
    assert [p.server for p in plans] == ["s0", "s1"]
    assert all(p.error is None and p.changes for p in plans)

    events: List[Dict[str, Any]] = []
    report = e.apply(on_progress=events.append)
    assert not report.failed and all(r.state == "succeeded" for r in report.servers), report
    assert {ev["event"] for ev in events} >= {"started", "step", "finished"}
    for _, http in fleet.ports.values():
        assert get(http, "shop.demo.example") == (200, "v1")
    first = report["s0"].generation

    statuses = e.status()
    assert [s.current for s in statuses] == [first, report["s1"].generation]
    assert all(s.last_state == "succeeded" and s.error is None for s in statuses)
    assert [d.state for d in e.drift()] == ["clean", "clean"]
    assert all(p.is_noop for p in e.plan())

    v2 = engine(fleet, "inventory-v2.toml")
    assert v2.apply(servers=["s0"]).servers[0].state == "succeeded"
    assert get(fleet.ports["s0"][1], "shop.demo.example") == (200, "v2")
    back = v2.rollback("s0")
    assert back.ok and back.generation == first
    assert get(fleet.ports["s0"][1], "shop.demo.example") == (200, "v1")
    with pytest.raises(rpcc.ValidationError):
        e.status(servers=["nope"])


def test_a_failed_reload_is_rolled_back_and_raises_the_right_type(fleet: Fleet) -> None:
    assert not engine(fleet).apply().failed
    bad = engine(fleet, "inventory-bad-reload.toml")
    report = bad.apply(servers=["s0"])
    assert report.failed and report["s0"].state == "rolled_back", report
    with pytest.raises(rpcc.RolledBack):
        report.raise_for_failures()
    assert get(fleet.ports["s0"][1], "shop.demo.example") == (200, "v1")


def test_nginx_rejecting_a_config_is_config_rejected(fleet: Fleet) -> None:
    text = fleet.text().replace(
        'tls = { mode = "off" }',
        'tls = { mode = "custom", cert = "/nonexistent/cert.pem", key = "/nonexistent/key.pem" }',
        1,
    )
    fleet.write("rejected.toml", text)
    report = engine(fleet, "rejected.toml").apply(servers=["s0"], probe=False)
    r = report["s0"]
    assert r.state == "rejected" and r.error_kind == "ConfigRejected", r
    with pytest.raises(rpcc.ConfigRejected) as e:
        report.raise_for_failures()
    assert "cert.pem" in str(e.value)
    assert isinstance(e.value, rpcc.DeployError)


def test_transport_errors_have_their_own_types(fleet: Fleet, tmp_path: Path) -> None:
    inv = rpcc.Inventory.from_toml(fleet.inventory)
    ok = rpcc.run(inv, "s0", ["id", "-un"])
    assert ok.ok and ok.stdout.strip()
    # A stalled command times out.
    with pytest.raises(rpcc.TimeoutError):
        rpcc.SshSession(inv, "s0").run(["sleep", "5"], timeout=0.5)
    # A key the server does not know: AuthError.
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    text = re.sub(r'key_file = "[^"]*"', f'key_file = "{other}"', fleet.text())
    with pytest.raises(rpcc.AuthError):
        rpcc.run(rpcc.Inventory.from_toml(fleet.write("auth.toml", text)), "s0", ["true"])
    # A changed host key: HostKeyError, before any credential is sent.
    pin = re.search(r'host_key = "ssh-ed25519 SHA256:([^"]+)"', fleet.text())
    assert pin
    flipped = pin.group(1)[:-2] + ("AA" if not pin.group(1).endswith("AA") else "BB")
    text = fleet.text().replace(pin.group(1), flipped, 1)
    with pytest.raises(rpcc.HostKeyError):
        rpcc.run(rpcc.Inventory.from_toml(fleet.write("hostkey.toml", text)), "s0", ["true"])
    assert issubclass(rpcc.HostKeyError, rpcc.TransportError) and issubclass(rpcc.TransportError, rpcc.RpccError)


def test_the_gil_is_released_while_a_deploy_runs(fleet: Fleet) -> None:
    e = engine(fleet)
    ticks = 0
    stop = threading.Event()

    def spin() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.001)

    t = threading.Thread(target=spin)
    t.start()
    started = time.monotonic()
    e.apply()
    took = time.monotonic() - started
    stop.set()
    t.join()
    # The other thread ran during the deploy: roughly one tick per millisecond slept.
    assert ticks > took * 1000 * 0.3, (ticks, took)


def test_rpcc_works_in_a_child_after_fork(fleet: Fleet) -> None:
    e = engine(fleet)
    assert not e.apply().failed
    before = e.status()
    pid = os.fork()
    if pid == 0:  # child: same Engine object, fresh runtime and connections
        code = 1
        try:
            after = e.status()
            files = rpcc.render(e.inventory, "s0")
            code = 0 if [s.current for s in after] == [s.current for s in before] and files else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert [s.current for s in e.status()] == [s.current for s in before]  # parent still fine


def test_repr_and_errors_never_show_secrets(fleet: Fleet, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    fd = os.open(keys, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, (rpcc.Keyring.generate_entry("k1") + "\n").encode())
    os.close(fd)
    ring = rpcc.Keyring.load(keys)
    env = ring.encrypt("server/s0/password", CANARY)
    text = fleet.text().replace(
        re.search(r'auth = \{ key_file = "[^"]*" \}', fleet.text()).group(0),  # type: ignore[union-attr]
        f'auth = {{ password = "{env}" }}',
        1,
    )
    inv = rpcc.Inventory.from_toml(fleet.write("secret.toml", text))
    eng = rpcc.Engine(inv, f"sqlite:///{fleet.dir}/state.db", key_file=keys)
    report = eng.apply(servers=["s0"])
    assert report.failed  # the canary is the wrong password
    seen = [repr(inv), str(inv), repr(eng), repr(ring), repr(report), str(report)]
    seen += [repr(s) for s in eng.status()] + [repr(p) for p in eng.plan()]
    for exc_call in (
        lambda: rpcc.run(inv, "s0", ["true"], timeout=5),
        lambda: report.raise_for_failures(),
        lambda: ring.decrypt("server/s1/password", env),
    ):
        with pytest.raises(rpcc.RpccError) as e:
            exc_call()
        seen += [repr(e.value), str(e.value)]
    for s in seen:
        assert CANARY not in s, s


def test_certificates_are_issued_deployed_and_renewed(fleet: Fleet, tmp_path: Path) -> None:
    # inventory-tls.toml: an ACME site (alias, www) and a self-signed one; [acme] points
    # at the fleet's local ACME test CA (Pebble), which validates HTTP-01 against s0.
    keys = tmp_path / "keys"
    keys.write_text(rpcc.Keyring.generate_entry() + "\n")
    keys.chmod(0o600)
    inv = rpcc.Inventory.from_toml(fleet.dir / "inventory-tls.toml")
    e = rpcc.Engine(inv, f"sqlite:///{tmp_path}/state.db", key_file=keys)

    report = e.apply()
    assert not report.failed, report
    actions = {c.site: c.action for c in report.certificates}
    assert actions == {"app.demo.test": "issued", "staging.demo.test": "generated"}, report.certificates
    assert [r.state for r in report.tls_phase] == ["succeeded", "succeeded"]

    status = {s.site: s for s in e.certificates()}
    app = status["app.demo.test"]
    assert app.in_service and app.due is None and app.issuer and "Pebble" in app.issuer, app
    assert [s.fingerprint for s in app.served] == [app.fingerprint, app.fingerprint]
    assert status["staging.demo.test"].mode == "self_signed"

    # Nothing due: nothing obtained. Forced: both renewed and in service again.
    assert e.renew().certificates == [] and e.issue_certificates().certificates == []
    renewed = e.renew(force=True)
    assert {c.site: c.action for c in renewed.certificates} == {
        "app.demo.test": "renewed",
        "staging.demo.test": "generated",
    }
    after = {s.site: s for s in e.certificates()}
    assert after["app.demo.test"].fingerprint != app.fingerprint and after["app.demo.test"].in_service
    assert "PRIVATE KEY" not in repr(renewed) + repr(after)

    # Without the keyring the keys cannot be opened: a typed error, nothing deployed.
    bare = rpcc.Engine(inv, f"sqlite:///{tmp_path}/state.db")
    with pytest.raises(rpcc.KeyringError):
        bare.apply()


class Webhook:
    """A loopback webhook receiver with a keyring-sealed secret: ``received`` holds
    (signature header, body) per POST; ``notifier`` is the inventory's notifier entry."""

    def __init__(self, tmp_path: Path, secret: str) -> None:
        import http.server

        self.keys = tmp_path / "keys"
        fd = os.open(self.keys, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, (rpcc.Keyring.generate_entry("k1") + "\n").encode())
        os.close(fd)
        self.secret = secret
        sealed = rpcc.Keyring.load(self.keys).encrypt("notifier/pager/secret", secret)
        self.received: List[tuple] = []
        received = self.received

        class Hook(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.headers["X-Rpcc-Signature"], body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        hook = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.notifier = (
            f'{{ name = "pager", kind = "webhook", insecure_http = true, url = "{hook}", secret = "{sealed}" }}'
        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_apply_sends_its_outcome_to_the_notifiers(fleet: Fleet, tmp_path: Path) -> None:
    """`[monitor] notify_deploys`: the engine itself tells the notifiers (as the CLI does),
    signed, routed, naming the actor, never the secret."""
    import hashlib
    import hmac

    secret = "py-deploy-hook-secret-x93"
    hook = Webhook(tmp_path, secret)
    received, keys = hook.received, hook.keys
    try:
        monitor = f"\n[monitor]\nnotify_deploys = true\nnotifiers = [{hook.notifier}]\n"
        inv = rpcc.Inventory.from_toml(fleet.write("notify.toml", fleet.text() + monitor))
        e = rpcc.Engine(inv, f"sqlite:///{tmp_path}/state.db", key_file=keys, actor="panel:alice")
        report = e.apply()
        assert not report.failed and report.notification_failures == [], report
        assert len(received) == 1, received
        sig, body = received[0]
        t, v1 = (part.split("=", 1)[1] for part in sig.split(","))
        expected = hmac.new(secret.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(v1, expected)
        text = body.decode()
        assert "rpcc apply by panel:alice: 2 succeeded, 0 failed" in text, text
        assert secret not in text

        # The panel's own messages, its monitoring round and the audit log, from Rust.
        assert e.notify("maintenance tonight", groups=["all"]) == []
        assert len(received) == 2 and b"maintenance tonight" in received[1][1], received
        actions = [r["event"]["action"] for r in e.audit()]
        assert actions.count("deploy") == 2, actions
        checked = e.check()
        pairs = {(s["site"], s["server"]) for s in checked["sites"]}
        assert pairs == {(d, s) for d in ("app.demo.example", "shop.demo.example") for s in ("s0", "s1")}, checked
        assert all(s["http"]["Ok"]["status"] == 200 for s in checked["sites"]), checked
        assert checked["failed"] is False and checked["servers"] == [], checked

        # The receiver gone: the apply still succeeds and says which notifier failed.
        hook.close()
        report = rpcc.Engine(inv, f"sqlite:///{tmp_path}/state.db", key_file=keys).apply()
        assert not report.failed
        assert [f for f in report.notification_failures if "pager" in f], report.notification_failures
        assert all(secret not in f for f in report.notification_failures)
    finally:
        hook.server.server_close()


def test_watch_runs_rounds_in_the_process_alerts_and_stops(fleet: Fleet, tmp_path: Path) -> None:
    """`Engine.watch()`: `rpcc watch` inside the panel's process. A site that no server
    serves fires a site-down alert into the audit log and to the webhook; `stop()` ends
    it (no rounds after), and leaving a `with` block stops it too."""
    hook = Webhook(tmp_path, "py-watch-hook-secret-q27")
    state = f"sqlite:///{tmp_path}/state.db"
    try:
        rpcc.Engine(rpcc.Inventory.from_toml(fleet.inventory), state).apply()
        down = fleet.text().split("[[sites]]")[1].replace("app.demo.example", "gone.demo.example")
        text = (
            fleet.text()
            + "\n[[sites]]"
            + down
            + f'\n[monitor]\ninterval = "1s"\ntimeout = "2s"\nrules = {{ site_down_checks = 1 }}\n'
            + f"notifiers = [{hook.notifier}]\n"
        )
        e = rpcc.Engine(rpcc.Inventory.from_toml(fleet.write("watch.toml", text)), state, key_file=hook.keys)
        w = e.watch()
        assert w.running and "running" in repr(w), repr(w)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(b"gone.demo.example" in b for _, b in hook.received):
            time.sleep(0.2)
        assert any(b"gone.demo.example" in b for _, b in hook.received), hook.received
        assert w.stop(timeout=10) is True and not w.running
        alerts = [r for r in e.audit() if r["event"]["action"] == "alert"]
        assert alerts and all("gone.demo.example" in r["event"]["detail"] for r in alerts), alerts
        assert not any(b"app.demo.example" in b or b"shop.demo.example" in b for _, b in hook.received)
        assert all(hook.secret.encode() not in b for _, b in hook.received)
        # Stopped means stopped: no further rounds, no further alerts.
        seen = len(hook.received)
        time.sleep(2.5)
        assert len(hook.received) == seen and w.stop() is True

        with e.watch() as again:
            assert again.running
        assert not again.running
    finally:
        hook.close()


def _timeless(v: Any) -> Any:
    """A document without its timings (they differ between two runs)."""
    if isinstance(v, dict):
        return {k: _timeless(x) for k, x in v.items() if k not in ("elapsed", "steps")}
    if isinstance(v, list):
        return [_timeless(x) for x in v]
    return v


def _latency_free(v: Any) -> Any:
    """A check round without its measured latencies."""
    if isinstance(v, dict):
        return {k: _latency_free(x) for k, x in v.items() if k != "latency_ms"}
    if isinstance(v, list):
        return [_latency_free(x) for x in v]
    return v


def test_cli_json_and_python_give_the_same_documents(fleet: Fleet, rpcc_cli: str) -> None:
    """`rpcc <op> --json` and `Engine.<op>()` serialize the same facade types: equal
    documents for plan, status, drift and check (latencies aside); the same shape for apply."""
    import json

    inv_path, state = fleet.dir / "inventory.toml", fleet.dir / "state.db"
    native = rpcc.Engine(rpcc.Inventory.from_toml(inv_path), f"sqlite:///{state}")._native

    def cli(op: str, *extra: str) -> Any:
        out = subprocess.run(
            [rpcc_cli, op, str(inv_path), "--state", str(state), "--json", *extra], capture_output=True, text=True
        )
        assert out.stdout, out.stderr
        return json.loads(out.stdout)

    plan = cli("plan")
    assert plan == json.loads(native.plan()) and {p["server"] for p in plan} == {"s0", "s1"}
    assert all(p["error"] is None and p["result"]["changes"] for p in plan), plan
    by_cli = cli("apply", "--yes")
    assert [r["state"] for r in by_cli["servers"]] == ["succeeded", "succeeded"], by_cli
    by_python = json.loads(native.apply(probe=True, certificates=True))
    assert [r["state"] for r in by_python["servers"]] == ["no_op", "no_op"], by_python
    assert set(by_cli) == set(by_python) == {
        "servers", "stopped", "rolled_back", "certificates", "tls_phase", "failed", "notification_failures",
    }
    assert [set(r) for r in by_cli["servers"]] == [set(r) for r in by_python["servers"]]
    assert by_cli["servers"][0]["error_kind"] is None and by_cli["failed"] is False
    for op in ("status", "drift", "plan"):
        assert _timeless(cli(op)) == _timeless(json.loads(getattr(native, op)())), op
    # One monitoring round: the same document but for latencies.
    out = subprocess.run([rpcc_cli, "check", str(inv_path), "--json"], capture_output=True, text=True)
    by_cli, by_python = json.loads(out.stdout), json.loads(native.check())
    assert set(by_cli) == set(by_python) == {"servers", "sites", "dns", "plugins", "failed"}, by_cli
    assert _latency_free(by_cli) == _latency_free(by_python) and by_cli["failed"] is False, (by_cli, by_python)
