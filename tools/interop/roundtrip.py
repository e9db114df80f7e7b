#!/usr/bin/env python3
"""Live round-trip interop driver for Parley.

Starts two peer processes that speak the JSON-lines interop protocol (see
Specs/interop.md, "Live interop with python-axolotl"), runs conversation
scenarios between them and checks every plaintext.

    python3 tools/interop/roundtrip.py \\
        --alice "python3 tools/interop/axolotl_peer.py" \\
        --bob   ".build/debug/parley-conformance interop"

When the two commands differ every scenario runs in both role assignments
(first command as alice / second as bob, then swapped). Output on stdout is
one line per scenario run, `PASS name` or `FAIL name: reason`, then
`N passed, N failed`. Exit status is 0 only if everything passed.

Only the standard library is used, so any python3 can run the driver.
"""

import argparse
import json
import os
import queue
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time

MAX_PLAINTEXT = 300
VERSION_BYTE = 0x33
TYPE_PREKEY = 3
TYPE_SIGNAL = 2


class Failure(Exception):
    """A scenario check failed."""


# ---------------------------------------------------------------------------
# Peer process
# ---------------------------------------------------------------------------

class Peer:
    """One peer process speaking JSON lines on stdin/stdout."""

    def __init__(self, name, label, command, timeout, verbose, logdir):
        self.name = name  # protocol name: "alice" or "bob"
        self.label = label
        self.command = command
        self.timeout = timeout
        self.verbose = verbose
        fd, self.stderr_path = tempfile.mkstemp(prefix="%s-%s-" % (name, label.replace("/", "_")),
                                                suffix=".stderr", dir=logdir)
        os.close(fd)
        self._stderr = open(self.stderr_path, "wb")
        try:
            self.proc = subprocess.Popen(
                shlex.split(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=self._stderr, bufsize=0)
        except OSError as e:
            self._stderr.close()
            raise Failure("cannot start %s peer %r: %s" % (label, command, e))
        self._lines = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        try:
            for line in iter(self.proc.stdout.readline, b""):
                self._lines.put(line)
        finally:
            self._lines.put(None)

    def stderr_tail(self, n=15):
        try:
            if not self._stderr.closed:
                self._stderr.flush()
            with open(self.stderr_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return lines[-n:]
        except OSError:
            return []

    def who(self):
        return "%s(%s)" % (self.name, self.label)

    def call(self, op, **fields):
        """Send one request; return the parsed response object (ok or not)."""
        req = {"op": op}
        req.update(fields)
        line = json.dumps(req, separators=(",", ":"))
        if self.verbose:
            sys.stderr.write("  -> %s %s\n" % (self.who(), _short(line)))
        try:
            self.proc.stdin.write(line.encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise Failure("%s: cannot write request %s (%s); exit code %s"
                          % (self.who(), op, e, self.proc.poll()))
        try:
            raw = self._lines.get(timeout=self.timeout)
        except queue.Empty:
            raise Failure("%s: no response to %s within %ss" % (self.who(), op, self.timeout))
        if raw is None:
            self.proc.wait(timeout=5)
            raise Failure("%s: exited (code %s) without answering %s"
                          % (self.who(), self.proc.returncode, op))
        text = raw.decode("utf-8", "replace").strip()
        if self.verbose:
            sys.stderr.write("  <- %s %s\n" % (self.who(), _short(text)))
        try:
            resp = json.loads(text)
        except ValueError:
            raise Failure("%s: response to %s is not JSON: %r" % (self.who(), op, text[:200]))
        if not isinstance(resp, dict) or not isinstance(resp.get("ok"), bool):
            raise Failure("%s: response to %s lacks boolean 'ok': %r" % (self.who(), op, text[:200]))
        if not resp["ok"] and not (isinstance(resp.get("error"), str) and resp["error"]):
            raise Failure("%s: failed %s response lacks an 'error' kind: %r" % (self.who(), op, text[:200]))
        return resp

    def ok(self, op, **fields):
        """Send a request that must succeed."""
        resp = self.call(op, **fields)
        if not resp["ok"]:
            raise Failure("%s: %s failed: %s%s" % (
                self.who(), op, resp.get("error"),
                (" (%s)" % resp["detail"]) if resp.get("detail") else ""))
        return resp

    def close(self):
        """Send quit (best effort), then make sure the process is gone."""
        quit_ok = False
        if self.proc.poll() is None:
            try:
                resp = self.call("quit")
                quit_ok = resp.get("ok") is True
            except Failure:
                pass
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()
        return quit_ok


def _short(s, n=160):
    return s if len(s) <= n else s[:n] + "...(%d chars)" % len(s)


# ---------------------------------------------------------------------------
# Checks and helpers
# ---------------------------------------------------------------------------

def check_hex(value, what, length=None, allow_null=False):
    if value is None and allow_null:
        return None
    if not isinstance(value, str):
        raise Failure("%s: expected hex string, got %r" % (what, value))
    if value != value.lower():
        raise Failure("%s: hex is not lowercase" % what)
    try:
        b = bytes.fromhex(value)
    except ValueError:
        raise Failure("%s: invalid hex %r" % (what, value[:80]))
    if length is not None and len(b) != length:
        raise Failure("%s: expected %d bytes, got %d" % (what, length, len(b)))
    return b


def check_version(b, what):
    if not b:
        raise Failure("%s: empty" % what)
    if b[0] != VERSION_BYTE:
        raise Failure("%s: version byte 0x%02x, expected 0x%02x" % (what, b[0], VERSION_BYTE))


class Msg:
    """A pairwise message in flight."""

    def __init__(self, sender, receiver, plaintext, mtype, ciphertext, label):
        self.sender = sender
        self.receiver = receiver
        self.plaintext = plaintext
        self.type = mtype
        self.ciphertext = ciphertext  # bytes
        self.label = label


class Conversation:
    """Two peers with an established (or about to be established) session."""

    def __init__(self, rng, alice, bob):
        self.rng = rng
        self.alice = alice
        self.bob = bob
        self.counter = {"alice": 0, "bob": 0}
        # Alice must keep sending PreKeySignalMessages until she has received
        # something from Bob; Bob only ever sends SignalMessages.
        self.alice_got_reply = False

    def peer(self, name):
        return self.alice if name == "alice" else self.bob

    def other(self, name):
        return "bob" if name == "alice" else "alice"

    def plaintext(self):
        return self.rng.randbytes(self.rng.randint(0, MAX_PLAINTEXT))

    def init_peers(self):
        r = self.rng
        for p, name in ((self.alice, "alice"), (self.bob, "bob")):
            p.ok("init", name=name, registration_id=r.randint(1, 16380),
                 signed_prekey_id=r.randint(1, 0xFFFFFE), prekey_id=r.randint(1, 0xFFFFFE))

    def x3dh(self, with_prekey):
        """Alice fetches Bob's bundle and processes it."""
        b = self.bob.ok("bundle", with_prekey=with_prekey)
        if b.get("device_id") != 1:
            raise Failure("bundle: device_id %r, expected 1" % b.get("device_id"))
        for f in ("registration_id", "signed_prekey_id"):
            if not isinstance(b.get(f), int) or isinstance(b.get(f), bool):
                raise Failure("bundle: %s is not an integer: %r" % (f, b.get(f)))
        ik = check_hex(b.get("identity_key"), "bundle.identity_key", 33)
        spk = check_hex(b.get("signed_prekey"), "bundle.signed_prekey", 33)
        check_hex(b.get("signed_prekey_signature"), "bundle.signed_prekey_signature", 64)
        for k, v in (("identity_key", ik), ("signed_prekey", spk)):
            if v[0] != 0x05:
                raise Failure("bundle.%s: key type byte 0x%02x, expected 0x05" % (k, v[0]))
        pk = check_hex(b.get("prekey"), "bundle.prekey", 33, allow_null=True)
        if with_prekey:
            if pk is None or not isinstance(b.get("prekey_id"), int):
                raise Failure("bundle with_prekey=true has no one-time prekey")
        elif pk is not None or b.get("prekey_id") is not None:
            raise Failure("bundle with_prekey=false still carries a one-time prekey")
        bundle = {k: v for k, v in b.items() if k != "ok"}
        self.alice.ok("process_bundle", peer="bob", bundle=bundle)

    def encrypt(self, sender, plaintext=None):
        """Encrypt the next message from `sender`; checks type and framing."""
        if plaintext is None:
            plaintext = self.plaintext()
        receiver = self.other(sender)
        self.counter[sender] += 1
        label = "%s#%d" % (sender, self.counter[sender])
        r = self.peer(sender).ok("encrypt", peer=receiver, plaintext=plaintext.hex())
        mtype = r.get("type")
        if mtype not in (TYPE_PREKEY, TYPE_SIGNAL):
            raise Failure("%s encrypt: bad type %r" % (label, mtype))
        expected = TYPE_PREKEY if (sender == "alice" and not self.alice_got_reply) else TYPE_SIGNAL
        if mtype != expected:
            raise Failure("%s encrypt: type %d, expected %d" % (label, mtype, expected))
        ct = check_hex(r.get("ciphertext"), "%s ciphertext" % label)
        check_version(ct, "%s ciphertext" % label)
        return Msg(sender, receiver, plaintext, mtype, ct, label)

    def deliver(self, msg):
        r = self.peer(msg.receiver).ok("decrypt", peer=msg.sender, type=msg.type,
                                       ciphertext=msg.ciphertext.hex())
        pt = check_hex(r.get("plaintext"), "%s plaintext" % msg.label)
        if pt != msg.plaintext:
            raise Failure("%s: plaintext mismatch (got %d bytes, sent %d bytes)"
                          % (msg.label, len(pt), len(msg.plaintext)))
        if msg.receiver == "alice":
            self.alice_got_reply = True

    def reject(self, msg, ciphertext, what):
        """Deliver a forged/replayed message, which must be refused."""
        r = self.peer(msg.receiver).call("decrypt", peer=msg.sender, type=msg.type,
                                         ciphertext=ciphertext.hex())
        if r["ok"]:
            raise Failure("%s (%s) was accepted by %s" % (what, msg.label, msg.receiver))
        return r["error"]

    def send(self, sender):
        m = self.encrypt(sender)
        self.deliver(m)
        return m

    def burst(self, sender, n):
        msgs = [self.encrypt(sender) for _ in range(n)]
        for m in msgs:
            self.deliver(m)


# -- minimal protobuf walker (to locate fields for bit flips) ---------------

def _varint(buf, i):
    shift = value = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def proto_field_span(buf, base, number):
    """(start, end) of length-delimited field `number` in buf[base:]; absolute offsets."""
    i = base
    while i < len(buf):
        key, i = _varint(buf, i)
        field, wt = key >> 3, key & 7
        if wt == 0:
            _, i = _varint(buf, i)
        elif wt == 2:
            n, i = _varint(buf, i)
            if field == number:
                return i, i + n
            i += n
        elif wt == 1:
            i += 8
        elif wt == 5:
            i += 4
        else:
            raise ValueError("unsupported wire type %d" % wt)
    raise ValueError("field %d not found" % number)


def flip_bit(b, pos, bit):
    out = bytearray(b)
    out[pos] ^= 1 << bit
    return bytes(out)


# ---------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------

def scenario_a(c):
    """X3DH with a one-time prekey, then 20 strict ping-pong messages."""
    c.init_peers()
    c.x3dh(with_prekey=True)
    for i in range(20):
        c.send("alice" if i % 2 == 0 else "bob")


def scenario_b(c):
    """X3DH without a one-time prekey, then ping-pong."""
    c.init_peers()
    c.x3dh(with_prekey=False)
    # two messages from alice first: both PreKeySignalMessages without a prekey id
    c.send("alice")
    c.send("alice")
    for i in range(12):
        c.send("bob" if i % 2 == 0 else "alice")


def scenario_c(c):
    """30 messages from alice before bob replies, 30 replies, then alternating bursts."""
    c.init_peers()
    c.x3dh(with_prekey=True)
    c.burst("alice", 30)
    c.burst("bob", 30)
    sender = "alice"
    for _ in range(8):
        c.burst(sender, c.rng.randint(1, 12))
        sender = c.other(sender)


def scenario_d(c):
    """Out-of-order delivery within a chain and across ratchet steps."""
    rng = c.rng
    c.init_peers()
    c.x3dh(with_prekey=True)

    def deliver_some(msgs, hold):
        """Deliver msgs shuffled except `hold` of them, which are returned."""
        order = list(msgs)
        rng.shuffle(order)
        held, now = order[:hold], order[hold:]
        for m in now:
            c.deliver(m)
        return held

    # Alice's first chain (PreKeySignalMessages): bob gets them shuffled, two held back.
    a1 = [c.encrypt("alice") for _ in range(10)]
    held_a1 = deliver_some(a1, 2)
    # Bob's first chain: alice gets it shuffled, two held back.
    b1 = [c.encrypt("bob") for _ in range(6)]
    held_b1 = deliver_some(b1, 2)
    # Alice has ratcheted: new chain; bob gets it shuffled, three held back.
    a2 = [c.encrypt("alice") for _ in range(8)]
    held_a2 = deliver_some(a2, 3)
    # Late delivery of alice's first-chain messages, after bob's ratchet step.
    for m in held_a1:
        c.deliver(m)
    # Bob's second chain; alice gets it shuffled, then bob's late first-chain messages.
    b2 = [c.encrypt("bob") for _ in range(7)]
    held_b2 = deliver_some(b2, 2)
    for m in held_b1:
        c.deliver(m)
    # Another step each way, then the remaining stragglers (two chains old).
    a3 = [c.encrypt("alice") for _ in range(5)]
    for m in reversed(a3):
        c.deliver(m)
    b3 = [c.encrypt("bob") for _ in range(3)]
    for m in b3:
        c.deliver(m)
    for m in held_a2:
        c.deliver(m)
    for m in held_b2:
        c.deliver(m)
    # A skipped gap inside a chain (keys 0..4 skipped, delivered afterwards).
    a4 = [c.encrypt("alice") for _ in range(6)]
    c.deliver(a4[5])
    for m in a4[:5]:
        c.deliver(m)
    # Conversation continues normally.
    for i in range(6):
        c.send("bob" if i % 2 == 0 else "alice")


def scenario_e(c):
    """Sender keys: alice's key, 50 shuffled group messages; then bob's key, 20 messages."""
    rng = c.rng
    c.init_peers()
    group = "g%d" % rng.randint(1, 10 ** 6)

    def create(p):
        r = p.ok("group_create", group=group)
        d = check_hex(r.get("distribution"), "%s distribution" % p.name)
        check_version(d, "%s distribution" % p.name)
        return r["distribution"]

    def gsend(sender, n):
        out = []
        for i in range(n):
            pt = c.plaintext()
            r = c.peer(sender).ok("group_encrypt", group=group, plaintext=pt.hex())
            ct = check_hex(r.get("ciphertext"), "%s group message %d" % (sender, i))
            check_version(ct, "%s group message %d" % (sender, i))
            out.append((i, pt, ct))
        return out

    def gdeliver(sender, receiver, msgs):
        for i, pt, ct in msgs:
            r = c.peer(receiver).ok("group_decrypt", group=group, sender=sender, ciphertext=ct.hex())
            got = check_hex(r.get("plaintext"), "group plaintext")
            if got != pt:
                raise Failure("%s group message %d: plaintext mismatch" % (sender, i))

    dist = create(c.alice)
    c.bob.ok("group_process", group=group, sender="alice", distribution=dist)
    msgs = gsend("alice", 50)
    shuffled = list(msgs)
    rng.shuffle(shuffled)
    gdeliver("alice", "bob", shuffled)

    # A replayed and a forged group message must be refused without harm.
    i, pt, ct = msgs[rng.randrange(len(msgs))]
    r = c.bob.call("group_decrypt", group=group, sender="alice", ciphertext=ct.hex())
    if r["ok"]:
        raise Failure("replayed group message %d was accepted" % i)
    extra = gsend("alice", 1)
    j, pt2, ct2 = extra[0]
    body = proto_field_span(ct2[:-64], 1, 3)
    forged = flip_bit(ct2, rng.randrange(*body), rng.randrange(8))
    r = c.bob.call("group_decrypt", group=group, sender="alice", ciphertext=forged.hex())
    if r["ok"]:
        raise Failure("group message with a flipped ciphertext bit was accepted")
    gdeliver("alice", "bob", extra)

    dist_b = create(c.bob)
    c.alice.ok("group_process", group=group, sender="bob", distribution=dist_b)
    gdeliver("bob", "alice", gsend("bob", 20))
    # Both keys keep working side by side.
    gdeliver("alice", "bob", gsend("alice", 5))
    gdeliver("bob", "alice", gsend("bob", 5))


def scenario_f(c):
    """Tampered messages are rejected with an error; the conversation then continues."""
    rng = c.rng
    c.init_peers()
    c.x3dh(with_prekey=True)

    # 1. A PreKeySignalMessage whose embedded SignalMessage has a flipped
    #    ciphertext bit (the outer PreKey fields are not MAC-covered, so only
    #    the embedded message is tampered with).
    m = c.encrypt("alice")
    inner = proto_field_span(m.ciphertext, 1, 4)
    body = proto_field_span(m.ciphertext[:inner[1] - 8], inner[0] + 1, 4)
    c.reject(m, flip_bit(m.ciphertext, rng.randrange(*body), rng.randrange(8)),
             "PreKeySignalMessage with a flipped ciphertext bit")
    c.deliver(m)
    c.send("bob")

    # 2. SignalMessages in both directions: flipped bit in the AES body, in
    #    the MAC, and anywhere at all. Each is refused; the genuine message
    #    still decrypts afterwards.
    for sender in ("alice", "bob", "alice", "bob"):
        m = c.encrypt(sender)
        ct = m.ciphertext
        lo, hi = proto_field_span(ct[:-8], 1, 4)
        forgeries = [
            ("SignalMessage with a flipped ciphertext bit", flip_bit(ct, rng.randrange(lo, hi), rng.randrange(8))),
            ("SignalMessage with a flipped MAC bit", flip_bit(ct, rng.randrange(len(ct) - 8, len(ct)), rng.randrange(8))),
            ("SignalMessage with a random flipped bit", flip_bit(ct, rng.randrange(len(ct)), rng.randrange(8))),
        ]
        for what, forged in forgeries:
            c.reject(m, forged, what)
        c.deliver(m)
        # 3. Replaying the genuine message must be refused too.
        c.reject(m, ct, "replayed SignalMessage")

    # 4. A forged message held against a later, still-undelivered one.
    later = [c.encrypt("alice") for _ in range(3)]
    lo, hi = proto_field_span(later[2].ciphertext[:-8], 1, 4)
    c.reject(later[2], flip_bit(later[2].ciphertext, rng.randrange(lo, hi), rng.randrange(8)),
             "future SignalMessage with a flipped ciphertext bit")
    for m in later:
        c.deliver(m)

    # The conversation carries on.
    for i in range(10):
        c.send("bob" if i % 2 == 0 else "alice")


SCENARIOS = [
    ("a_x3dh_prekey_pingpong", scenario_a),
    ("b_x3dh_no_prekey", scenario_b),
    ("c_bursts", scenario_c),
    ("d_out_of_order", scenario_d),
    ("e_group_sender_keys", scenario_e),
    ("f_tamper_rejected", scenario_f),
]


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

def default_label(command):
    if "axolotl_peer" in command:
        return "python"
    if "parley-conformance" in command:
        return "swift"
    try:
        return os.path.basename(shlex.split(command)[0])
    except (ValueError, IndexError):
        return "peer"


def run_one(name, fn, alice_cmd, alice_label, bob_cmd, bob_label, seed, args, logdir):
    rng = random.Random(seed)
    peers = []
    try:
        alice = Peer("alice", alice_label, alice_cmd, args.timeout, args.verbose, logdir)
        peers.append(alice)
        bob = Peer("bob", bob_label, bob_cmd, args.timeout, args.verbose, logdir)
        peers.append(bob)
        fn(Conversation(rng, alice, bob))
        for p in peers:
            if not p.close():
                raise Failure("%s did not answer quit with ok" % p.who())
        peers = []
        return None
    except Failure as e:
        return str(e), peers
    except Exception as e:  # driver bug or unexpected peer output
        return "%s: %s" % (type(e).__name__, e), peers
    finally:
        for p in peers:
            try:
                p.close()
            except Exception:
                pass


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--alice", required=True, help="command line of the first peer")
    ap.add_argument("--bob", required=True, help="command line of the second peer")
    ap.add_argument("--alice-label", help="short name of the first peer (default: derived from the command)")
    ap.add_argument("--bob-label", help="short name of the second peer (default: derived from the command)")
    ap.add_argument("--seed", type=int, help="random seed (default: random; printed on stderr)")
    ap.add_argument("--only", action="append", default=[],
                    help="run only scenarios whose name starts with this (repeatable)")
    ap.add_argument("--one-way", action="store_true",
                    help="do not swap roles even if the two commands differ")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each response")
    ap.add_argument("--verbose", "-v", action="store_true", help="log every request/response on stderr")
    args = ap.parse_args(argv)

    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2 ** 32)
    sys.stderr.write("roundtrip: seed %d (rerun with --seed %d)\n" % (seed, seed))

    la = args.alice_label or default_label(args.alice)
    lb = args.bob_label or default_label(args.bob)
    if la == lb and args.alice != args.bob:
        la, lb = la + "1", lb + "2"
    assignments = [(args.alice, la, args.bob, lb)]
    if args.alice != args.bob and not args.one_way:
        assignments.append((args.bob, lb, args.alice, la))

    scenarios = [(n, f) for n, f in SCENARIOS
                 if not args.only or any(n.startswith(o) for o in args.only)]
    if not scenarios:
        ap.error("no scenario matches --only %s" % args.only)

    passed = failed = 0
    logdir = tempfile.mkdtemp(prefix="parley-interop-")
    for ai, (acmd, alab, bcmd, blab) in enumerate(assignments):
        for si, (name, fn) in enumerate(scenarios):
            full = "%s[alice=%s,bob=%s]" % (name, alab, blab)
            started = time.monotonic()
            result = run_one(name, fn, acmd, alab, bcmd, blab, seed + 1000 * ai + si, args, logdir)
            if result is None:
                passed += 1
                print("PASS %s" % full, flush=True)
                if args.verbose:
                    sys.stderr.write("  (%.2fs)\n" % (time.monotonic() - started))
            else:
                failed += 1
                reason, peers = result
                print("FAIL %s: %s" % (full, reason.replace("\n", " ")), flush=True)
                for p in peers:
                    tail = p.stderr_tail()
                    if tail:
                        sys.stderr.write("  stderr of %s:\n" % p.who())
                        for line in tail:
                            sys.stderr.write("    %s\n" % line)
    if failed:
        sys.stderr.write("roundtrip: peer stderr logs kept in %s\n" % logdir)
    else:
        shutil.rmtree(logdir, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed), flush=True)
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
