#!/usr/bin/env python3
"""Build TestVectors/primitives/xeddsa.json from the shared protocol vectors.

Positive cases come from signatures that the independent generator (python-axolotl) produced:
  * every session vector: Bob's signed-prekey signature (identity key signs the 33-byte SPK public key);
  * every group vector: the first 5 SenderKeyMessages by seq (send order); the message is the
    ciphertext without its last 64 bytes, the signature is those 64 bytes.
Each positive signature is re-derived here with a small pure-Python implementation of libsignal's
signing rule (the curve_sigs variant described in /work/shared/specs/test-vectors.md, "Signatures")
and must match byte for byte before anything is written.

Negative (verify-only) cases are derived from the first positive case.

Usage: python3 tools/vectors/make_xeddsa_vectors.py [--shared DIR] [--out FILE]
Only the standard library is used.
"""
import argparse
import hashlib
import json
import os
import sys

# ---------------------------------------------------------------- Ed25519 arithmetic
P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = (-121665 * pow(121666, P - 2, P)) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def inv(x):
    return pow(x, P - 2, P)


def recover_x(y, sign):
    """x from y on -x^2 + y^2 = 1 + d x^2 y^2, with x's low bit = sign; None if no such point."""
    if y >= P:
        return None
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


# Points in extended coordinates (X, Y, Z, T) with x = X/Z, y = Y/Z, xy = T/Z.
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
    acc = (0, 1, 1, 0)
    while k:
        if k & 1:
            acc = pt_add(acc, pt)
        pt = pt_add(pt, pt)
        k >>= 1
    return acc


def pt_affine(pt):
    zi = inv(pt[2])
    return pt[0] * zi % P, pt[1] * zi % P


def pt_encode(pt):
    x, y = pt_affine(pt)
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def pt_decode(b):
    v = int.from_bytes(b, "little")
    y, sign = v & ((1 << 255) - 1), v >> 255
    x = recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % P)


def pt_equal(p1, p2):
    return (p1[0] * p2[2] - p2[0] * p1[2]) % P == 0 and (p1[1] * p2[2] - p2[1] * p1[2]) % P == 0


_BY = 4 * inv(5) % P
BASE = (recover_x(_BY, 0), _BY, 1, recover_x(_BY, 0) * _BY % P)


def sha512_int(*parts):
    return int.from_bytes(hashlib.sha512(b"".join(parts)).digest(), "little")


# ---------------------------------------------------------------- libsignal "XEdDSA" (curve_sigs)
def is_clamped(k):
    return k[0] & 7 == 0 and k[31] & 0x80 == 0 and k[31] & 0x40 == 0x40


def montgomery_u_of(k):
    """u-coordinate of k*B via the birational map u = (1+y)/(1-y) (no X25519 library involved)."""
    _, y = pt_affine(pt_mul(int.from_bytes(k, "little"), BASE))
    return ((1 + y) * inv(1 - y) % P).to_bytes(32, "little")


def xeddsa_sign(k, message, z):
    a = int.from_bytes(k, "little")          # clamped X25519 scalar used as is (no negation)
    big_a = pt_encode(pt_mul(a, BASE))
    r = sha512_int(b"\xfe" + b"\xff" * 31, k, message, z) % L
    big_r = pt_encode(pt_mul(r, BASE))
    h = sha512_int(big_r, big_a, message) % L
    s = (h * a + r) % L
    sig = bytearray(big_r + s.to_bytes(32, "little"))
    sig[63] = (sig[63] & 0x7F) | (big_a[31] & 0x80)
    return bytes(sig)


def xeddsa_verify(public33, message, sig, canonical_s=True):
    """libsignal's verify_signature; with canonical_s also reject s >= L (Parley's rule)."""
    if len(public33) != 33 or public33[0] != 0x05 or len(sig) != 64:
        return False
    u = int.from_bytes(public33[1:], "little") & ((1 << 255) - 1)
    if (u + 1) % P == 0:
        return False
    y = (u - 1) * inv(u + 1) % P
    big_a_enc = (y | ((sig[63] >> 7) << 255)).to_bytes(32, "little")
    big_a = pt_decode(big_a_enc)
    if big_a is None:
        return False
    s_bytes = bytearray(sig[32:])
    s_bytes[31] &= 0x7F
    if s_bytes[31] & 0xE0:
        return False
    s = int.from_bytes(s_bytes, "little")
    if canonical_s and s >= L:
        return False
    h = sha512_int(sig[:32], big_a_enc, message) % L
    neg_a = ((P - big_a[0]) % P, big_a[1], big_a[2], (P - big_a[3]) % P)
    check = pt_add(pt_mul(s, BASE), pt_mul(h, neg_a))
    return pt_encode(check) == sig[:32]


# ---------------------------------------------------------------- building the cases
def vector_files(shared):
    with open(os.path.join(shared, "index.json")) as f:
        index = json.load(f)
    return [e["file"] for e in index]


