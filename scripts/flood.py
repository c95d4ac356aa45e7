#!/usr/bin/env python3
"""A connection flood against a running service, as a hostile client does it.

Opens CONNECTIONS connections that each send part of a request's headers and
then one more byte every TRICKLE seconds, never finishing them. While they
are open, a normal client's request must still be answered within 1 s; each
trickling connection must then be closed by the service within its
HEADER_READ_TIMEOUT (plus slack); and the service's open file count must
fall back to where it was. Prints the figures and exits non-zero on a miss.

    scripts/flood.py --name event-api --url http://127.0.0.1:29998 \
        --pid-file .state/smoke/run/event-api.pid --post 500

With --post N the normal request is a POST of N events (event-api); without
it, a GET of --path (the aggregator, web-ui).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
import urllib.parse
from pathlib import Path

OPEN_IN_WAVES_OF = 500


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class Connects:
    """Counts the flood's connection attempts as they finish, so that the
    normal request goes only once none is still under way: a burst of
    thousands of connects can fill the service's accept queue, and a SYN
    the kernel drops then is sent again only after a second, which would
    time the kernel's retry rather than the service."""

    def __init__(self, attempts: int):
        self.left = attempts
        self.opened = 0
        self.finished = asyncio.Event()
        if attempts == 0:
            self.finished.set()

    def done(self, opened: bool) -> None:
        self.opened += opened
        self.left -= 1
        if self.left == 0:
            self.finished.set()


async def trickle(host: str, port: int, every: float, give_up: float, opened: asyncio.Event,
                  connects: Connects) -> float | None:
    """One connection that never finishes its headers: seconds until the
    service closed it (inf if it was still open after `give_up` seconds), or
    None if it could not be opened."""
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        connects.done(False)
        return None
    connects.done(True)
    started = time.monotonic()
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: flood\r\nX-Trickle: ")
        await writer.drain()
        await opened.wait()
        while True:
            if time.monotonic() - started > give_up:
                return float("inf")
            try:
                # Anything the service sends (a 408, say) is read; an empty
                # read is the close.
                if not await asyncio.wait_for(reader.read(4096), timeout=every):
                    break
            except asyncio.TimeoutError:
                writer.write(b"a")
                await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
    return time.monotonic() - started


async def normal_request(url: str, path: str, post: int) -> tuple[int, float]:
    """One ordinary request on a new connection: its status and seconds."""
    parsed = urllib.parse.urlsplit(url)
    started = time.monotonic()
    reader, writer = await asyncio.open_connection(parsed.hostname, parsed.port)
    if post:
        now = int(time.time() * 1000)
        body = json.dumps([{"time": now, "amount": (i % 100) / 10} for i in range(post)]).encode()
        head = (f"POST {path} HTTP/1.1\r\nHost: {parsed.netloc}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
        writer.write(head.encode() + body)
    else:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {parsed.netloc}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    status_line = await reader.readline()
    await reader.read()
    writer.close()
    return int(status_line.split()[1]), time.monotonic() - started


async def flood(args) -> list[str]:
    parsed = urllib.parse.urlsplit(args.url)
    pid = int(Path(args.pid_file).read_text().strip())
    before = open_files(pid)
    opened = asyncio.Event()
    connects = Connects(args.connections)
    tasks = []
    for first in range(0, args.connections, OPEN_IN_WAVES_OF):
        give_up = args.header_timeout + args.trickle + 10
        wave = [asyncio.create_task(trickle(parsed.hostname, parsed.port, args.trickle, give_up, opened, connects))
                for _ in range(min(OPEN_IN_WAVES_OF, args.connections - first))]
        tasks += wave
        await asyncio.sleep(0.05)
    opened.set()
    # Wait on state: every connect has finished, and the service has taken
    # (nearly) all of them from its accept queue, so the flood is in place
    # and the normal request's connect does not meet a full queue.
    deadline = time.monotonic() + 10
    try:
        await asyncio.wait_for(connects.finished.wait(), timeout=deadline - time.monotonic())
    except asyncio.TimeoutError:
        pass
    held = connects.opened - 10
    while open_files(pid) < before + held and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    during = open_files(pid)

    status, seconds = await normal_request(args.url, args.path, args.post)
    lifetimes = await asyncio.gather(*tasks)
    deadline = time.monotonic() + 10
    while open_files(pid) > before + 20 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    after = open_files(pid)

    closed = [t for t in lifetimes if t is not None]
    worst = max(closed, default=0.0)
    still_open = sum(1 for t in closed if t == float("inf"))
    what = f"POST of {args.post} events" if args.post else f"GET {args.path}"
    print(f"{args.name}: {len(closed)} of {args.connections} trickling connections opened, "
          f"closed by the service after at most {worst:.1f} s (HEADER_READ_TIMEOUT {args.header_timeout:g} s); "
          f"{what} during the flood: {status} in {seconds * 1000:.0f} ms; "
          f"open files {before} before, {during} during, {after} after")
    problems = []
    if len(closed) < args.connections * 0.99:
        problems.append(f"only {len(closed)} of {args.connections} connections opened")
    if during < before + len(closed) * 0.9:
        problems.append(f"the service held only {during - before} connections open: the flood did not flood")
    if status != 200 or seconds > 1.0:
        problems.append(f"the normal request answered {status} in {seconds:.2f} s (wanted 200 within 1 s)")
    if still_open:
        problems.append(f"{still_open} trickling connections were still open after "
                        f"{args.header_timeout + args.trickle + 10:.0f} s")
    elif worst > args.header_timeout + args.trickle + 3:
        problems.append(f"a trickling connection stayed open {worst:.1f} s")
    if after > before + 20:
        problems.append(f"open files did not fall back: {before} before, {after} after")
    return [f"{args.name}: {p}" for p in problems]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--pid-file", required=True)
    parser.add_argument("--path", default="/")
    parser.add_argument("--post", type=int, default=0, help="POST this many events instead of a GET")
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--trickle", type=float, default=2.0, help="seconds between bytes")
    parser.add_argument("--header-timeout", type=float, default=10.0, help="the service's HEADER_READ_TIMEOUT")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.connections + 200:
        # The service fits MAX_CONNECTIONS to the same limit: flood what
        # this machine allows, and say so.
        print(f"{args.name}: the open-file limit is {hard}: flooding with {hard - 200} connections, "
              f"not {args.connections}", file=sys.stderr)
        args.connections = max(hard - 200, 100)
    problems = asyncio.run(flood(args))
    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
