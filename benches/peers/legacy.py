"""The legacy panel's way of deploying, for the deploy benchmark: the Flask example's
own legacy engine (examples/flask_panel/legacy.py), so there is one legacy
implementation. Per server, one after another: a new paramiko connection for every
command and every upload, one upload per domain (its legacy Jinja2 template), the main
config, then one `nginx -t` and one reload for the server. No staging, no backup, no
verification.

Reads a JSON list of servers on stdin: {name, host, port, user, key, pin, root, pid,
log_dir, listen_http, sites: [domain, ...]}.
"""

import json
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "flask_panel"))

import legacy  # noqa: E402  (the example's engine)


def main() -> None:
    spec = json.load(sys.stdin)
    failed = []
    for s in spec:
        server = SimpleNamespace(
            name=s["name"], host=s["host"], port=s["port"], user=s["user"], key_file=s["key"],
            host_key=s["pin"],
            nginx={"root": s["root"], "pid": s["pid"], "log_dir": s["log_dir"], "listen_http": s["listen_http"]},
        )
        domains = [SimpleNamespace(name=d, backend="127.0.0.1:9") for d in s["sites"]]
        # The panel deploys a group's servers in turn; one server per call here keeps
        # each server's own domains.
        results = legacy.deploy_group([server], domains, legacy.render_site, lambda _s: None)
        failed += [f"{k}: {v}" for k, v in results.items() if v != "ok"]
    if failed:
        sys.exit("legacy deploy failed: " + "; ".join(failed))


if __name__ == "__main__":
    main()
