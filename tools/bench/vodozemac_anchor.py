#!/usr/bin/env python3
"""The anchors of `parley-bench crypto --anchors`: vodozemac (Matrix's Olm and Megolm in Rust,
through its PyPI binding) doing the same work as Parley's cases, timed the same way.

  megolm         one GroupSession encrypts, one InboundGroupSession decrypts (the anchor of
                 Parley's sender keys)
  olm-one-chain  an established Olm session, Alice encrypts and Bob decrypts, no replies (the
                 anchor of Parley's 1:1 one chain)
  olm-ping-pong  strictly alternating senders, a DH ratchet step per message (1:1 ping-pong)

Each run prints one JSON object per line:
  {"case": ..., "run": i, "messages": n, "cpu_rate": msg per process-CPU second,
   "wall_rate": msg per wall-clock second}
The per-call Python overhead is part of the figure (about 1 us per call); it is what a caller of
the binding pays.

Usage: vodozemac_anchor.py --case CASE --messages N --runs R --size BYTES
"""
import argparse
import json
import sys
import time

import vodozemac


def olm_pair():
    alice, bob = vodozemac.Account(), vodozemac.Account()
    bob.generate_one_time_keys(1)
    otk = list(bob.one_time_keys.values())[0]
    a = alice.create_outbound_session(bob.curve25519_key, otk)
    first = a.encrypt(b"hello")
    result = bob.create_inbound_session(alice.curve25519_key, first.to_pre_key())
    b = result[0] if isinstance(result, tuple) else result.session
    # Bob answers, so Alice's later messages are normal (not pre-key) messages.
    a.decrypt(b.encrypt(b"hi"))
    return a, b


def run_megolm(n, plaintext):
    outbound = vodozemac.GroupSession()
    inbound = vodozemac.InboundGroupSession(outbound.session_key)
    def body():
        for _ in range(n):
            message = outbound.encrypt(plaintext)
            if len(inbound.decrypt(message).plaintext) != len(plaintext):
                raise SystemExit("megolm round trip failed")
    return body


def run_one_chain(n, plaintext):
    a, b = olm_pair()
    def body():
        for _ in range(n):
            if len(b.decrypt(a.encrypt(plaintext))) != len(plaintext):
                raise SystemExit("olm round trip failed")
    return body


def run_ping_pong(n, plaintext):
    a, b = olm_pair()
    def body():
        for i in range(n):
            if i % 2 == 0:
                b.decrypt(a.encrypt(plaintext))
            else:
                a.decrypt(b.encrypt(plaintext))
    return body


CASES = {"megolm": run_megolm, "olm-one-chain": run_one_chain, "olm-ping-pong": run_ping_pong}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", choices=sorted(CASES), required=True)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size", type=int, default=200)
    args = parser.parse_args()
    plaintext = b"a" * args.size
    for run in range(args.runs):
        body = CASES[args.case](args.messages, plaintext)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        body()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        print(json.dumps({
            "case": args.case, "run": run, "messages": args.messages,
            "cpu_rate": args.messages / max(cpu, 1e-9), "wall_rate": args.messages / max(wall, 1e-9),
        }), flush=True)


if __name__ == "__main__":
    sys.exit(main())
