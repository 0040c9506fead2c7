"""A delaying TCP relay: a slow link for the multi-host bed, where ``tc netem`` is not available.

``python relay.py --listen HOST:PORT --to HOST:PORT --delay-ms D`` accepts connections on the
listen address and opens one to the target for each. Every chunk read from either side is written
to the other side *D* ms after it was read, in order; reading goes on meanwhile, so the relay adds
latency without limiting throughput (a delay line, not a bandwidth cap). With ``--delay-ms 10`` a
request and its answer each cross it once: 20 ms round-trip time between the two sides.

It prints ``relay: listening on HOST:PORT -> HOST:PORT, D ms each way`` once it accepts. TCP's own
acknowledgements stay local to each side of the relay (as with any proxy); what it delays is the
data, which is what a remote call waits for.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import time

CHUNK = 256 * 1024


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy *reader* to *writer*, each chunk *delay* s after it arrived."""
    line: collections.deque[tuple[float, bytes]] = collections.deque()
    ready = asyncio.Event()
    eof = False

    async def read() -> None:
        nonlocal eof
        try:
            while True:
                data = await reader.read(CHUNK)
                if not data:
                    break
                line.append((time.monotonic() + delay, data))
                ready.set()
        except (ConnectionError, OSError):
            pass
        finally:
            eof = True
            ready.set()

    reading = asyncio.ensure_future(read())
    try:
        while True:
            if not line:
                if eof:
                    break
                ready.clear()
                await ready.wait()
                continue
            due, data = line[0]
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            line.popleft()
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass
    finally:
        reading.cancel()


async def _serve(listen: tuple[str, int], target: tuple[str, int], delay: float) -> None:
    async def handle(r1: asyncio.StreamReader, w1: asyncio.StreamWriter) -> None:
        try:
            r2, w2 = await asyncio.open_connection(*target)
        except OSError:
            w1.close()
            return
        await asyncio.gather(_pump(r1, w2, delay), _pump(r2, w1, delay))
        for w in (w1, w2):
            w.close()

    server = await asyncio.start_server(handle, *listen, reuse_address=True)
    print(f"relay: listening on {listen[0]}:{listen[1]} -> {target[0]}:{target[1]}, "
          f"{delay * 1000:g} ms each way", flush=True)
    async with server:
        await server.serve_forever()


def _addr(s: str) -> tuple[str, int]:
    host, _, port = s.rpartition(":")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", type=_addr, required=True, help="HOST:PORT to accept on")
    p.add_argument("--to", type=_addr, required=True, help="HOST:PORT to relay to")
    p.add_argument("--delay-ms", type=float, default=10.0, help="delay each way (default: 10)")
    a = p.parse_args(argv)
    try:
        asyncio.run(_serve(a.listen, a.to, a.delay_ms / 1000))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
