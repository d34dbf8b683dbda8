"""Sends N sequential keep-alive POSTs (the benchmark's static MCP request) to a URL, for the
profiles of scripts/bench/profile.sh: a fixed count, so that counters divide into per-request
figures. usage: load_sequential.py <url> <n> [bearer token]"""

from __future__ import annotations

import http.client
import sys
import urllib.parse

BODY = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{}}}'


def main() -> None:
    url, n = sys.argv[1], int(sys.argv[2])
    token = sys.argv[3] if len(sys.argv) > 3 else ""
    parts = urllib.parse.urlsplit(url)
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if token:
        headers["Authorization"] = "Bearer " + token
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    failed = 0
    for _ in range(n):
        conn.request("POST", parts.path or "/", BODY, headers)
        response = conn.getresponse()
        response.read()
        failed += response.status != 200
    if failed:
        sys.exit(f"profile: {failed} of {n} requests to {url} did not answer 200")


if __name__ == "__main__":
    main()
