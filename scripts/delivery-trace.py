#!/usr/bin/env python3
"""Where a message's delivery time goes, from the relay nodes' delivery traces.

    PARLEY_RELAY_TRACE_DELIVERY=/tmp/trace scripts/bench-postgres.sh relay-latency --rate 2000 --node-count 2
    scripts/delivery-trace.py /tmp/trace

Reads every `*.trace` file of the folder (one per relay process, see Sources/ParleyRelay/Operations/DeliveryTrace.swift),
joins the lines of one queue entry across nodes by its id (account.device.seq) and prints percentiles (ms) per step:
send commits (every batch of every node) and, for entries that crossed nodes, frame read -> commit called -> COMMIT
returned -> notification received by the other node -> read from the tables -> written to the recipient's socket.
Only entries whose steps all appear are counted (a relay's last buffered lines are lost when it is killed).
"""
import glob
import os
import sys


def percentiles(values):
    if not values:
        return "no samples"
    values = sorted(values)

    def at(p):
        return values[min(len(values) - 1, int(len(values) * p / 100))] / 1e6

    return "p50 %7.2f  p90 %7.2f  p99 %7.2f  max %7.2f  (%d)" % (at(50), at(90), at(99), values[-1] / 1e6, len(values))


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else "."
    batches = []
    sent, notified, read, written = {}, {}, {}, {}
    for path in glob.glob(os.path.join(folder, "*.trace")):
        with open(path) as handle:
            for line in handle:
                parts = line.split()
                if not parts:
                    continue
                try:
                    if parts[0] == "B" and len(parts) == 6:
                        batches.append(tuple(int(x) for x in parts[1:]))
                    elif parts[0] == "S" and len(parts) == 5:
                        sent[parts[1]] = tuple(int(x) for x in parts[2:])
                    elif parts[0] == "N" and len(parts) == 3:
                        notified.setdefault(parts[1], int(parts[2]))
                    elif parts[0] == "R" and len(parts) == 4:
                        read.setdefault(parts[1], (int(parts[2]), int(parts[3])))
                    elif parts[0] in ("W", "D") and len(parts) == 3:
                        written.setdefault(parts[1], (parts[0], int(parts[2])))
                except ValueError:
                    continue  # a line cut short when its process was killed

    print("send commits: %d batches, median %d submissions" % (
        len(batches), sorted(b[4] for b in batches)[len(batches) // 2] if batches else 0))
    print("  lease + BEGIN          ", percentiles([b[1] - b[0] for b in batches]))
    print("  statements (incl. NOTIFY)", percentiles([b[2] - b[1] for b in batches]))
    print("  COMMIT                 ", percentiles([b[3] - b[2] for b in batches]))
    print("  whole commit           ", percentiles([b[3] - b[0] for b in batches]))

    steps = {name: [] for name in ("queued", "commit", "notify", "to read", "read", "to socket", "total")}
    drained = 0
    for key, (received, called, end) in sent.items():
        if key not in notified or key not in written:
            continue
        kind, at_socket = written[key]
        if received == 0:
            continue
        note = notified[key]
        steps["queued"].append(called - received)
        steps["commit"].append(end - called)
        steps["notify"].append(note - end)
        if kind == "W" and key in read:
            start, done = read[key]
            steps["to read"].append(start - note)
            steps["read"].append(done - start)
            steps["to socket"].append(at_socket - done)
        else:
            drained += 1
        steps["total"].append(at_socket - received)
    print("crossing entries: %d joined (%d written by a queue read instead of live)" % (len(steps["total"]), drained))
    labels = {
        "queued": "frame read -> commit called",
        "commit": "commit called -> COMMIT returned",
        "notify": "COMMIT returned -> notification at other node",
        "to read": "notification -> read started",
        "read": "read started -> read returned",
        "to socket": "read returned -> written to socket",
        "total": "frame read -> written to socket",
    }
    for name, values in steps.items():
        print("  %-46s %s" % (labels[name], percentiles(values)))
    print("(notify can be negative: the other node may get the notification before COMMIT's reply reaches the sender)")


if __name__ == "__main__":
    main()
