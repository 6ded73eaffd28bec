"""Image formats: sniffing and the zstd fallbacks of nodes without a Python binding."""

import io
import shutil

import pytest

from tests import tarballs as tb
from vzslave import formats
from vzslave.errors import BadImageError, UnsupportedFormatError

PLAIN = tb.make_tar(tb.bundle(tb.file("rootfs/f", b"data")))


@pytest.mark.parametrize("fmt", tb.FORMATS)
def test_each_format_is_sniffed_from_its_content(fmt):
    assert formats.sniff_format(tb.compress(PLAIN, fmt)[:512]) == fmt


@pytest.mark.skipif(shutil.which("zstd") is None, reason="no zstd program")
def test_without_a_binding_the_zstd_program_decompresses(monkeypatch, tmp_path):
    monkeypatch.setattr(formats, "_zstd_reader_kind", lambda: "zstd")
    path = tmp_path / "image.tar.zst"  # the program reads the image file itself
    path.write_bytes(tb.compress(PLAIN, "tar.zst"))
    with open(path, "rb") as stream, formats.decompressed(stream, "tar.zst") as tar:
        assert tar.read() == PLAIN


@pytest.mark.skipif(shutil.which("zstd") is None, reason="no zstd program")
def test_the_zstd_program_reports_damage(monkeypatch, tmp_path):
    monkeypatch.setattr(formats, "_zstd_reader_kind", lambda: "zstd")
    damaged = bytearray(tb.compress(PLAIN, "tar.zst"))
    damaged[len(damaged) // 2] ^= 0xFF
    path = tmp_path / "damaged.tar.zst"
    path.write_bytes(bytes(damaged))
    with pytest.raises(BadImageError, match="zstd"):
        with open(path, "rb") as stream, formats.decompressed(stream, "tar.zst") as tar:
            tar.read()


def test_a_node_with_no_zstd_decoder_says_how_to_get_one(monkeypatch):
    monkeypatch.setattr(formats, "_zstd_reader_kind", lambda: None)
    assert "tar.zst" not in formats.available_formats()
    with pytest.raises(UnsupportedFormatError, match="install the zstd program"):
        with formats.decompressed(io.BytesIO(b""), "tar.zst"):
            pass
