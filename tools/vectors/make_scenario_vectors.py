#!/usr/bin/env python3
"""Build Parley's own scenario vectors (TestVectors/scenarios/) from the shared protocol vectors.

base_key_reencoded_no_otk.json: the shared pingpong_10_no_otk transcript (replayed unchanged) plus
rejects that re-send Alice's first PreKeySignalMessage (seq 0) with its base key re-encoded so that
X25519 gives Bob the same shared secrets (issue 10, defect 2):
  * bit 255 of u set (X25519 ignores it);
  * u of P + T for a torsion point T of order 2 and of order 8 (clamped X25519 scalars are
    multiples of 8, so the torsion component vanishes from every agreement).
Without a one-time prekey nothing else in Bob's store changes between two such messages, so each
of them, unless refused, runs X3DH again and delivers the first message a second time. Each is
attempted before Bob received the genuine message and again after; the reason is
`invalid_base_key` (libsignal: "incoming base key is invalid", the base key is not canonical; after
the genuine message, the re-encoded key matches no session, whose base key is compared byte for
byte, so the same check refuses it). The transcript is a version-3 (X3DH) one: the runner replays
it under SessionPolicy.allowClassical.

Every re-encoded key is checked here to give the same X25519 output as the genuine one with Bob's
signed prekey (a pure-Python RFC 7748 ladder), and the genuine base key is checked to match the
message bytes, before anything is written.

Usage: python3 tools/vectors/make_scenario_vectors.py [--shared DIR] [--out DIR]
Only the standard library is used.
"""
import argparse
import copy
import json
import os
import random

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = (-121665 * pow(121666, P - 2, P)) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
IDENTITY = (0, 1, 1, 0)


def inv(x):
    return pow(x, P - 2, P)


def recover_x(y, sign):
    x2 = (y * y - 1) * inv(D * y * y + 1) % P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P != 0:
        return None
    if (x & 1) != sign:
        x = P - x
    return x


def pt_add(p1, p2):
    x1, y1, z1, t1 = p1
    x2, y2, z2, t2 = p2
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = 2 * D * t1 * t2 % P
    d = 2 * z1 * z2 % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def pt_mul(k, pt):
    acc = IDENTITY
    while k:
        if k & 1:
            acc = pt_add(acc, pt)
        pt = pt_add(pt, pt)
        k >>= 1
    return acc


def is_identity(pt):
    x, y, z, _ = pt
    return x % P == 0 and (y - z) % P == 0


def affine(x, y):
    return (x, y, 1, x * y % P)


def u_to_point(u):
    y = (u - 1) * inv(u + 1) % P
    x = recover_x(y, 0)
    assert x is not None, "not a point on the curve"
    return affine(x, y)


def point_to_u(pt):
    zi = inv(pt[2])
    y = pt[1] * zi % P
    return (1 + y) * inv(1 - y) % P


def torsion_point(order, rng):
    """A point of exactly `order` (2 or 8): L times a random curve point, doubled down."""
    while True:
        y = rng.randrange(P)
        x = recover_x(y, 0)
        if x is None:
            continue
        t = pt_mul(L, affine(x, y))
        if is_identity(t):
            continue
        for _ in range(3):  # the torsion group is cyclic of order 8
            if order == 8 and not is_identity(pt_mul(4, t)):
                return t
            if order == 2 and not is_identity(t) and is_identity(pt_add(t, t)):
                return t
            t = pt_add(t, t)


