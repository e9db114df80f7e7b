#!/usr/bin/env python3
"""Regenerate the two published Kyber1024 (round 3) known-answer files from kyber-py.

Usage: python3 tools/vectors/make_kyber_kats.py [--out DIR] [--check]

Writes DIR/nistkats_kyber_1024.json (libcrux's format: libcrux-ml-kem/tests/kats/, the file
libsignal's Kyber backend is tested with) and DIR/PQCkemKAT_3168.rsp (the round-3 reference's
PQCgenKAT_kem output), default DIR = TestVectors/primitives/. With --check nothing is written:
the files are generated in memory and compared byte for byte with DIR's copies (exit 1 if any
differs).

Both files are derived from NIST's AES-256 CTR_DRBG exactly as their generators do:

* one DRBG seeded with the bytes 00 01 .. 2f gives the 100 entry seeds (48 bytes each);
* each entry's own DRBG, seeded with that seed, gives d (32), z (32) and m (32) in that order
  (the reference's randombytes calls: indcpa_keypair, crypto_kem_keypair, crypto_kem_enc);
* key generation from d || z, encapsulation with m, and a decapsulation check, by kyber-py's
  round-3 Kyber1024 (an implementation independent of libcrux, the reference and Parley).

The .rsp lists seed, pk, sk, ct, ss in uppercase hex; the JSON lists d || z, m, the SHA3-256 of
pk, sk and ct, and ss, as json.dump(..., indent=4) writes them (no trailing newline).

Requirements: Python 3.11, `pip install kyber-py==1.2.0 cryptography` (the DRBG's AES is
pyca/cryptography's; kyber-py's own DRBG would need pycryptodome).
"""
import argparse
import hashlib
import json
import os
import sys

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from kyber_py.kyber import Kyber1024

ENTRIES = 100
JSON_NAME = "nistkats_kyber_1024.json"
RSP_NAME = "PQCkemKAT_3168.rsp"


class NistDrbg:
    """AES-256 CTR_DRBG without derivation function, no personalization or additional input
    (NIST's rng.c: randombytes_init / randombytes)."""

    def __init__(self, seed: bytes):
        assert len(seed) == 48
        self.key = bytes(32)
        self.v = 0
        self._update(seed)

    def _block(self) -> bytes:
        self.v = (self.v + 1) % (1 << 128)
        encryptor = Cipher(algorithms.AES(self.key), modes.ECB()).encryptor()
        return encryptor.update(self.v.to_bytes(16, "big")) + encryptor.finalize()

    def _update(self, provided):
        temp = self._block() + self._block() + self._block()
        if provided is not None:
            temp = bytes(a ^ b for a, b in zip(temp, provided))
        self.key = temp[:32]
        self.v = int.from_bytes(temp[32:], "big")

    def random_bytes(self, count: int) -> bytes:
        out = b""
        while len(out) < count:
            out += self._block()
        self._update(None)
        return out[:count]


def generate():
    outer = NistDrbg(bytes(range(48)))
    kats, blocks = [], []
    for count in range(ENTRIES):
        seed = outer.random_bytes(48)
        drbg = NistDrbg(seed)
        draws = []

        def draw(n, drbg=drbg, draws=draws):
            value = drbg.random_bytes(n)
            draws.append(value)
            return value

        # kyber-py draws d (_cpapke_keygen), then z (keygen), then m (encaps): the reference's order.
        Kyber1024.random_bytes = draw
        pk, sk = Kyber1024.keygen()
        ss, ct = Kyber1024.encaps(pk)
        if Kyber1024.decaps(sk, ct) != ss:
            raise SystemExit(f"kyber-py: decapsulation of entry {count} disagrees")
        d, z, m = draws
        if len(draws) != 3 or len(pk) != 1568 or len(sk) != 3168 or len(ct) != 1568 or len(ss) != 32:
            raise SystemExit(f"entry {count}: unexpected draws or sizes")
        kats.append({
            "key_generation_seed": (d + z).hex(),
            "sha3_256_hash_of_public_key": hashlib.sha3_256(pk).hexdigest(),
            "sha3_256_hash_of_secret_key": hashlib.sha3_256(sk).hexdigest(),
            "encapsulation_seed": m.hex(),
            "sha3_256_hash_of_ciphertext": hashlib.sha3_256(ct).hexdigest(),
            "shared_secret": ss.hex(),
        })
        blocks.append(
            f"count = {count}\nseed = {seed.hex().upper()}\npk = {pk.hex().upper()}\nsk = {sk.hex().upper()}\n"
            f"ct = {ct.hex().upper()}\nss = {ss.hex().upper()}\n\n")
    return json.dumps(kats, ensure_ascii=False, indent=4).encode(), "".join(blocks).encode()


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.normpath(os.path.join(here, "..", "..", "TestVectors", "primitives")))
    parser.add_argument("--check", action="store_true", help="compare with the files in --out instead of writing")
    args = parser.parse_args(argv)
    files = dict(zip((JSON_NAME, RSP_NAME), generate()))
    failed = False
    for name, data in files.items():
        path = os.path.join(args.out, name)
        digest = hashlib.sha256(data).hexdigest()
        if args.check:
            try:
                with open(path, "rb") as f:
                    same = f.read() == data
            except OSError as e:
                print(f"FAIL {name}: {e}")
                failed = True
                continue
            print(f"{'PASS' if same else 'FAIL'} {name}: generated sha256 {digest}" + ("" if same else ", file differs"))
            failed |= not same
        else:
            with open(path, "wb") as f:
                f.write(data)
            print(f"wrote {path} ({len(data)} bytes, sha256 {digest})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
