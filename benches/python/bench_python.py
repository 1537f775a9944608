"""Python-side benchmarks of rpcc, side by side in one run:

1. render of 10,000 sites: `rpcc.Inventory.from_toml` + `rpcc.render` in Python against
   the native CLI `rpcc render` on the same file (target: overhead <= 1.2x);
2. the example Flask panel's "deploy group" on 50 sites x 4 servers of a real loopback
   fleet: rust engine vs the legacy (paramiko, a connection per command) engine.

Run with the release wheel installed (scripts/bench-python does it):
    python benches/python/bench_python.py
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import rpcc

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/rpcc-target"))
RPCC = str(TARGET / "release" / "rpcc")
FLEET = str(TARGET / "release" / "rpcc-fleet")


def inventory(sites: int) -> str:
    out = [
        '[[servers]]\nname = "edge-1"\nhost = "203.0.113.10"\nuser = "deploy"\nauth = { agent = true }\n',
        '[[groups]]\nname = "eu"\nservers = ["edge-1"]\n',
    ]
    for i in range(sites):
        out.append(
            f'[[sites]]\ndomain = "site{i}.bench.example"\naliases = ["www{i}.bench.example"]\ngroup = "eu"\n'
            'upstream = { backends = ["10.0.0.5:8080", "10.0.0.6:8080"] }\ntls = { mode = "off" }\n'
            'websocket = true\nhealth_path = "/healthz"\n'
        )
    return "\n".join(out)


def bench_render(runs: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "inv.toml"
        path.write_text(inventory(10_000))
        py, py_write, cli = [], [], []
        for i in range(runs):
            start = time.perf_counter()
            files = rpcc.render(rpcc.Inventory.from_toml(path), "edge-1")
            py.append(time.perf_counter() - start)
            assert len(files) == 10_003, len(files)  # nginx.conf, http.conf, mime.types + sites
            # The CLI also writes every file: do the same from Python for a like-for-like time.
            start = time.perf_counter()
            files = rpcc.render(rpcc.Inventory.from_toml(path), "edge-1")
            base = Path(d) / f"py{i}"
            (base / "sites").mkdir(parents=True)
            for rel, text in files.items():
                (base / rel).write_text(text)
            py_write.append(time.perf_counter() - start)
            out = Path(d) / f"out{i}"
            start = time.perf_counter()
            subprocess.run([RPCC, "render", str(path), "--out", str(out)], check=True, capture_output=True)
            cli.append(time.perf_counter() - start)
        p, w, c = statistics.median(py), statistics.median(py_write), statistics.median(cli)
        print(
            f"render 10,000 sites: CLI (parse, render, write) {c:.3f} s   Python render only {p:.3f} s ({p / c:.2f}x)   "
            f"Python render + write {w:.3f} s ({w / c:.2f}x; target <= 1.2x)"
        )


def bench_panel() -> None:
    sys.path.insert(0, str(ROOT / "examples" / "flask_panel"))
    import panel

    with tempfile.TemporaryDirectory() as d:
        proc = subprocess.Popen([FLEET, d, "4"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdin is not None
        for line in proc.stdout:
            if line.strip() == "ready":
                break
        try:
            results = {}
            for mode in ("legacy", "rust"):  # legacy first: rpcc then takes the servers over
                engines = {k: mode for k in ("render", "deploy", "ssh", "crypto")}
                work = Path(d) / mode
                work.mkdir()
                app = panel.create_app(
                    {
                        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{work}/panel.db",
                        "RPCC_STATE": f"sqlite:///{work}/state.db",
                        "RPCC_ENGINES": engines,
                        "PANEL_SECRET_KEY_FILE": str(work / "keys"),
                        "PANEL_LEGACY_FERNET_KEY": "ZmVybmV0LWxlZ2FjeS1rZXktZm9yLXRoZS10ZXN0cyE=",
                        # The panel refuses to start without an administrator; the bench
                        # calls its API with the bearer token (no session, no CSRF).
                        "PANEL_ADMIN_PASSWORD": "bench-password-0123",
                        "PANEL_ADMIN_TOKEN": "bench-token-0123456789",
                    }
                )
                auth = {"Authorization": "Bearer bench-token-0123456789"}
                panel.import_fleet(app, Path(d) / "inventory.toml")
                client = app.test_client()
                for i in range(48):  # + the fleet's 2 = 50 sites
                    r = client.post("/api/domains", json={"name": f"s{i}.bench.example", "group": "all",
                                                           "backend": "127.0.0.1:9"}, headers=auth)
                    assert r.status_code == 201, r.get_json()
                start = time.perf_counter()
                body = client.post("/api/groups/all/deploy", headers=auth).get_json()
                results[mode] = time.perf_counter() - start
                assert body["ok"], body
            r, l = results["rust"], results["legacy"]
            print(f"panel deploy group, 50 sites x 4 servers: rust {r:.2f} s   legacy {l:.2f} s   ratio {l / r:.0f}x")
        finally:
            proc.stdin.close()
            proc.wait(timeout=60)


if __name__ == "__main__":
    quick = bool(os.environ.get("RPCC_BENCH_QUICK"))
    bench_render(3 if quick else 7)
    bench_panel()