def x25519(k_bytes, u_bytes):
    """RFC 7748 X25519 (clamps k, masks bit 255 of u)."""
    k = bytearray(k_bytes)
    k[0] &= 248
    k[31] &= 127
    k[31] |= 64
    k = int.from_bytes(k, "little")
    u = int.from_bytes(u_bytes, "little") & ((1 << 255) - 1)
    x1, x2, z2, x3, z3, swap = u, 1, 0, u, 1, 0
    for t in reversed(range(255)):
        kt = (k >> t) & 1
        swap ^= kt
        if swap:
            x2, x3, z2, z3 = x3, x2, z3, z2
        swap = kt
        a, b = (x2 + z2) % P, (x2 - z2) % P
        aa, bb = a * a % P, b * b % P
        e = (aa - bb) % P
        c, d = (x3 + z3) % P, (x3 - z3) % P
        da, cb = d * a % P, c * b % P
        x3 = (da + cb) ** 2 % P
        z3 = x1 * (da - cb) ** 2 % P
        x2 = aa * bb % P
        z2 = e * (aa + 121665 * e) % P
    if swap:
        x2, x3, z2, z3 = x3, x2, z3, z2
    return (x2 * pow(z2, P - 2, P) % P).to_bytes(32, "little")


def base_key_scenario(shared_dir):
    with open(os.path.join(shared_dir, "pingpong_10_no_otk.json")) as f:
        vector = json.load(f)
    out = copy.deepcopy(vector)
    out["name"] = "base_key_reencoded_no_otk"
    out["description"] = (
        "pingpong_10_no_otk with rejects re-sending Alice's first PreKeySignalMessage with its base key "
        "re-encoded (bit 255 set; plus a torsion point of order 2 and of order 8), each giving Bob the same "
        "X3DH secrets; each must fail as invalid_base_key before and after the genuine message is received."
    )
    out["generator"] = "tools/vectors/make_scenario_vectors.py from the shared pingpong_10_no_otk.json"
    first = next(m for m in vector["messages"] if m["seq"] == 0)
    assert first["type"] == "prekey" and first["fields"]["prekey_id"] is None
    ciphertext = bytes.fromhex(first["ciphertext"])
    # 0x33 | 12 21 <base key 33> ...: field 2 first when there is no pre_key_id.
    assert ciphertext[1:3] == bytes([0x12, 0x21])
    base_key = ciphertext[3:36]
    assert base_key.hex() == first["fields"]["base_key"] and base_key[0] == 0x05
    u = base_key[1:]
    spk_private = bytes.fromhex(vector["bob"]["signed_prekey"]["private"])
    genuine_agreement = x25519(spk_private, u)

    rng = random.Random(20261205)
    point = u_to_point(int.from_bytes(u, "little"))
    variants = [("bit255", bytes(u[:31]) + bytes([u[31] | 0x80]))]
    for order in (2, 8):
        tweaked = point_to_u(pt_add(point, torsion_point(order, rng)))
        variants.append((f"torsion{order}", tweaked.to_bytes(32, "little")))
    for name, v in variants:
        assert v != u
        assert x25519(spk_private, v) == genuine_agreement, name
    events = vector["events"]
    send0 = events.index({"op": "send", "seq": 0})
    recv0 = events.index({"op": "recv", "seq": 0})
    rejects = []
    for when, after_event, after_seq in (("before", send0, None), ("after", recv0, 0)):
        for name, v in variants:
            reencoded = ciphertext[:4] + v + ciphertext[36:]
            rejects.append({
                "id": f"base_key_{name}_{when}",
                "reason": "invalid_base_key",
                "to": "bob",
                "after_event": after_event,
                "after_seq": after_seq,
                "construction": {"op": "reencode_base_key", "base_seq": 0, "how": name, "base_key": "05" + v.hex()},
                "type": "prekey",
                "ciphertext": reencoded.hex(),
            })
    out["rejects"] = vector["rejects"] + rejects
    return out


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", default=os.path.join(os.path.dirname(root), "shared", "test-vectors"))
    parser.add_argument("--out", default=os.path.join(root, "TestVectors", "scenarios"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    vector = base_key_scenario(args.shared)
    path = os.path.join(args.out, vector["name"] + ".json")
    with open(path, "w") as f:
        json.dump(vector, f, indent=1)
        f.write("\n")
    print(f"wrote {path} ({len(vector['rejects'])} rejects)")


if __name__ == "__main__":
    main()
