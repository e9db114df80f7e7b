#!/usr/bin/env python3
"""Re-check the primitive known-answer tests with pyca/cryptography as an independent implementation.

Usage: python3 tools/vectors/check_primitives.py [PATH...]
Each PATH is a KAT file or a folder (every *.json below it except index.json); the default is
TestVectors/primitives/. The Kyber1024 KAT files there (libcrux's nistkats_kyber_1024.json, named
SKIP, and the .rsp, not a *.json) are re-derived by tools/vectors/make_kyber_kats.py instead. Prints `PASS name` or `FAIL name: reason` per case, then
`N passed, N failed`, and exits 0 only when nothing failed. Each file's schema is checked against
Specs/test-vectors.md as well: unknown kinds, missing or extra fields, or non-lowercase hex fail.
"""
import hashlib
import json
import os
import re
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac, padding, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

HEX = re.compile(r"^(?:[0-9a-f]{2})*$")
P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493


class Fail(Exception):
    pass


def need(cond, msg):
    if not cond:
        raise Fail(msg)


def hexfield(case, key, length=None):
    v = case.get(key)
    need(isinstance(v, str) and HEX.match(v), f"{key}: not lowercase hex")
    b = bytes.fromhex(v)
    if length is not None:
        need(len(b) == length, f"{key}: {len(b)} bytes, expected {length}")
    return b


def intfield(case, key, minimum=0):
    v = case.get(key)
    need(isinstance(v, int) and not isinstance(v, bool) and v >= minimum, f"{key}: not an integer >= {minimum}")
    return v


def keys(case, required, optional=()):
    have = set(case)
    missing = set(required) - have
    extra = have - set(required) - set(optional) - {"source"}
    need(not missing, f"missing field(s) {sorted(missing)}")
    need(not extra, f"unexpected field(s) {sorted(extra)}")
    need(isinstance(case["name"], str) and case["name"], "name: empty")
    if "source" in case:
        need(isinstance(case["source"], str), "source: not a string")


def eq(what, got, want):
    need(got == want, f"{what}: expected {want.hex()}, computed {got.hex()}")


# ---------------------------------------------------------------- X25519 (RFC 7748)
def x25519(k, u):
    return X25519PrivateKey.from_private_bytes(k).exchange(X25519PublicKey.from_public_bytes(u))


def x25519_base(k):
    return X25519PrivateKey.from_private_bytes(k).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def check_x25519(c, doc):
    if "iterations" in c:
        keys(c, ["name", "iterations", "output"])
        n = intfield(c, "iterations", 1)
        out = hexfield(c, "output", 32)
        k = u = (9).to_bytes(32, "little")
        for _ in range(n):
            k, u = x25519(k, u), k
        eq("output", k, out)
    elif "scalar" in c:
        keys(c, ["name", "scalar", "u", "output"])
        eq("output", x25519(hexfield(c, "scalar", 32), hexfield(c, "u", 32)), hexfield(c, "output", 32))
    else:
        keys(c, ["name", "alice_private", "alice_public", "bob_private", "bob_public", "shared"])
        a, ap = hexfield(c, "alice_private", 32), hexfield(c, "alice_public", 32)
        b, bp = hexfield(c, "bob_private", 32), hexfield(c, "bob_public", 32)
        shared = hexfield(c, "shared", 32)
        eq("alice_public", x25519_base(a), ap)
        eq("bob_public", x25519_base(b), bp)
        eq("shared (alice)", x25519(a, bp), shared)
        eq("shared (bob)", x25519(b, ap), shared)


# ---------------------------------------------------------------- HKDF / HMAC
def hmac_sha256(key, data):
    m = hmac.HMAC(key, hashes.SHA256())
    m.update(data)
    return m.finalize()


def check_hkdf(c, doc):
    keys(c, ["name", "ikm", "salt", "info", "length", "prk", "okm"])
    ikm, salt, info = hexfield(c, "ikm"), hexfield(c, "salt"), hexfield(c, "info")
    n = intfield(c, "length", 1)
    prk, okm = hexfield(c, "prk", 32), hexfield(c, "okm", n)
    eq("prk", hmac_sha256(salt if salt else b"\0" * 32, ikm), prk)
    eq("okm (expand from prk)", HKDFExpand(hashes.SHA256(), n, info).derive(prk), okm)
    eq("okm (extract+expand)", HKDF(hashes.SHA256(), n, salt if salt else None, info).derive(ikm), okm)


