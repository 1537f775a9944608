"""Parse nginx configs with crossplane and print their server blocks as JSON.

Usage: python inspect.py main1.conf [main2.conf ...]
Output: {"<main.conf>": {"errors": [...], "servers": [{"names": [...], "listen": [...],
         "proxy_pass": [...], "file": "..."}]}}
Includes (with globs) are followed, so every server block of the tree is listed.
"""
import json
import sys

import crossplane


def walk(block, out):
    for d in block:
        if d["directive"] == "proxy_pass":
            out.append(d["args"][0])
        if "block" in d:
            walk(d["block"], out)


def servers_of(payload):
    found = []
    for config in payload["config"]:
        stack = list(config["parsed"])
        while stack:
            d = stack.pop(0)
            if d["directive"] == "server" and "block" in d:
                names, listens, passes = [], [], []
                for inner in d.get("block", []):
                    if inner["directive"] == "server_name":
                        names.extend(inner["args"])
                    elif inner["directive"] == "listen":
                        listens.append(" ".join(inner["args"]))
                walk(d.get("block", []), passes)
                found.append({"names": names, "listen": listens, "proxy_pass": sorted(set(passes)), "file": config["file"]})
            elif "block" in d:
                stack = list(d["block"]) + stack
    return found


result = {}
for path in sys.argv[1:]:
    payload = crossplane.parse(path, combine=False)
    result[path] = {
        "errors": [e["error"] for e in payload["errors"]],
        "servers": servers_of(payload),
    }
json.dump(result, sys.stdout)
