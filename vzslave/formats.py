"""Image formats: telling them apart by content, and reading the tar inside.

Images are tarballs, plain or compressed with gzip, xz or zstd. The node needs only
the standard library: zstd comes from Python 3.14's compression.zstd, else the
zstandard module if installed, else the zstd program in a pipe; ``hello`` reports
which formats this node can read.
"""

import contextlib
import importlib.util
import os
from typing import BinaryIO, Iterator, List, Optional

from vzslave.errors import BadImageError, UnsupportedFormatError

# Magic numbers of the compressions an image may use; plain tar says "ustar" at 257.
_MAGIC = (
    (b"\x1f\x8b", "tar.gz"),
    (b"\xfd7zXZ\x00", "tar.xz"),
    (b"\x28\xb5\x2f\xfd", "tar.zst"),
)


def sniff_format(head: bytes) -> str:
    """The image format from its first 512 bytes (not from its name)."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if head[257:262] == b"ustar":
        return "tar"
    return "unknown"


def available_formats() -> List[str]:
    """The image formats this node can read."""
    formats = ["tar", "tar.gz"]
    try:
        import lzma  # noqa: F401  (minimal Python builds may lack it)
        formats.append("tar.xz")
    except ImportError:
        pass
    if _zstd_reader_kind() is not None:
        formats.append("tar.zst")
    return formats


def _zstd_reader_kind() -> Optional[str]:
    # find_spec, not import: hello asks on every session and need not load them.
    for module in ("compression.zstd", "zstandard"):  # novm
        try:
            if importlib.util.find_spec(module) is not None:
                return module
        except ImportError:  # "compression" itself missing (before 3.14)
            continue
    for directory in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep):
        if os.access(os.path.join(directory, "zstd"), os.X_OK):
            return "zstd"
    return None


@contextlib.contextmanager
def decompressed(stream: BinaryIO, fmt: str) -> Iterator[BinaryIO]:
    """A readable stream of the tar inside an image of format ``fmt``.

    ``stream`` must be a real file for .tar.zst on nodes without a zstd binding: the
    zstd program then reads it directly.
    """
    if fmt == "tar":
        yield stream
    elif fmt == "tar.gz":
        import gzip
        with gzip.GzipFile(fileobj=stream, mode="rb") as unzipped:
            yield unzipped  # type: ignore[misc]
    elif fmt == "tar.xz":
        try:
            import lzma
        except ImportError:
            raise UnsupportedFormatError(
                "this node's Python has no lzma module; push the image as .tar.gz or "
                ".tar.zst") from None
        with lzma.LZMAFile(stream) as unxzed:
            yield unxzed  # type: ignore[misc]
    elif fmt == "tar.zst":
        with _unzstd(stream) as unzstded:
            yield unzstded
    else:
        raise BadImageError("the image is not a tarball (.tar, .tar.gz, .tar.xz or .tar.zst)")


@contextlib.contextmanager
def _unzstd(stream: BinaryIO) -> Iterator[BinaryIO]:
    kind = _zstd_reader_kind()
    if kind == "compression.zstd":
        from compression import zstd  # novm: only tried where it exists (3.14+)
        with zstd.ZstdFile(stream) as reader:
            yield reader
    elif kind == "zstandard":
        import zstandard
        with zstandard.ZstdDecompressor().stream_reader(stream) as reader:
            yield reader
    elif kind == "zstd":
        # No Python binding on this node: the zstd program decompresses in a pipe.
        import subprocess  # here, not at the top: every session would pay for them
        import tempfile
        with tempfile.TemporaryFile() as errors:
            proc = subprocess.Popen(["zstd", "-d", "-c", "-q"], stdin=stream,
                                    stdout=subprocess.PIPE, stderr=errors)
            assert proc.stdout is not None
            try:
                yield proc.stdout  # type: ignore[misc]
                proc.stdout.read()  # let zstd finish and report trailing damage
                if proc.wait() != 0:
                    errors.seek(0)
                    raise BadImageError("zstd could not decompress the image: {}".format(
                        errors.read(500).decode("utf-8", "replace").strip()))
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
                proc.stdout.close()
    else:
        raise UnsupportedFormatError(
            "this node cannot read .tar.zst: install the zstd program (or the Python "
            "zstandard module), or push the image as .tar.gz or .tar.xz")
