"""An upstream that answers like an MCP Streamable HTTP server streaming a tool result, for the
"SSE time to first event" table of scripts/bench.sh. Standard library only (asyncio).

  sse_upstream.py --port P [--hold-ms 200]

Every request (any method and path; its body, by Content-Length, is read and ignored) gets
`200`, `Content-Type: text/event-stream`, `Cache-Control: no-cache` and a chunked body: the
first event (a JSON-RPC progress notification) is written at once, together with the header;
then the stream stays open for --hold-ms before the last event (the JSON-RPC result) and the end
of the body. HTTP/1.1 keep-alive, so proxies pool their connections to it as they do to the
static upstream. Nothing in the response asks proxies not to buffer (no `X-Accel-Buffering`):
each proxy is configured for SSE as users do (scripts/bench/sse.sh says how).
"""

from __future__ import annotations

import argparse
import asyncio
import socket

MAX_HEADER = 64 * 1024
FIRST_EVENT = (b'event: message\ndata: {"jsonrpc":"2.0","method":"notifications/progress",'
               b'"params":{"progressToken":1,"progress":0}}\n\n')  # fmt: skip
LAST_EVENT = (b'event: message\ndata: {"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text",'
              b'"text":"done"}],"isError":false}}\n\n')  # fmt: skip
HEADER = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
          b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def read_request(reader: asyncio.StreamReader) -> bool:
    """Reads one request (header and Content-Length body); False when the peer closed."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return False
    except asyncio.LimitOverrunError:
        return False
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip() or 0)
        elif name.strip().lower() == b"transfer-encoding":
            return False  # chunked requests are not part of the bench: close
    if length:
        await reader.readexactly(length)
    return True


async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hold: float) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while await read_request(reader):
            writer.write(HEADER + chunk(FIRST_EVENT))
            await writer.drain()
            await asyncio.sleep(hold)
            writer.write(chunk(LAST_EVENT) + b"0\r\n\r\n")
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--hold-ms", type=float, default=200.0, help="time between the first and the last event")
    args = p.parse_args()
    hold = args.hold_ms / 1000

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_connection(reader, writer, hold)

    server = await asyncio.start_server(handle, "127.0.0.1", args.port, limit=MAX_HEADER, backlog=512)
    print(f"ready 127.0.0.1:{args.port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
