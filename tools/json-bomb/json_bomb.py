#!/usr/bin/env python3
"""Memory amplification probe for a running parley-relay (issue 9, item 3).

Sends CONCURRENCY unauthenticated `POST /v1/accounts` bodies of SIZE bytes made of many small JSON objects
(`[{},{},...]`, the issue's attack), with a Content-Length and/or chunked, and samples the relay's resident
memory (VmRSS of --pid, from /proc) before, at the peak during, and after the attack. Standard library only.

    tools/json-bomb/json_bomb.py --url http://127.0.0.1:8080 --pid "$(pgrep -n parley-relay)" [--rounds 3]

Prints one line per phase and exits 0; it judges nothing (the figures go to BENCHMARKS.md).
"""
import argparse
import socket
import threading
import time
import urllib.parse


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Sampler(threading.Thread):
    def __init__(self, pid, interval=0.02):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak = 0
        self.running = True

    def run(self):
        while self.running:
            self.peak = max(self.peak, rss_kib(self.pid))
            time.sleep(self.interval)


def body(size):
    piece = b"{},"
    count = max(1, (size - 2) // len(piece))
    return b"[" + piece * (count - 1) + b"{}]"


def attack(host, port, payload, chunked, results, index):
    """One request; records the status line the relay answered (or how the connection ended)."""
    try:
        sock = socket.create_connection((host, port), timeout=60)
        head = "POST /v1/accounts HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n"
        head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {len(payload)}\r\n\r\n"
        sock.sendall(head.encode())
        step = 64 * 1024
        try:
            for offset in range(0, len(payload), step):
                part = payload[offset:offset + step]
                sock.sendall(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the relay answered and stopped reading: fine
        sock.settimeout(30)
        answer = sock.recv(256).split(b"\r\n", 1)[0].decode(errors="replace")
        results[index] = answer or "closed"
        sock.close()
    except OSError as error:
        results[index] = f"error: {error}"


def round_of(url, pid, concurrency, size, chunked):
    parsed = urllib.parse.urlparse(url)
    payload = body(size)
    sampler = Sampler(pid)
    before = rss_kib(pid)
    sampler.start()
    results = [None] * concurrency
    started = time.monotonic()
    threads = [threading.Thread(target=attack, args=(parsed.hostname, parsed.port, payload, chunked, results, i))
               for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    time.sleep(5)
    sampler.running = False
    sampler.join()
    after = rss_kib(pid)
    statuses = sorted(set(results), key=str)
    print(f"{'chunked' if chunked else 'content-length'}: {concurrency} x {len(payload) / 1048576:.1f} MiB in {elapsed:.2f} s; "
          f"RSS before {before / 1024:.1f} MiB, peak {sampler.peak / 1024:.1f} MiB, 5 s after {after / 1024:.1f} MiB; "
          f"answers {statuses}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--size", type=int, default=int(7.9 * 1024 * 1024))
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--mode", choices=["content-length", "chunked", "both"], default="both")
    args = parser.parse_args()
    for _ in range(args.rounds):
        if args.mode in ("content-length", "both"):
            round_of(args.url, args.pid, args.concurrency, args.size, chunked=False)
        if args.mode in ("chunked", "both"):
            round_of(args.url, args.pid, args.concurrency, args.size, chunked=True)


if __name__ == "__main__":
    main()
