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


def partial_files(layout):
    return os.listdir(layout.partial)


def test_an_upload_refused_for_space_leaves_no_partial_file(layout):
    """When an upload was refused for space at the request, an empty partial file
    stayed behind."""
    store = ImageStore(layout, Limits(reserve_bytes=0))
    free = fs.free_space(layout.root).bytes
    with pytest.raises(DiskFullError) as caught:
        with store.upload("huge.tar", free + 1, 0):
            pass
    assert partial_files(layout) == []
    assert caught.value.details["needed"] == free + 1


def test_an_upload_from_zero_refused_for_space_keeps_the_earlier_prefix(layout):
    store = ImageStore(layout, Limits(reserve_bytes=0))
    with store.upload("a.tar", 100, 0) as upload:
        upload.write(b"x" * 10)
    with pytest.raises(DiskFullError):
        with store.upload("a.tar", fs.free_space(layout.root).bytes + 1000, 0):
            pass
    assert store.probe("a.tar")[1].size == 10


def test_starting_afresh_counts_the_dropped_prefix_as_free(layout, monkeypatch):
    store = ImageStore(layout, Limits(reserve_bytes=0))
    with store.upload("a.tar", 100, 0) as upload:
        upload.write(b"x" * 60)
    real = fs.free_space(layout.root)
    monkeypatch.setattr(fs, "free_space", lambda path: real._replace(bytes=50))
    with store.upload("a.tar", 100, 0) as upload:  # 50 free + the 60 of the prefix
        upload.write(b"y" * 100)
    assert store.probe("a.tar")[1].size == 100


def test_an_offset_mismatch_without_a_prefix_leaves_no_partial_file(store, layout):
    """When a resume named an offset but the node held nothing, the refusal left an
    empty partial file behind."""
    with pytest.raises(OffsetMismatchError):
        with store.upload("a.tar", 100, 20):
            pass
    assert partial_files(layout) == []


def test_an_offset_mismatch_keeps_the_prefix_it_did_not_match(store):
    with store.upload("a.tar", 100, 0) as upload:
        upload.write(b"x" * 10)
    with pytest.raises(OffsetMismatchError):
        with store.upload("a.tar", 100, 20):
            pass
    assert store.probe("a.tar")[1].size == 10


def test_too_many_bytes_in_the_first_chunk_leave_no_partial_file(store, layout):
    with pytest.raises(BadRequestError):
        with store.upload("a.tar", 3, 0) as upload:
            upload.write(b"abcd")
    assert partial_files(layout) == []


def test_too_many_bytes_after_some_keep_the_bytes_written(store):
    with pytest.raises(BadRequestError):
        with store.upload("a.tar", 5, 0) as upload:
            upload.write(b"abc")
            upload.write(b"def")
    assert store.probe("a.tar")[1] == (3, hashlib.sha256(b"abc").hexdigest())


@pytest.mark.parametrize("trailer", [None, "", "ABC", "0" * 63], ids=repr)
def test_a_bad_trailer_keeps_the_whole_upload_for_a_resume(store, trailer):
    with pytest.raises(BadRequestError, match="sha256"):
        with store.upload("a.tar", 3, 0) as upload:
            upload.write(b"abc")
            upload.commit(trailer)
    info = put(store, "a.tar", b"abc", offset=3)  # resumed with nothing left to send
    assert info.sha256 == hashlib.sha256(b"abc").hexdigest()


def test_a_refused_empty_upload_leaves_no_partial_file(store, layout):
    with pytest.raises(BadRequestError):
        with store.upload("a.tar", 0, 0) as upload:
            upload.commit("bad")
    assert partial_files(layout) == []


def test_a_checksum_mismatch_leaves_no_partial_file(store, layout):
    with pytest.raises(ChecksumMismatchError):
        with store.upload("a.tar", 3, 0) as upload:
            upload.write(b"abc")
            upload.commit("0" * 64)
    assert partial_files(layout) == []


def test_an_upload_abandoned_before_a_byte_leaves_no_partial_file(store, layout):
    with store.upload("a.tar", 3, 0) as upload:
        assert upload.kept() is None
    assert partial_files(layout) == []


def test_an_upload_restarted_from_zero_and_abandoned_at_once_leaves_nothing(store, layout):
    with store.upload("a.tar", 100, 0) as upload:
        upload.write(b"x" * 10)
    with store.upload("a.tar", 100, 0):
        pass
    assert partial_files(layout) == []


def test_what_an_upload_keeps_is_its_prefix_and_that_prefix_hash(store):
    with store.upload("a.tar", 100, 0) as upload:
        upload.write(b"x" * 10)
        kept = upload.kept()
    assert kept == store.probe("a.tar")[1] == (10, hashlib.sha256(b"x" * 10).hexdigest())


def test_a_published_empty_image_leaves_no_partial_file(store, layout):
    assert put(store, "e.tar", b"").size == 0
    assert partial_files(layout) == []


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
