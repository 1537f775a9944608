"""Fixtures: a real loopback fleet (sshd + nginx per server) from the `rpcc-fleet`
binary of rpcc-testkit, and the `rpcc` CLI for comparisons."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, Iterator, Tuple

import pytest

TARGET = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/rpcc-target"))


def _bin(name: str) -> str:
    override = os.environ.get(f"RPCC_{name.upper().replace('-', '_')}_BIN")
    if override:
        return override
    for profile in ("debug", "release"):
        p = TARGET / profile / name
        if p.exists():
            return str(p)
    pytest.skip(f"{name} is not built (cargo build -p rpcc-testkit --bin rpcc-fleet)")
    raise AssertionError


class Fleet:
    def __init__(self, directory: Path, proc: "subprocess.Popen[str]", ports: Dict[str, Tuple[int, int]]) -> None:
        self.dir = directory
        self.proc = proc
        self.ports = ports  # server -> (ssh, http)

    @property
    def inventory(self) -> Path:
        return self.dir / "inventory.toml"

    def text(self, name: str = "inventory.toml") -> str:
        return (self.dir / name).read_text()

    def write(self, name: str, text: str) -> Path:
        p = self.dir / name
        p.write_text(text)
        return p


def get(port: int, host: str, path: str = "/healthz") -> Tuple[int, str]:
    """(status, X-Deploy header) of a plain HTTP request to loopback."""
    import http.client

    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("GET", path, headers={"Host": host})
        r = c.getresponse()
        r.read()
        return r.status, r.getheader("X-Deploy") or ""
    finally:
        c.close()


@pytest.fixture()
def fleet() -> Iterator[Fleet]:
    with tempfile.TemporaryDirectory(prefix="rpcc-py-fleet-") as d:
        proc = subprocess.Popen(
            [_bin("rpcc-fleet"), d, "2"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        ports: Dict[str, Tuple[int, int]] = {}
        assert proc.stdout is not None
        for line in proc.stdout:
            m = re.match(r"(\S+): ssh 127\.0\.0\.1:(\d+), http 127\.0\.0\.1:(\d+)", line)
            if m:
                ports[m.group(1)] = (int(m.group(2)), int(m.group(3)))
            if line.strip() == "ready":
                break
        else:
            raise RuntimeError("rpcc-fleet did not start")
        try:
            yield Fleet(Path(d), proc, ports)
        finally:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(timeout=30)


@pytest.fixture()
def rpcc_cli() -> str:
    return _bin("rpcc")