def check_hmac(c, doc):
    keys(c, ["name", "key", "data", "mac"], ["truncate"])
    key, data, mac = hexfield(c, "key"), hexfield(c, "data"), hexfield(c, "mac")
    full = hmac_sha256(key, data)
    if "truncate" in c:
        t = intfield(c, "truncate", 1)
        need(t <= 32 and len(mac) == t, f"mac: {len(mac)} bytes but truncate is {t}")
        eq("mac (truncated)", full[:t], mac)
    else:
        need(len(mac) == 32, f"mac: {len(mac)} bytes, expected 32")
        eq("mac", full, mac)


# ---------------------------------------------------------------- AES-256-CBC
def check_aes(c, doc):
    keys(c, ["name", "key", "iv", "plaintext", "ciphertext", "padding"])
    key, iv = hexfield(c, "key", 32), hexfield(c, "iv", 16)
    pt, ct = hexfield(c, "plaintext"), hexfield(c, "ciphertext")
    pad = c["padding"]
    need(pad in ("none", "pkcs7"), f"padding: {pad!r} is not 'none' or 'pkcs7'")
    need(len(ct) % 16 == 0 and len(ct) > 0, "ciphertext: not a positive multiple of 16 bytes")
    if pad == "none":
        need(len(pt) == len(ct), "plaintext and ciphertext lengths differ with padding 'none'")
        padded = pt
    else:
        need(len(ct) == (len(pt) // 16 + 1) * 16, "ciphertext length is not that of PKCS#7-padded plaintext")
        p = padding.PKCS7(128).padder()
        padded = p.update(pt) + p.finalize()
    e = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    eq("ciphertext", e.update(padded) + e.finalize(), ct)
    d = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    out = d.update(ct) + d.finalize()
    if pad == "pkcs7":
        u = padding.PKCS7(128).unpadder()
        out = u.update(out) + u.finalize()
    eq("plaintext", out, pt)


# ---------------------------------------------------------------- XEdDSA (libsignal curve_sigs)
# Checked through Ed25519: an XEdDSA signature R || s on the Montgomery key u is the Ed25519
# signature R || s (bit 7 of byte 63 cleared) on the Edwards key y = (u-1)/(u+1) with the sign bit
# from bit 7 of byte 63. Ed25519 verification is done by cryptography (OpenSSL), which also
# rejects s >= L.
def edwards_key(public33, sig):
    u = int.from_bytes(public33[1:], "little") & ((1 << 255) - 1)
    if (u + 1) % P == 0:
        return None
    y = (u - 1) * pow(u + 1, P - 2, P) % P
    return (y | ((sig[63] >> 7) << 255)).to_bytes(32, "little")


def ed25519_ok(a_enc, sig_clear, message):
    try:
        Ed25519PublicKey.from_public_bytes(a_enc).verify(sig_clear, message)
        return True
    except (InvalidSignature, ValueError):
        return False


def xeddsa_verify(public33, message, sig):
    """Return None if valid, else the reason it is invalid."""
    if public33[0] != 0x05:
        return "public key type byte is not 0x05"
    a_enc = edwards_key(public33, sig)
    if a_enc is None:
        return "public key has no Edwards form"
    clear = bytearray(sig)
    clear[63] &= 0x7F
    if clear[63] & 0xE0:
        return "high bits of s set"
    if int.from_bytes(clear[32:], "little") >= L:
        reduced = bytes(clear[:32]) + (int.from_bytes(clear[32:], "little") % L).to_bytes(32, "little")
        extra = " (verifies once s is reduced mod L)" if ed25519_ok(a_enc, reduced, message) else ""
        return "non-canonical s >= L" + extra
    if not ed25519_ok(a_enc, bytes(clear), message):
        return "Ed25519 verification fails"
    return None


def check_xeddsa(c, doc):
    need(isinstance(c.get("valid"), bool), "valid: not a boolean")
    if c["valid"]:
        keys(c, ["name", "private", "public", "message", "random", "signature", "valid"])
        k = hexfield(c, "private", 32)
        z = hexfield(c, "random", 64)
    else:
        keys(c, ["name", "public", "message", "signature", "valid"])
    pub, msg, sig = hexfield(c, "public", 33), hexfield(c, "message"), hexfield(c, "signature", 64)
    why = xeddsa_verify(pub, msg, sig)
    if not c["valid"]:
        need(why is not None, "expected to be rejected, but it verifies")
        return f"{near_miss(c, doc)}; rejected: {why}"
    need(why is None, f"does not verify: {why}")
    need(k[0] & 7 == 0 and k[31] & 0xC0 == 0x40, "private: not clamped")
    eq("public", b"\x05" + x25519_base(k), pub)
    # Deterministic signing: with A = kB (checked above via X25519 and by the Ed25519
    # verification with A's sign bit), sB = R + hA and s = h*k + r give R = rB for this Z.
    a = int.from_bytes(k, "little")
    r = int.from_bytes(hashlib.sha512(b"\xfe" + b"\xff" * 31 + k + msg + z).digest(), "little") % L
    h = int.from_bytes(hashlib.sha512(sig[:32] + edwards_key(pub, sig) + msg).digest(), "little") % L
    s = int.from_bytes(sig[32:], "little") & ((1 << 255) - 1)
    need(s == (h * a + r) % L, "s != h*k + r mod L for the given random (signature not derived from Z)")


def bits_differ(x, y):
    return sum(bin(a ^ b).count("1") for a, b in zip(x, y)) if len(x) == len(y) else None


def near_miss(c, doc):
    """A negative case must be one valid case of the same file with exactly one thing changed."""
    fields = ("public", "message", "signature")
    for p in doc["cases"]:
        if not (isinstance(p, dict) and p.get("valid") is True):
            continue
        diff = [f for f in fields if p.get(f) != c[f]]
        if len(diff) != 1:
            continue
        f = diff[0]
        old, new = bytes.fromhex(p[f]), bytes.fromhex(c[f])
        if f == "public":
            return f"{p['name']} with another public key"
        if f == "message" and bits_differ(old, new) == 1:
            return f"{p['name']} with one message bit flipped"
        if f == "signature":
            if bits_differ(old, new) == 1:
                i = next(j for j in range(64) if old[j] != new[j])
                where = "the sign bit" if (i == 63 and old[63] ^ new[63] == 0x80) else (
                    "one bit of R" if i < 32 else "one bit of s")
                return f"{p['name']} with {where} flipped"
            s_old = int.from_bytes(old[32:], "little") & ((1 << 255) - 1)
            s_new = int.from_bytes(new[32:], "little") & ((1 << 255) - 1)
            if old[:32] == new[:32] and old[63] & 0x80 == new[63] & 0x80 and s_new == s_old + L:
                return f"{p['name']} with s + L"
    raise Fail("not a single, recognisable change (public key, one message bit, one signature bit, or s + L) "
               "of a valid case in this file")


CHECKERS = {
    "x25519": check_x25519,
    "hkdf_sha256": check_hkdf,
    "hmac_sha256": check_hmac,
    "aes_256_cbc": check_aes,
    "xeddsa": check_xeddsa,
}


def files_of(paths):
    for p in paths:
        if os.path.isdir(p):
            for root, _, names in sorted(os.walk(p)):
                for n in sorted(names):
                    if n.endswith(".json") and n != "index.json":
                        yield os.path.join(root, n)
        else:
            yield p


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    paths = argv or [os.path.normpath(os.path.join(here, "..", "..", "TestVectors", "primitives"))]
    passed = failed = 0
    for path in files_of(paths):
        label = os.path.basename(path)
        try:
            with open(path) as f:
                doc = json.load(f)
            if isinstance(doc, list) and label.startswith("nistkats_kyber_"):
                # libcrux's Kyber KAT format (a list, no kind); not a pyca/cryptography primitive.
                print(f"SKIP {label}: Kyber KAT, re-derived by tools/vectors/make_kyber_kats.py --check")
                continue
            need(isinstance(doc, dict), "not a JSON object")
            label = doc.get("name", label) if isinstance(doc.get("name"), str) else label
            need(doc.get("kind") in CHECKERS, f"unknown kind {doc.get('kind')!r} (not a primitive KAT)")
            need(set(doc) == {"kind", "name", "source", "cases"},
                 f"top-level fields are {sorted(doc)}, expected cases, kind, name, source")
            need(isinstance(doc["cases"], list) and doc["cases"], "cases: empty")
        except (Fail, OSError, ValueError) as e:
            print(f"FAIL {label}: {e}")
            failed += 1
            continue
        names = set()
        for i, case in enumerate(doc["cases"]):
            name = f"{doc['name']}/{case.get('name', f'#{i}')}" if isinstance(case, dict) else f"{doc['name']}/#{i}"
            try:
                need(isinstance(case, dict), "case is not an object")
                need(case.get("name") not in names, "duplicate case name")
                names.add(case.get("name"))
                note = CHECKERS[doc["kind"]](case, doc)
                print(f"PASS {name}" + (f" ({note})" if note else ""))
                passed += 1
            except Fail as e:
                print(f"FAIL {name}: {e}")
                failed += 1
            except Exception as e:  # a malformed case must fail, never crash the run
                print(f"FAIL {name}: {type(e).__name__}: {e}")
                failed += 1
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
