#!/usr/bin/env python3
"""Writes small seed inputs for the fuzz targets from the protocol vectors.

Seeds live in TestVectors/fuzz-regressions/<target>/seed-*.bin; the regression tests replay every
file there, and tools/fuzz/run.sh copies them into each target's corpus.
"""
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
VEC = ROOT / "TestVectors" / "protocol"
OUT = ROOT / "TestVectors" / "fuzz-regressions"


def write(target, name, data):
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"seed-{name}.bin").write_bytes(data)


def main():
    v = json.loads((VEC / "rejects_catalog_otk.json").read_text())
    for m in v["messages"][:4]:
        data = bytes.fromhex(m["ciphertext"])
        if m["type"] == "prekey":
            write("prekey-message", f"seq{m['seq']}", data)
            write("session-decrypt", f"prekey-seq{m['seq']}", data)
        else:
            write("signal-message", f"seq{m['seq']}", data)
            write("session-decrypt", f"seq{m['seq']}", data)
    g = json.loads((VEC / "group_100.json").read_text())
    write("distribution-message", "group100", bytes.fromhex(g["distribution_message"]))
    for m in g["messages"][:3]:
        data = bytes.fromhex(m["ciphertext"])
        write("sender-key-message", f"seq{m['seq']}", data)
        write("group-decrypt", f"seq{m['seq']}", data)
    print("seeds written under", OUT)


if __name__ == "__main__":
    main()
