"""The image store: verified, resumable uploads published atomically."""

import hashlib
import os
import subprocess

import pytest

from tests.conftest import put, random_bytes, requires_root
from vzslave import fs
from vzslave.config import Layout, Limits
from vzslave.errors import (
    BadRequestError,
    BusyError,
    ChecksumMismatchError,
    DiskFullError,
    NoSuchImageError,
    OffsetMismatchError,
)
from vzslave.formats import sniff_format
from vzslave.images import ImageStore


@pytest.fixture
def store(layout, limits):
    return ImageStore(layout, limits)


def test_an_upload_is_published_with_its_size_and_sha256(store):
    data = random_bytes(5000)
    info = put(store, "a.tar", data)
    assert (info.name, info.size, info.sha256) == ("a.tar", 5000, hashlib.sha256(data).hexdigest())
    assert store.list() == [info]


def test_an_unfinished_upload_is_not_listed_but_its_prefix_is_kept(store):
    data = random_bytes(5000)
    with store.upload("a.tar", len(data), 0) as upload:
        upload.write(data[:1234])
    assert store.list() == []
    image, partial = store.probe("a.tar")
    assert image is None
    assert partial.size == 1234
    assert partial.sha256 == hashlib.sha256(data[:1234]).hexdigest()


def test_a_resumed_upload_completes_with_the_full_sha256(store):
    data = random_bytes(5000)
    with store.upload("a.tar", len(data), 0) as upload:
        upload.write(data[:1234])
    info = put(store, "a.tar", data, offset=1234)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert store.probe("a.tar")[1] is None


def test_resuming_at_the_wrong_offset_is_refused_with_what_the_node_has(store):
    with store.upload("a.tar", 100, 0) as upload:
        upload.write(b"x" * 10)
    with pytest.raises(OffsetMismatchError) as caught:
        with store.upload("a.tar", 100, 20):
            pass
    assert caught.value.details == {"have": 10}


def test_a_checksum_mismatch_discards_the_upload_and_its_prefix(store):
    with store.upload("a.tar", 3, 0) as upload:
        upload.write(b"abc")
        with pytest.raises(ChecksumMismatchError):
            upload.commit("0" * 64)
    assert store.list() == [] and store.probe("a.tar") == (None, None)


def test_more_bytes_than_announced_are_refused(store):
    with store.upload("a.tar", 3, 0) as upload:
        with pytest.raises(BadRequestError, match="announced"):
            upload.write(b"abcd")


def test_a_short_stream_is_not_published(store):
    with store.upload("a.tar", 10, 0) as upload:
        upload.write(b"abc")
        with pytest.raises(BadRequestError, match="3 of 10"):
            upload.commit(hashlib.sha256(b"abc").hexdigest())


def test_a_second_upload_of_the_same_name_meanwhile_is_busy(store, monkeypatch):
    monkeypatch.setattr(fs, "LOCK_WAIT", 0.1)
    with store.upload("a.tar", 10, 0):
        with pytest.raises(BusyError, match="a.tar"):
            with store.upload("a.tar", 10, 0):
                pass


def test_a_new_version_replaces_the_old_and_its_blob_goes(store, layout):
    put(store, "a.tar", b"old")
    new = put(store, "a.tar", b"new")
    assert store.list() == [new]
    assert os.listdir(layout.blobs) == [new.sha256]


def test_equal_images_under_two_names_share_one_blob(store, layout):
    put(store, "a.tar", b"same")
    put(store, "b.tar", b"same")
    store.remove("a.tar")
    assert [i.name for i in store.list()] == ["b.tar"]
    assert len(os.listdir(layout.blobs)) == 1


def test_removing_an_unknown_image_says_so(store):
    with pytest.raises(NoSuchImageError):
        store.remove("nope.tar")


def test_removing_a_name_with_only_a_prefix_removes_the_prefix(store):
    with store.upload("a.tar", 10, 0) as upload:
        upload.write(b"abc")
    store.remove("a.tar")
    assert store.probe("a.tar") == (None, None)


def test_an_upload_larger_than_the_free_space_is_refused_before_any_byte(layout):
    store = ImageStore(layout, Limits(reserve_bytes=0))
    free = fs.free_space(layout.root).bytes
    with pytest.raises(DiskFullError, match="more bytes"):
        with store.upload("huge.tar", free + 1, 0):
            pass


@requires_root
def test_a_disk_filling_up_mid_upload_is_a_clear_error_and_the_old_image_stays(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "vzt", str(mount)], check=True)
    try:
        layout = Layout(str(mount / "vz"))
        layout.make_dirs()
        store = ImageStore(layout, Limits(reserve_bytes=0))
        old = put(store, "a.tar", b"old")
        data = random_bytes(1024 * 1024)
        with store.upload("a.tar", len(data), 0) as upload:
            (mount / "filler").write_bytes(b"\0" * (1536 * 1024))  # someone else fills it
            with pytest.raises(DiskFullError, match="filled up .* resumes"):
                for start in range(0, len(data), 65536):
                    upload.write(data[start:start + 65536])
        assert store.list() == [old]
        with store.open("a.tar") as (_, stream):
            assert stream.read() == b"old"
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.parametrize("head,fmt", [
    (b"\x1f\x8b\x08", "tar.gz"), (b"\xfd7zXZ\x00", "tar.xz"), (b"\x28\xb5\x2f\xfd", "tar.zst"),
    (bytes(257) + b"ustar\x00", "tar"), (b"PK\x03\x04", "unknown"),
])
def test_formats_are_sniffed_from_magic_bytes(head, fmt):
    assert sniff_format(head) == fmt
