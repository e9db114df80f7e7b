#!/usr/bin/env python3
"""The ejabberd anchor's load generator: the same closed-loop shape as `parley-bench relay-throughput`.

N users are connected over plain XMPP (client-to-server, SASL PLAIN, one resource each, available);
user i sends `<message type='chat'>` stanzas with a BYTES-long body to user i+1, keeping WINDOW of them
in flight: each delivery at the recipient's socket lets its sender send the next one. Each run prints
the delivered rate and latency percentiles (send -> recipient socket); the median run is reported.

Prints human-readable lines and, last, one JSON object:
  {"delivered_rate": median msg/s, "runs": [...], "p50_ms":, "p99_ms":, "generator_cpu": }

Benchmark tooling only (tools/), never part of the product. Standard library only.

Usage: xmpp_load.py --host 127.0.0.1 --port 5222 --domain bench.local --users 1000 --password pw
                    [--window 8] [--duration 10] [--runs 3] [--warmup 3] [--size 200] [--prefix u]
"""
import argparse
import asyncio
import base64
import json
import re
import resource
import statistics
import sys
import time

STREAM_OPEN = ("<?xml version='1.0'?><stream:stream to='{domain}' xmlns='jabber:client' "
               "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
# Our message ids carry the sender's index and the send time in nanoseconds: i<sender>t<ns>.
MESSAGE_ID = re.compile(rb"<message[^>]*?\sid=['\"]i(\d+)t(\d+)['\"]")


class Stats:
    def __init__(self):
        self.delivered = 0
        self.latencies = []
        self.recording = False


class User:
    def __init__(self, index, args, stats):
        self.index = index
        self.args = args
        self.stats = stats
        self.name = f"{args.prefix}{index}"
        self.reader = None
        self.writer = None
        self.peer = None
        self.sender_of = {}  # index -> User (filled by main: who sends to this user)
        self.running = False
        self.body = "x" * args.size

    async def expect(self, pattern, buffer=b""):
        """Reads until `pattern` appears; returns what follows it."""
        while pattern not in buffer:
            chunk = await self.reader.read(65536)
            if not chunk:
                raise ConnectionError(f"{self.name}: closed during setup (got {buffer[-200:]!r})")
            buffer += chunk
            if b"<failure" in buffer or b"type='error'" in buffer or b'type="error"' in buffer:
                raise ConnectionError(f"{self.name}: refused during setup: {buffer[-300:]!r}")
        return buffer[buffer.index(pattern) + len(pattern):]

    async def connect(self):
        try:
            await self.setup()
        except (ConnectionError, OSError) as error:
            raise ConnectionError(f"{self.name}: setup failed: {error}") from error

    async def setup(self):
        a = self.args
        self.reader, self.writer = await asyncio.open_connection(a.host, a.port)
        w = self.writer
        w.write(STREAM_OPEN.format(domain=a.domain).encode())
        rest = await self.expect(b"</stream:features>")
        token = base64.b64encode(b"\0" + self.name.encode() + b"\0" + a.password.encode()).decode()
        w.write(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>".encode())
        rest = await self.expect(b"<success", rest)
        w.write(STREAM_OPEN.format(domain=a.domain).encode())
        rest = await self.expect(b"</stream:features>", rest)
        w.write(b"<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                b"<resource>bench</resource></bind></iq>")
        rest = await self.expect(b"</iq>", rest)
        # Available, so messages to the bare JID are delivered to this session (not stored offline).
        w.write(b"<presence/>")
        await w.drain()
        self.pending = rest

    def send(self, flush=True):
        if not self.running:
            return
        stanza = (f"<message to='{self.peer.name}@{self.args.domain}' type='chat' "
                  f"id='i{self.index}t{time.monotonic_ns()}'><body>{self.body}</body></message>")
        self.writer.write(stanza.encode())

    async def receive_loop(self, users):
        buffer = self.pending
        while True:
            # Only whole stanzas: the tail after the last </message> waits for the next read.
            end = buffer.rfind(b"</message>")
            if end >= 0:
                end += len(b"</message>")
                for match in MESSAGE_ID.finditer(buffer, 0, end):
                    sender, sent_at = int(match.group(1)), int(match.group(2))
                    if self.stats.recording:
                        self.stats.delivered += 1
                        self.stats.latencies.append((time.monotonic_ns() - sent_at) / 1e6)
                    users[sender].send()
                buffer = buffer[end:]
            chunk = await self.reader.read(262144)
            if not chunk:
                return
            buffer += chunk


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, int(round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5222)
    ap.add_argument("--domain", default="bench.local")
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--password", default="benchpw")
    ap.add_argument("--prefix", default="u")
    ap.add_argument("--window", type=int, default=8)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=float, default=3)
    ap.add_argument("--size", type=int, default=200)
    ap.add_argument("--connect-batch", type=int, default=20, help="sessions set up at once")
    args = ap.parse_args()

    stats = Stats()
    users = [User(i, args, stats) for i in range(args.users)]
    for i, user in enumerate(users):
        user.peer = users[(i + 1) % len(users)]
    start = time.monotonic()
    for batch in range(0, len(users), args.connect_batch):
        await asyncio.gather(*(u.connect() for u in users[batch:batch + args.connect_batch]))
    print(f"setup: connected {len(users)} XMPP sessions in {time.monotonic() - start:.1f} s", flush=True)
    loops = [asyncio.create_task(u.receive_loop(users)) for u in users]
    for user in users:
        user.running = True
        for _ in range(args.window):
            user.send()
    await asyncio.sleep(args.warmup)

    runs = []
    for run in range(1, args.runs + 1):
        stats.delivered, stats.latencies, stats.recording = 0, [], True
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.monotonic()
        await asyncio.sleep(args.duration)
        stats.recording = False
        elapsed = time.monotonic() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime) / elapsed
        lat = sorted(stats.latencies)
        result = {"run": run, "delivered_rate": stats.delivered / elapsed, "p50_ms": percentile(lat, 50),
                  "p90_ms": percentile(lat, 90), "p99_ms": percentile(lat, 99), "max_ms": lat[-1] if lat else None,
                  "samples": len(lat), "generator_cpu": cpu}
        runs.append(result)
        print(f"run {run}: delivered {result['delivered_rate']:.0f} msg/s, send -> recipient socket p50 "
              f"{result['p50_ms']:.2f} / p90 {result['p90_ms']:.2f} / p99 {result['p99_ms']:.2f} ms "
              f"({len(lat)} samples), load generator CPU {cpu * 100:.0f}%", flush=True)
    for user in users:
        user.running = False
    median = sorted(runs, key=lambda r: r["delivered_rate"])[len(runs) // 2]
    print(json.dumps({"delivered_rate": median["delivered_rate"], "p50_ms": median["p50_ms"],
                      "p99_ms": median["p99_ms"], "generator_cpu": median["generator_cpu"], "runs": runs}))
    for task in loops:
        task.cancel()
    for user in users:
        user.writer.close()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except ConnectionError as error:
        print(f"xmpp_load: {error}", file=sys.stderr)
        sys.exit(1)
