"""The legacy engines, kept small and honest for comparison: a Jinja2 template per
domain, paramiko with a new SSH connection per command (as the old panel did, but with
the host key checked against the pin), and Fernet for stored passwords."""

from __future__ import annotations

import base64
import hashlib
import io
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import jinja2

TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")), autoescape=False
)


def render_site(domain: Any, server: Any) -> str:
    listen = (server.nginx or {}).get("listen_http", "80")
    return TEMPLATES.get_template("legacy_site.conf.j2").render(domain=domain, listen=listen)


class _PinnedHostKey:
    """paramiko policy: accept only the key whose SHA-256 matches the stored pin."""

    def __init__(self, pin: str) -> None:
        self.pin = pin

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
        if not self.pin.endswith("SHA256:" + digest):
            raise RuntimeError(f"host key of {hostname} does not match the pinned {self.pin}")


def _connect(server: Any, password: Optional[str]) -> Any:
    import paramiko  # type: ignore[import-untyped]

    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(_PinnedHostKey(server.host_key))
    client.connect(
        server.host,
        port=server.port,
        username=server.user,
        key_filename=server.key_file,
        password=password,
        look_for_keys=False,
        allow_agent=False,
        timeout=10,
    )
    return client


def execute_command(server: Any, argv: Sequence[str], password: Optional[str] = None) -> Tuple[int, bytes, bytes]:
    """One new connection per command, like the legacy `execute_command`."""
    import shlex

    client = _connect(server, password)
    try:
        stdin, out, err = client.exec_command(" ".join(shlex.quote(a) for a in argv), timeout=60)
        stdin.close()  # closed while the transport lives, not in __del__ at exit
        code = out.channel.recv_exit_status()
        result = code, out.read(), err.read()
        out.close()
        err.close()
        return result
    finally:
        client.close()


def _upload(server: Any, path: str, text: str, password: Optional[str]) -> None:
    client = _connect(server, password)
    try:
        sftp = client.open_sftp()
        sftp.putfo(io.BytesIO(text.encode()), path)
        sftp.close()
    finally:
        client.close()


def deploy_group(servers: List[Any], domains: List[Any], render: Any, password_of: Any) -> Dict[str, str]:
    """The legacy flow: per server, upload each domain's file, rewrite the main config to
    include them, `nginx -t`, reload. No staging, no backup, no verification."""
    results: Dict[str, str] = {}
    for server in servers:
        pw = password_of(server)
        nginx = server.nginx or {}
        root = nginx["root"]
        sites_dir = f"{root}/legacy-sites"
        code, _, err = execute_command(server, ["mkdir", "-p", sites_dir], pw)
        if code != 0:
            results[server.name] = f"mkdir failed: {err.decode(errors='replace')}"
            continue
        for domain in domains:
            _upload(server, f"{sites_dir}/{domain.name}.conf", render(domain, server), pw)
        main = (
            f"pid {nginx['pid']};\nerror_log {nginx['log_dir']}/error.log notice;\n"
            "events { worker_connections 512; }\n"
            f"http {{\n    access_log off;\n    client_body_temp_path {root}/tmp/body;\n"
            f"    proxy_temp_path {root}/tmp/proxy;\n    fastcgi_temp_path {root}/tmp/fastcgi;\n"
            f"    uwsgi_temp_path {root}/tmp/uwsgi;\n    scgi_temp_path {root}/tmp/scgi;\n"
            f"    include {sites_dir}/*.conf;\n}}\n"
        )
        _upload(server, f"{root}/nginx.conf", main, pw)
        code, _, err = execute_command(server, ["/usr/sbin/nginx", "-t", "-q", "-c", f"{root}/nginx.conf"], pw)
        if code != 0:
            results[server.name] = f"nginx -t failed: {err.decode(errors='replace')}"
            continue
        code, _, err = execute_command(server, ["sh", "-c", f"kill -HUP $(cat {nginx['pid']})"], pw)
        results[server.name] = "ok" if code == 0 else f"reload failed: {err.decode(errors='replace')}"
    return results


def fernet_encrypt(key: str, value: str) -> str:
    from cryptography.fernet import Fernet

    return Fernet(key.encode()).encrypt(value.encode()).decode()


def fernet_decrypt(key: str, token: str) -> str:
    from cryptography.fernet import Fernet

    return Fernet(key.encode()).decrypt(token.encode()).decode()
