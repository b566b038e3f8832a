#!/usr/bin/env python3
"""Idle-connection client for `benches/load/run --idle N`.

Opens N connections to 127.0.0.1:PORT, sends one GET / on each and reads
its whole answer, then holds every connection open without a byte more.
Prints `ready OPEN ERRORS` once all are open (or failed), then waits for
its stdin to close (the harness measures in between) and exits.

Modes: http (HTTP/1.1), tls (HTTP/1.1 over TLS, ALPN http/1.1), h2 (HTTP/2
over TLS, ALPN h2, raw frames: preface, SETTINGS, one HEADERS with
END_STREAM; the server's SETTINGS are acknowledged).
"""
import asyncio
import ssl
import sys

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
SETTINGS_ACK = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"
# :method GET, :scheme https, :path / (static table), :authority localhost
# (literal without indexing, name index 1).
HPACK = b"\x82\x87\x84\x01\x09localhost"
HEADERS = len(HPACK).to_bytes(3, "big") + b"\x01\x05" + (1).to_bytes(4, "big") + HPACK


async def h1_answer(r):
    head = await r.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await r.readexactly(length)
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head[:40])


async def h2_frame(r, w):
    """Reads one frame, acknowledging SETTINGS and PING as a live client does
    (a server may close a connection whose PINGs go unanswered)."""
    hdr = await r.readexactly(9)
    n = int.from_bytes(hdr[:3], "big")
    kind, flags, stream = hdr[3], hdr[4], int.from_bytes(hdr[5:9], "big") & 0x7FFFFFFF
    payload = await r.readexactly(n)
    if kind == 4 and not flags & 1:
        w.write(SETTINGS_ACK)
    if kind == 6 and not flags & 1:
        w.write(b"\x00\x00\x08\x06\x01\x00\x00\x00\x00" + payload)
    if kind == 7:
        raise RuntimeError("GOAWAY")
    if kind == 3 and stream == 1:
        raise RuntimeError("RST_STREAM")
    return kind, flags, stream


async def h2_answer(r, w):
    while True:
        kind, flags, stream = await h2_frame(r, w)
        if stream == 1 and kind in (0, 1) and flags & 1:
            return


async def h2_keep(r, w):
    """After the answer: keep answering the server's PINGs until it closes."""
    try:
        while True:
            await h2_frame(r, w)
    except (asyncio.IncompleteReadError, ConnectionError, RuntimeError):
        return


async def one(port, mode, ctx, held, gate):
    async with gate:
        r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost" if ctx else None)
        try:
            if mode == "h2":
                w.write(PREFACE + SETTINGS + HEADERS)
                await asyncio.wait_for(h2_answer(r, w), 30)
            else:
                w.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                await asyncio.wait_for(h1_answer(r), 30)
        except BaseException:
            w.close()  # a failed connection is not left open on the proxy
            raise
        held.append((r, w, asyncio.ensure_future(h2_keep(r, w)) if mode == "h2" else None))


async def main():
    port, n, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    ctx = None
    if mode in ("tls", "h2"):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2" if mode == "h2" else "http/1.1"])
    held, gate = [], asyncio.Semaphore(100)
    results = await asyncio.gather(*(one(port, mode, ctx, held, gate) for _ in range(n)), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    print(f"ready {len(held)} {len(errors)}", flush=True)
    if errors:
        print(f"first error: {errors[0]!r}", file=sys.stderr, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


asyncio.run(main())
