#!/usr/bin/env python3
"""Decoding speed: vzslave.protocol.Decoder against a bare msgpack Unpacker.

What the node does with an upload's bytes before it hashes and writes them: 1 MiB
data frames arriving in READ_SIZE pieces (the size of the node's reads). The
reference feeds the same pieces to a plain ``msgpack.Unpacker`` (no limits checked
early, no frame shapes checked). Round robin, medians, ratio. No root, no network:
python3 bench/decoder.py [--size-mib 256] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import msgpack  # noqa: E402

from vzslave.protocol import MAX_DATA, READ_SIZE, Data, Decoder, encode  # noqa: E402


def pieces(size_mib: int) -> list[bytes]:
    """The byte stream of an upload of ``size_mib`` MiB, cut as the node reads it."""
    frame = encode(Data(2, os.urandom(MAX_DATA)))
    stream = frame * size_mib
    return [stream[i:i + READ_SIZE] for i in range(0, len(stream), READ_SIZE)]


def with_decoder(chunks: list[bytes]) -> int:
    """Frames out of vz's Decoder."""
    decoder = Decoder()
    count = 0
    for chunk in chunks:
        decoder.feed(chunk)
        while decoder.next_frame() is not None:
            count += 1
    return count


def with_unpacker(chunks: list[bytes]) -> int:
    """Objects out of a bare msgpack Unpacker: the reference."""
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=4 * MAX_DATA)
    count = 0
    for chunk in chunks:
        unpacker.feed(chunk)
        for _ in unpacker:
            count += 1
    return count


def main() -> None:
    """Time both, round robin, and print medians and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    chunks = pieces(args.size_mib)
    ways: dict[str, Callable[[list[bytes]], int]] = {
        "Decoder": with_decoder, "msgpack.Unpacker": with_unpacker}
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.runs):
        for name, way in ways.items():
            started = time.perf_counter()
            assert way(chunks) == args.size_mib
            times[name].append(time.perf_counter() - started)
    rates = {name: args.size_mib * 1.048576 / statistics.median(t)
             for name, t in times.items()}
    for name, rate in rates.items():
        print("{:18} {:8.0f} MB/s".format(name, rate))
    print("Decoder / Unpacker: {:.2f}x".format(rates["Decoder"] / rates["msgpack.Unpacker"]))


if __name__ == "__main__":
    main()