def positive_cases(shared):
    cases = []
    for fname in vector_files(shared):
        with open(os.path.join(shared, fname)) as f:
            v = json.load(f)
        if v["kind"] == "session":
            bob = v["bob"]
            spk = bob["signed_prekey"]
            cases.append({
                "name": f"{v['name']}_signed_prekey",
                "source": f"protocol vector {fname}: bob.signed_prekey.signature (python-axolotl)",
                "private": bob["identity_private"], "public": bob["identity_public"],
                "message": spk["public"], "random": spk["signature_random"],
                "signature": spk["signature"], "valid": True})
        elif v["kind"] == "group":
            sd = v["sender_draws"]
            msgs = sorted(v["messages"], key=lambda m: m["seq"])
            for i, m in enumerate(msgs[:5]):
                assert m["seq"] == i, (fname, m["seq"], i)
                ct = bytes.fromhex(m["ciphertext"])
                assert m["fields"]["signature"] == ct[-64:].hex(), (fname, i)
                cases.append({
                    "name": f"{v['name']}_message_{m['seq']}",
                    "source": f"protocol vector {fname}: SenderKeyMessage seq {m['seq']} (python-axolotl)",
                    "private": sd["signing_private"], "public": sd["signing_public"],
                    "message": ct[:-64].hex(), "random": sd["signature_randoms"][i],
                    "signature": ct[-64:].hex(), "valid": True})
        else:
            raise SystemExit(f"{fname}: unknown kind {v['kind']!r}")
    return cases


def check_positive(c):
    k = bytes.fromhex(c["private"])
    pub = bytes.fromhex(c["public"])
    msg = bytes.fromhex(c["message"])
    z = bytes.fromhex(c["random"])
    sig = bytes.fromhex(c["signature"])
    assert len(k) == 32 and is_clamped(k), c["name"]
    assert len(z) == 64 and len(sig) == 64, c["name"]
    assert pub == b"\x05" + montgomery_u_of(k), f"{c['name']}: public key is not 0x05 || u(kB)"
    ours = xeddsa_sign(k, msg, z)
    assert ours == sig, f"{c['name']}: re-derived signature differs\n ours   {ours.hex()}\n theirs {sig.hex()}"
    assert xeddsa_verify(pub, msg, sig), f"{c['name']}: does not verify"


def flip(b, offset, bit):
    b = bytearray(b)
    b[offset] ^= 1 << bit
    return bytes(b)


def negative_cases(base, wrong_public, wrong_public_label):
    pub = bytes.fromhex(base["public"])
    msg = bytes.fromhex(base["message"])
    sig = bytes.fromhex(base["signature"])
    origin = base["name"]

    s = int.from_bytes(sig[32:], "little") & ((1 << 255) - 1)
    s_plus_l = s + L
    assert s_plus_l < 2**253, "s + L would already fail the 0xE0 check; pick another base"
    sig_plus_l = bytearray(sig[:32] + s_plus_l.to_bytes(32, "little"))
    sig_plus_l[63] |= sig[63] & 0x80           # keep the sign bit of A as it was
    sig_plus_l = bytes(sig_plus_l)
    assert sig_plus_l[63] & 0x60 == 0          # passes libsignal's high-bits check ...
    assert xeddsa_verify(pub, msg, sig_plus_l, canonical_s=False)   # ... and libsignal's equation

    out = [
        ("message_bit_flipped", "last byte of the message, bit 0 flipped",
         pub, flip(msg, len(msg) - 1, 0), sig),
        ("r_bit_flipped", "signature byte 0 (in R), bit 0 flipped",
         pub, msg, flip(sig, 0, 0)),
        ("sign_bit_flipped", "bit 7 of signature byte 63 (the sign bit of A) flipped",
         pub, msg, flip(sig, 63, 7)),
        ("s_plus_l_noncanonical",
         "s replaced by s + L (bit 7 of byte 63 kept). Rejected by Parley (s must be < L, as in RFC 8032); "
         "note that libsignal's verify_signature reduces s mod L and would accept this one",
         pub, msg, sig_plus_l),
        ("wrong_public_key", f"verified against {wrong_public_label} instead of the signer's key",
         wrong_public, msg, sig),
    ]
    cases = []
    for suffix, how, p, m, sg in out:
        assert not xeddsa_verify(p, m, sg), suffix
        cases.append({"name": f"{origin}_{suffix}",
                      "source": f"derived from case {origin}: {how}",
                      "public": p.hex(), "message": m.hex(), "signature": sg.hex(), "valid": False})
    return cases


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default="/work/shared/test-vectors")
    ap.add_argument("--out", default=os.path.join(here, "..", "..", "TestVectors", "primitives", "xeddsa.json"))
    args = ap.parse_args()

    # Self-test of the Edwards arithmetic: B has order L and encodes as RFC 8032 says.
    assert pt_encode(BASE).hex() == "58" + "66" * 31
    assert pt_equal(pt_mul(L, BASE), (0, 1, 1, 0))
    assert montgomery_u_of(bytes([1] + [0] * 31)) == (9).to_bytes(32, "little")

    pos = positive_cases(args.shared)
    for c in pos:
        check_positive(c)

    first = pos[0]
    with open(os.path.join(args.shared, vector_files(args.shared)[0])) as f:
        v0 = json.load(f)
    neg = negative_cases(first, bytes.fromhex(v0["alice"]["identity_public"]),
                         f"alice.identity_public of {v0['name']}")

    doc = {
        "kind": "xeddsa",
        "name": "xeddsa_libsignal",
        "source": "signatures from the shared protocol vectors (/work/shared/test-vectors, python-axolotl), "
                  "re-derived by tools/vectors/make_xeddsa_vectors.py; negative cases derived from them",
        "cases": pos + neg,
    }
    out = os.path.normpath(args.out)
    with open(out, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    print(f"{len(pos)} positive signatures re-derived and verified, {len(neg)} negative cases rejected; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
