"""Fixtures shared by all test levels: a state root, a node layout, sample images."""

import os

import pytest

from tests import tarballs as tb
from vzslave.config import Layout, Limits


@pytest.fixture
def layout(tmp_path):
    """A fresh node state root with its directories made."""
    result = Layout(str(tmp_path / "vz"))
    result.make_dirs()
    return result


@pytest.fixture
def limits():
    """Default limits, without the free-space reserve (test disks are small)."""
    return Limits(reserve_bytes=0)


def sample_image(marker: bytes = b"hello", fmt: str = "tar.gz") -> bytes:
    """A small valid image: config.json and a rootfs with one file holding ``marker``."""
    return tb.make_tar(tb.bundle(
        tb.directory("rootfs/bin"),
        tb.file("rootfs/bin/app", marker, mode=0o755),
        tb.symlink("rootfs/bin/sh", "/bin/app"),
        tb.directory("rootfs/tmp", mode=0o1777),
    ), fmt=fmt)


@pytest.fixture
def image_file(tmp_path):
    """Write an image to a file and return its path: ``image_file(data, name)``."""

    def write(data: bytes = b"", name: str = "app.tar.gz") -> str:
        path = str(tmp_path / name)
        with open(path, "wb") as out:
            out.write(data or sample_image())
        return path

    return write


def random_bytes(size: int, seed: int = 0) -> bytes:
    """Deterministic incompressible bytes."""
    import random
    return random.Random(seed).randbytes(size)


def put(store, name, data, offset=0, chunk=1000):
    """Upload ``data`` into an ImageStore as ``name`` from ``offset`` on; publish it."""
    import hashlib
    with store.upload(name, len(data), offset) as upload:
        for start in range(offset, len(data), chunk):
            upload.write(data[start:start + chunk])
        return upload.commit(hashlib.sha256(data).hexdigest())


def decode_frames(data: bytes, eof: bool = True):
    """Every frame in ``data``, decoded (raising as the decoder does)."""
    from vzslave.protocol import Decoder
    decoder = Decoder()
    decoder.feed(data)
    if eof:
        decoder.feed(b"")
    frames = []
    while True:
        frame = decoder.next_frame()
        if frame is None:
            return frames
        frames.append(frame)


requires_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def modules_loaded_by(module: str) -> set:
    """The modules that ``import module`` loads, in a fresh interpreter without site (as
    the runner starts: ``python3 -IS``)."""
    import subprocess
    import sys
    code = ("import os, sys; before = set(sys.modules); import {}; "
            "print(' '.join(sorted(set(sys.modules) - before)))").format(module)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return set(subprocess.run([sys.executable, "-S", "-c", code], cwd=root, check=True,
                              stdout=subprocess.PIPE, universal_newlines=True).stdout.split())


@pytest.fixture(scope="session")
def attack(tmp_path_factory):
    """The path of tests/attack.c compiled static: what a hostile app tries, run inside a
    container (it needs nothing of the rootfs)."""
    import shutil
    import subprocess
    gcc = shutil.which("gcc")
    if gcc is None:
        if os.environ.get("VZ_REQUIRE_SYSTEM") == "1":
            pytest.fail("the attack tests need gcc (.ci/install installs it)")
        pytest.skip("the attack tests need gcc")
    out = str(tmp_path_factory.mktemp("attack") / "attack")
    source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "attack.c")
    subprocess.run([gcc, "-static", "-O2", "-o", out, source], check=True, timeout=120)
    return out
