"""Time to first SSE event through one target, for scripts/bench.sh ("SSE time to first event").
Standard library only (raw sockets, so the client adds no buffering of its own).

  sse_ttfe.py URL --label NAME --out FILE [--token T] [--requests 20] [--warmup 3] [--hold-ms 200]

Sends `--warmup` and then `--requests` POSTs (the same JSON-RPC `tools/call` body as scenario A,
`Accept: application/json, text/event-stream`, the bearer token when given) one after another on
one keep-alive connection (a new one only if the target closes it), to a target in front of
scripts/bench/sse_upstream.py. For each measured request it records the time from just before
the request is written to the arrival of the first `data:` line of the body (time to first
event), and to the end of the body. Every response must be 200, `text/event-stream`, and hold
the upstream's first and last event, its last event no sooner than ~the upstream's hold after
the first event was seen (a proxy that buffered the stream would show the first event only with
the last). Appends one JSON line to FILE:
  {"target", "requests", "ttfe_s": [...], "total_s": [...], "errors", "error_samples",
   "reconnects", "buffered"}
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

REQUEST_BODY = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{}}}'
FIRST_MARK = b'"method":"notifications/progress"'
LAST_MARK = b'"result":'
TIMEOUT_S = 10.0


class ResponseError(Exception):
    """The response was not the upstream's SSE stream."""


@dataclass
class Sample:
    ttfe: float
    total: float


@dataclass
class Result:
    target: str
    ttfe_s: list[float] = field(default_factory=list)
    total_s: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    reconnects: int = 0
    buffered: int = 0  # responses whose first event came with the last (the stream was held back)


class Connection:
    """One HTTP/1.1 keep-alive connection, read without any buffering beyond the socket's."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT_S)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""  # received, not yet parsed
        self.closed = False
        self.first_at: float | None = None  # when the body's first `data:` arrived
        self.watching = False  # the header is parsed: look for `data:` in what arrives

    def close(self) -> None:
        self.sock.close()

    def _more(self) -> None:
        data = self.sock.recv(65536)
        now = time.perf_counter()
        if not data:
            self.closed = True
            raise ResponseError("connection closed by the target")
        self.buf += data
        self._look(now)

    def _look(self, now: float) -> None:
        # The chunk-size lines of a chunked body never contain `data:`, so the raw bytes do.
        if self.watching and self.first_at is None and b"data:" in self.buf:
            self.first_at = now

    def _take_line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._more()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _take(self, size: int) -> bytes:
        while len(self.buf) < size:
            self._more()
        data, self.buf = self.buf[:size], self.buf[size:]
        return data

    def exchange(self, request: bytes, min_hold: float) -> Sample:
        """Writes the request and reads the response; times the first `data:` line."""
        self.first_at, self.watching = None, False
        start = time.perf_counter()
        self.sock.sendall(request)
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        self.watching = True
        self._look(time.perf_counter())  # the first event came with the header
        lines = head.split(b"\r\n")
        status = lines[0].split(b" ", 2)
        if len(status) < 2 or status[1] != b"200":
            raise ResponseError(f"status line {lines[0][:100]!r}")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip().lower()
        if not headers.get(b"content-type", b"").startswith(b"text/event-stream"):
            raise ResponseError(f"content-type {headers.get(b'content-type')!r}")
        if headers.get(b"connection") == b"close":
            self.closed = True
        body = b""
        if headers.get(b"transfer-encoding") == b"chunked":
            while size := int(self._take_line().split(b";")[0], 16):
                body += self._take(size)
                self._take(2)
            while self._take_line():  # trailers, then the empty line
                pass
        elif b"content-length" in headers:
            body = self._take(int(headers[b"content-length"]))
        else:
            raise ResponseError("neither chunked nor Content-Length (read-until-close not supported)")
        end = time.perf_counter()
        if self.first_at is None or FIRST_MARK not in body or LAST_MARK not in body:
            raise ResponseError(f"body lacks the upstream's events: {body[:200]!r}")
        if end - self.first_at < min_hold:
            raise ResponseError(f"first event {1e3 * (end - self.first_at):.1f} ms before the end: buffered")
        return Sample(self.first_at - start, end - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url")
    p.add_argument("--label", required=True)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--token")
    p.add_argument("--requests", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--hold-ms", type=float, default=200.0, help="the upstream's hold between first and last event")
    args = p.parse_args()
    url = urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    headers = [f"POST {url.path or '/'} HTTP/1.1", f"Host: {url.netloc}", "Content-Type: application/json",
               "Accept: application/json, text/event-stream", f"Content-Length: {len(REQUEST_BODY)}"]  # fmt: skip
    if args.token:
        headers.append(f"Authorization: Bearer {args.token}")
    request = ("\r\n".join(headers) + "\r\n\r\n").encode() + REQUEST_BODY
    # A stream held back by the proxy shows its first event with the last; half the hold is a
    # safe line between the two on loopback.
    min_hold = args.hold_ms / 1000 / 2

    result = Result(args.label)
    conn: Connection | None = None
    for i in range(args.warmup + args.requests):
        try:
            if conn is None or conn.closed:
                if conn is not None:
                    conn.close()
                    result.reconnects += 1
                conn = Connection(host, port)
            sample = conn.exchange(request, min_hold)
        except (OSError, ResponseError, ValueError) as e:
            if i >= args.warmup:
                result.errors += 1
                result.buffered += "buffered" in str(e)
                sample_text = str(e)[:200]
                if len(result.error_samples) < 3 and sample_text not in result.error_samples:
                    result.error_samples.append(sample_text)
            if conn is not None:
                conn.close()
            conn = None
            continue
        if i >= args.warmup:
            result.ttfe_s.append(sample.ttfe)
            result.total_s.append(sample.total)
    if conn is not None:
        conn.close()
    line = {"target": result.target, "requests": args.requests, "ttfe_s": result.ttfe_s,
            "total_s": result.total_s, "errors": result.errors, "error_samples": result.error_samples,
            "reconnects": result.reconnects, "buffered": result.buffered}  # fmt: skip
    with args.out.open("a") as f:
        f.write(json.dumps(line) + "\n")
    ttfe = sorted(result.ttfe_s)
    p50 = f"{ttfe[len(ttfe) // 2] * 1e3:.3f} ms" if ttfe else "n/a"
    print(f"SSE {args.label}: first event p50 {p50} over {len(ttfe)} requests, {result.errors} errors"
          + (f" ({'; '.join(result.error_samples)})" if result.errors else ""), file=sys.stderr)  # fmt: skip


if __name__ == "__main__":
    main()
