"""The legacy panel's way of deploying, for the deploy benchmark.

What the Flask panel did (see ../shared/legacy/): paramiko, a new SSH connection for
every command, no host-key check, one domain at a time: upload the file, `nginx -t`,
reload; servers one after another. Reads a JSON list of servers on stdin:
{host, port, user, key, tree, gen_dir, mroot, root}.
"""

import json
import os
import sys

import paramiko


def connect(s):
    c = paramiko.SSHClient()
    c.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # the legacy panel's (unsafe) choice
    c.connect(s["host"], port=s["port"], username=s["user"], key_filename=s["key"],
              allow_agent=False, look_for_keys=False, timeout=30)
    return c


def execute_command(s, command):
    c = connect(s)
    try:
        _, out, err = c.exec_command(command)
        code = out.channel.recv_exit_status()
        if code != 0:
            raise RuntimeError(f"{command!r} failed: {err.read().decode()}")
    finally:
        c.close()


def upload(s, local, remote):
    c = connect(s)
    try:
        sftp = c.open_sftp()
        sftp.put(local, remote)
        sftp.close()
    finally:
        c.close()


def deploy(s):
    tree, gen = s["tree"], s["gen_dir"]
    execute_command(s, f"mkdir -p {gen}/sites")
    for name in ("mime.types", "http.conf", "nginx.conf"):
        upload(s, os.path.join(tree, name), f"{gen}/{name}")
    execute_command(s, f"ln -sfn {gen} {s['mroot']}/floor-current && "
                       f"ln -sfn {s['mroot']}/floor-current/nginx.conf {s['root']}/nginx.conf")
    for site in sorted(os.listdir(os.path.join(tree, "sites"))):
        upload(s, os.path.join(tree, "sites", site), f"{gen}/sites/{site}")
        execute_command(s, f"/usr/sbin/nginx -t -q -c {s['root']}/nginx.conf")
        execute_command(s, f"/usr/sbin/nginx -s reload -c {s['root']}/nginx.conf")


def main():
    for s in json.load(sys.stdin):
        deploy(s)


if __name__ == "__main__":
    main()
